"""Compute accounting: the one place where rlscale turns tokens into FLOPs.

Conventions (Kaplan et al. 2020, Table 1; Hoffmann et al. 2022, App. F):
- N counts the parameters that take part in matmuls: every weight except the input
  embedding table (a lookup, no FLOPs). The unembedding (lm_head) is included, as
  Chinchilla does, because with small models it is a visible share of the work.
- A forward pass costs 2N FLOPs per token plus attention 2 * n_layers * n_ctx * d_attn,
  where n_ctx is the number of positions the token attends to.
- A training step (forward + backward) costs 3x the forward: 6N plus 6 * n_layers * n_ctx * d_attn.
- Rollout with a KV cache: the prompt is one prefill forward; each generated token is
  one forward attending to all earlier positions.
- Multi-turn rollout: each turn is a fresh engine request whose prompt is the whole
  context so far (prompt, earlier answers, env feedback), so each turn costs one prefill
  of that context plus its own decode. Like shared prompts, an upper bound: vLLM's
  prefix cache can skip re-prefilling context it still holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable


@dataclass(frozen=True)
class ModelShape:
    n_params: int  # matmul parameters (see module docstring)
    n_layers: int
    d_attn: int  # n_heads * head_dim of the queries
    n_params_total: int

    @classmethod
    def from_hf(cls, model) -> "ModelShape":
        """From a transformers PreTrainedModel (reads its config and parameters)."""
        cfg = model.config
        emb = model.get_input_embeddings().weight
        total = sum(p.numel() for p in model.parameters())
        tied = getattr(cfg, "tie_word_embeddings", False)
        # With tied embeddings the table is also the lm_head and so does matmul work.
        n = total if tied else total - emb.numel()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(n, cfg.num_hidden_layers, cfg.num_attention_heads * head_dim, total)

    def with_extra_params(self, n: int) -> "ModelShape":
        """The same trunk with n more matmul parameters (PPO's value head: d_model)."""
        return replace(self, n_params=self.n_params + n, n_params_total=self.n_params_total + n) if n else self


def _attn_ctx_sum(start: int, count: int) -> int:
    """Sum of attended context lengths for `count` tokens at positions start..start+count-1
    (a token at position p attends to p + 1 positions, itself included)."""
    # sum_{p=start}^{start+count-1} (p + 1)
    return count * (2 * start + count + 1) // 2


def forward_flops(shape: ModelShape, prompt_len: int, completion_len: int) -> int:
    """One forward pass over a whole sequence (teacher forcing): 2N per token + attention."""
    t = prompt_len + completion_len
    return 2 * shape.n_params * t + 2 * shape.n_layers * shape.d_attn * _attn_ctx_sum(0, t)


def rollout_flops(shape: ModelShape, turn_lens: Iterable[Iterable[tuple[int, int]]]) -> int:
    """Sampling with a KV cache, given per episode (context tokens, generated tokens) for
    each turn (a single-turn episode is [(prompt, completion)]). Each turn costs one
    teacher-forced forward over its context plus answer, because each token is processed
    once against its causal prefix. A prompt shared by G samples is prefilled once per
    sample here: vLLM's prefix cache can skip that, so this is an upper bound on prefill."""
    return sum(forward_flops(shape, ctx, gen) for turns in turn_lens for ctx, gen in turns)


def train_flops(shape: ModelShape, seq_lens: Iterable[int]) -> int:
    """Forward + backward over full sequences: 3x the forward cost."""
    return sum(3 * forward_flops(shape, t, 0) for t in seq_lens)


def inference_flops(shape: ModelShape, seq_lens: Iterable[int]) -> int:
    """One no-grad forward over each sequence (the learner's old-policy and reference passes)."""
    return sum(forward_flops(shape, t, 0) for t in seq_lens)


def pretrain_step_flops(shape: ModelShape, batch_size: int, seq_len: int) -> int:
    return batch_size * 3 * forward_flops(shape, seq_len, 0)
