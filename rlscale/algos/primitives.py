"""Per-token quantities and loss aggregation, shared by every recipe.

Shapes: [B, T] tensors over the next-token grid (position t predicts token t+1);
`mask` is 1 where the token was sampled by the policy (0 = prompt, env feedback, padding).
"""

from __future__ import annotations

import torch

from .settings import AggregationConfig


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log pi(token | prefix) for each position. logits [B, T, V], tokens [B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary entropy H = -sum_v p_v log p_v at each position. [B, T, V] -> [B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || pi_ref) per token (Schulman 2020, "Approximating KL
    divergence"; GRPO Eq. 4): exp(ref - logp) - (ref - logp) - 1, unbiased and >= 0."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the mask-1 entries. Selects rather than multiplies, so an inf at a masked
    position (0 * inf = nan) cannot leak into the mean."""
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum() / mask.sum().clamp(min=1)


def masked_row_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean over the mask-1 entries, [B, T] -> [B] (selecting, like masked_mean)."""
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum(-1) / mask.sum(-1).clamp(min=1)


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population std over the mask-1 entries."""
    mu = masked_mean(x, mask)
    return masked_mean((x - mu) ** 2, mask).sqrt()


def aggregation_denominator(mask: torch.Tensor, cfg: AggregationConfig, group_ids: torch.Tensor) -> float:
    """What `aggregate` divides the minibatch's summed terms by: the count of tokens, rows
    with tokens, rows, or groups with tokens. A learner sharded over ranks computes it on the
    whole minibatch (every rank holds the batch's masks), so each rank's share of the loss
    is its terms over the global count, and the ranks' gradients add up to exactly the
    one-rank gradient (issue 12: token-level aggregation stays exact across ranks)."""
    m = mask.bool()
    if cfg.name == "token_mean":
        return max(1.0, float(m.sum()))
    if cfg.name == "seq_mean_token_mean":
        return max(1.0, float((m.sum(-1) > 0).sum()))
    if cfg.name == "seq_mean_token_sum_norm":
        if cfg.length is None:  # RunConfig fills it from the rollout's token budget
            raise ValueError("aggregation seq_mean_token_sum_norm needs its constant length")
        return float(mask.shape[0] * cfg.length)
    if cfg.name == "prompt_mean":
        groups, idx = torch.unique(group_ids, return_inverse=True)
        den = torch.zeros(len(groups)).index_add(0, idx.cpu(), m.sum(-1).float().cpu())
        return max(1.0, float((den > 0).sum()))
    raise KeyError(f"unknown aggregation {cfg.name!r}")


def aggregate(x: torch.Tensor, mask: torch.Tensor, cfg: AggregationConfig, group_ids: torch.Tensor,
              denominator: float | None = None) -> torch.Tensor:
    """Reduce a per-token loss [B, T] to the scalar that is differentiated.

    token_mean               sum_bt x / sum_bt m                      (DAPO Eq. 12)
    seq_mean_token_mean      1/B' sum_b (sum_t x / sum_t m)           (GRPO Eq. 3; B' = rows with tokens)
    seq_mean_token_sum_norm  1/B  sum_b (sum_t x) / length            (Dr.GRPO Eq. 2)
    prompt_mean              1/P  sum_p (sum_{b in p, t} x / sum_{b in p, t} m)   (ScaleRL Sec. 3.2)

    Each is (a sum over the rows) / (aggregation_denominator); `denominator` given: this
    minibatch is one rank's share of a larger one, whose denominator that is.
    """
    keep = mask.bool()
    x = torch.where(keep, x, torch.zeros_like(x))
    m = keep.to(x.dtype)
    den = aggregation_denominator(mask, cfg, group_ids) if denominator is None else denominator
    if cfg.name == "token_mean":
        return x.sum() / den
    if cfg.name == "seq_mean_token_mean":
        rows = m.sum(-1)
        has = rows > 0
        return (x.sum(-1)[has] / rows[has]).sum() / den
    if cfg.name == "seq_mean_token_sum_norm":
        return x.sum(-1).sum() / den
    if cfg.name == "prompt_mean":
        groups, idx = torch.unique(group_ids, return_inverse=True)
        num = torch.zeros(len(groups), dtype=x.dtype, device=x.device).index_add(0, idx, x.sum(-1))
        cnt = torch.zeros(len(groups), dtype=x.dtype, device=x.device).index_add(0, idx, m.sum(-1))
        has = cnt > 0
        return (num[has] / cnt[has]).sum() / den
    raise KeyError(f"unknown aggregation {cfg.name!r}")
