"""The learner: a Ray actor holding the torch policy and its optimizer.

One `update` call = one RL step on a TrainBatch:
  1. no-grad pass with the current weights -> old logprobs, full-vocab token entropy,
     the critic's values (PPO), reference logprobs (only when a reference is built), and
     the gap to the engine's sampling logprobs;
  2. advantages from the configured estimator (rlscale/algos/advantages.py);
  3. `epochs` x `minibatches` optimizer steps on the configured objective
     (rlscale/algos/objective.py), minibatches made of whole prompt groups.
FLOPs are counted here, pass by pass, as the passes run (rlscale/compute.py).
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from . import compute
from .algos.advantages import AdvantageInputs, estimate_advantages
from .algos.losses import LossInputs
from .algos.objective import policy_objective
from .algos.primitives import (aggregation_denominator, gather_logprobs, kl_k3, masked_mean, masked_row_mean,
                               token_entropy)
from .batch import TrainBatch, UpdateResult
from .compute import ModelShape
from .config import AlgoConfig
from .device import torch_device
from .learner_weights import LearnerWeights


def hash_state(version: int, tensors: list, optimizer_state: dict, param_groups: str) -> str:
    """sha256 over the version, the param-group settings (as text), the named tensors and
    the optimizer's per-parameter state, in a fixed order: equal hashes, equal state."""
    h = hashlib.sha256(str(version).encode())
    for key in sorted(optimizer_state):
        tensors = tensors + [(f"opt.{key}.{k}", v) for k, v in sorted(optimizer_state[key].items())]
    h.update(param_groups.encode())
    for name, t in tensors:
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def pad_batch(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
              loss_mask: list[list[int]] | None = None):
    """Right-padded [B, L] inputs plus next-token targets and a loss mask [B, L-1]:
    mask[b, t] = 1 where input position t predicts a completion token the policy sampled.
    ``loss_mask`` (per completion token, 1 = policy, 0 = env feedback in multi-turn
    episodes) zeroes the feedback positions; None means every completion token counts."""
    seqs = [p + c for p, c in zip(prompt_ids, completion_ids)]
    L = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L - 1), dtype=torch.float32)
    for b, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        input_ids[b, : len(p) + len(c)] = torch.tensor(p + c)
        attn[b, : len(p) + len(c)] = 1
        if loss_mask is None:
            mask[b, len(p) - 1 : len(p) + len(c) - 1] = 1
        else:
            if len(loss_mask[b]) != len(c):
                raise ValueError(f"sample {b}: loss_mask has {len(loss_mask[b])} entries for {len(c)} completion tokens")
            mask[b, len(p) - 1 : len(p) + len(c) - 1] = torch.tensor(loss_mask[b], dtype=torch.float32)
    return input_ids, attn, input_ids[:, 1:], mask


def scatter_completion(values: list[list[float]], prompt_lens: list[int], shape) -> torch.Tensor:
    """Place per-completion-token values (e.g. engine logprobs) on the [B, L-1] grid."""
    out = torch.zeros(shape, dtype=torch.float32)
    for b, (v, p) in enumerate(zip(values, prompt_lens)):
        out[b, p - 1 : p - 1 + len(v)] = torch.tensor(v, dtype=torch.float32)
    return out


def loss_inputs(logits, targets, mask, old_logp, behaviour_logp, advantages, group_ids, *, ref_logp=None,
                values=None, old_values=None, returns=None, with_entropy: bool = False) -> LossInputs:
    """One minibatch's LossInputs from the policy's logits. Outside the mask (prompt,
    env feedback, padding) the policy may find the tokens arbitrarily unlikely; there
    logp, the reference's and the behaviour's logprobs are pinned to old_logp, so no
    exp() overflow can turn into a nan value or gradient through the mask. Inside the
    mask nothing changes."""
    keep = mask.bool()
    pin = lambda x: torch.where(keep, x, old_logp) if x is not None else None  # noqa: E731
    return LossInputs(logp=pin(gather_logprobs(logits, targets)), old_logp=old_logp,
                      behaviour_logp=pin(behaviour_logp), advantages=advantages, mask=mask, group_ids=group_ids,
                      ref_logp=pin(ref_logp), values=values, old_values=old_values, returns=returns,
                      entropy=token_entropy(logits) if with_entropy else None)


class Learner(LearnerWeights):
    def __init__(self, model_path: str, algo: dict, seed: int, use_gpu: bool, dtype: str, engines_alongside: int = 0):
        """engines_alongside: rollout engines that compute on this host while the learner
        does (async mode on one machine); on CPU the learner leaves one core to each."""
        from .quiet import install_filters

        install_filters()  # first, before torch or transformers log in this actor
        torch.manual_seed(seed)
        if not use_gpu:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - engines_alongside))
        self.cfg = AlgoConfig.model_validate(algo)
        self.seed = seed
        self.device = torch_device(use_gpu)
        hf_logging.disable_progress_bar()  # a load bar per actor start is noise in the run's output
        self.policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(self.device)
        self.policy.config.use_cache = False
        self.shape = ModelShape.from_hf(self.policy)
        # The frozen base policy: the KL penalty's anchor, or the reference of the logged
        # kl_ref; built only when one of the two is asked for.
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False) if self.cfg.needs_reference else None
        params = list(self.policy.parameters())
        self.value_head = None
        if self.cfg.loss.name == "ppo":
            # PPO's critic: a linear value head on the policy's last hidden state (shared
            # trunk), kept in fp32 and outside the policy so the engine never sees it.
            self.value_head = torch.nn.Linear(self.policy.config.hidden_size, 1).to(self.device)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
            params += list(self.value_head.parameters())
        if self._split_head and getattr(self.policy.config, "final_logit_softcapping", None):
            raise ValueError("algo.fp32_lm_head and the PPO value head compute the LM head themselves and do not "
                             "support models that soft-cap their logits")
        params = self._shard(params)
        self.opt = torch.optim.AdamW(params, lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                     weight_decay=self.cfg.weight_decay)
        self.pad_id = self.policy.config.pad_token_id or 0
        self.version = 0

    # ---- what a sharded learner (learner_rank.py) overrides; one rank: the whole batch ----
    world, rank = 1, 0

    def _shard(self, params: list) -> list:
        """Place the policy across the ranks; returns the parameters to optimise."""
        return params

    def _local_rows(self, n_rows: int) -> np.ndarray:
        """The rows of the batch whose no-grad pass this rank runs (contiguous)."""
        return np.arange(n_rows)

    def _gather_rows(self, local: torch.Tensor | None, n_rows: int) -> torch.Tensor | None:
        """Every rank's rows of a per-row tensor, in batch order."""
        return local

    def _local_groups(self, groups: np.ndarray) -> np.ndarray:
        """This rank's share of a minibatch's prompt groups."""
        return groups

    def _after_backward(self) -> None:
        """Make every rank's gradients the whole minibatch's."""

    def _sum_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        return values

    @property
    def _split_head(self) -> bool:
        return self.cfg.fp32_lm_head or self.value_head is not None

    def model_shape(self) -> ModelShape:
        return self.shape

    def _forward(self, model, input_ids, attn, with_values: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, L-1, V] predicting each next token, and the critic's values [B, L-1]
        (None without a value head, or with with_values=False, as for the reference).
        fp32_lm_head (ScaleRL Sec. 3.2): the last hidden state and the head's weight are
        cast to fp32 before the projection, so a bf16 policy's logits and logprobs are
        computed in fp32."""
        input_ids, attn = input_ids.to(self.device), attn.to(self.device)
        if not self._split_head:
            return model(input_ids=input_ids, attention_mask=attn).logits[:, :-1], None
        hidden = model.base_model(input_ids=input_ids, attention_mask=attn).last_hidden_state[:, :-1]
        head = model.get_output_embeddings()
        if self.cfg.fp32_lm_head:
            bias = head.bias.float() if head.bias is not None else None
            logits = F.linear(hidden.float(), head.weight.float(), bias)
        else:
            logits = head(hidden)
        with_values = with_values and self.value_head is not None
        return logits, self.value_head(hidden.float()).squeeze(-1) if with_values else None

    @torch.no_grad()
    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        """logprobs of token_ids[1:] given their prefixes: compared with the engine's
        prompt logprobs after each weight sync to catch stale engine weights."""
        ids = torch.tensor([token_ids])
        logits, _ = self._forward(self.policy.eval(), ids, torch.ones_like(ids))
        return gather_logprobs(logits, ids[:, 1:].to(self.device))[0].cpu().tolist()

    @torch.no_grad()
    def _old_pass(self, input_ids, attn, targets, n_chunks: int):
        """Pre-update logprobs, entropy and values of the current policy, and reference
        logprobs when a reference exists, in n_chunks forward passes (every rank runs as
        many: a sharded policy's forward is collective); counts the FLOPs of each."""
        old, ref, ent, val = [], [], [], []
        self.policy.eval()
        for rows in np.array_split(np.arange(input_ids.shape[0]), n_chunks):
            if len(rows) == 0:  # this rank has fewer rows than the others have chunks
                self._forward(self.policy, input_ids[:1], attn[:1])
                continue
            ids, am, tg = input_ids[rows], attn[rows], targets[rows].to(self.device)
            logits, values = self._forward(self.policy, ids, am)
            old.append(gather_logprobs(logits, tg).cpu())
            ent.append(token_entropy(logits).cpu())
            if values is not None:
                val.append(values.float().cpu())
            if self.ref is not None:  # through the same head path, so KL compares like with like
                ref.append(gather_logprobs(self._forward(self.ref, ids, am, with_values=False)[0], tg).cpu())
        lens = attn.sum(-1).tolist()
        self._flops += compute.inference_flops(self._trained_shape, lens)
        if self.ref is not None:
            self._flops += compute.inference_flops(self.shape, lens)
        cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
        return torch.cat(old), cat(ref), torch.cat(ent), cat(val)

    @property
    def _trained_shape(self) -> ModelShape:
        """The policy plus the value head's d_model weights when PPO's critic is on."""
        return self.shape.with_extra_params(self.value_head.weight.numel() if self.value_head is not None else 0)

    def update(self, batch: TrainBatch) -> UpdateResult:
        t0 = time.time()
        self._flops = 0
        cfg = self.cfg
        prompt_lens = [len(p) for p in batch.prompt_ids]
        input_ids, attn, targets, mask = pad_batch(batch.prompt_ids, batch.completion_ids, self.pad_id,
                                                   batch.loss_mask)
        B, G = input_ids.shape[0], batch.group_size
        n_groups = B // G
        mb_groups = np.array_split(np.arange(n_groups), min(cfg.minibatches, n_groups))
        # Each rank runs the no-grad pass on its rows; all ranks then hold the whole batch's.
        rows = self._local_rows(B)
        most_rows, chunk = -(-B // self.world), max(1, B // cfg.minibatches)
        n_chunks = max(1, -(-most_rows // chunk))
        old_logp, ref_logp, entropy, old_values = (self._gather_rows(x, B) for x in self._old_pass(
            input_ids[rows], attn[rows], targets[rows], n_chunks))
        # Env-feedback positions hold placeholder logprobs; pinned to old_logp like every masked position.
        engine_logp = torch.where(mask.bool(), scatter_completion(batch.behaviour_logprobs, prompt_lens, mask.shape),
                                  old_logp)
        adv, returns = estimate_advantages(AdvantageInputs(torch.tensor(batch.rewards, dtype=torch.float32), G, mask,
                                                           old_values), cfg.advantage)
        pi_old = engine_logp if cfg.off_policy.old_logp == "behaviour" else old_logp
        lags = [self.version - v for v in batch.policy_versions]
        result = dict(
            entropy=masked_mean(entropy, mask).item(),
            # Same tokens; in sync mode the same policy version, so only numerics separate the
            # two. In async mode the gap also holds the policy's drift over each sample's lag.
            logprob_diff=masked_mean((engine_logp - old_logp).abs(), mask).item(),
            kl_ref=masked_mean(kl_k3(old_logp, ref_logp), mask).item() if ref_logp is not None else None,
            policy_lag_mean=float(np.mean(lags)), policy_lag_max=int(max(lags)),
            advantages=masked_row_mean(adv, mask).tolist())
        group_ids = torch.arange(B) // G
        self.policy.train()
        agg: dict[str, list[float]] = defaultdict(list)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.version)
        for _ in range(cfg.epochs):
            order = torch.randperm(n_groups, generator=gen)
            for groups in mb_groups:
                chosen = order[torch.as_tensor(groups)]
                whole = (chosen[:, None] * G + torch.arange(G)).flatten()
                # The whole minibatch's count: each rank's share of the loss divides by it.
                den = aggregation_denominator(mask[whole], cfg.aggregation, group_ids[whole])
                mine = chosen[torch.as_tensor(self._local_groups(np.arange(len(chosen))), dtype=torch.long)]
                idx = (mine[:, None] * G + torch.arange(G)).flatten() if len(mine) else whole[:1]
                loss, stats = self._minibatch_loss(idx, input_ids, attn, targets, mask, pi_old, engine_logp,
                                                   ref_logp, adv, old_values, returns, group_ids, gen, den)
                if not len(mine):  # no group for this rank: a pass that adds nothing, for the collectives
                    loss, stats = loss * 0.0, {}
                self.opt.zero_grad(set_to_none=True)
                # Ranks average their gradients (learner_rank.py): x world makes the average the sum.
                (loss * self.world).backward()
                self._after_backward()
                gn = torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]],
                                                    cfg.max_grad_norm)
                self.opt.step()
                n_tok = float(mask[idx].sum()) if len(mine) else 0.0
                step_stats = self._sum_over_ranks({"loss": loss.item(), "_tokens": n_tok,
                                                   **{k: float(v) * n_tok for k, v in stats.items()}})
                tokens = max(step_stats.pop("_tokens"), 1.0)
                agg["loss"].append(step_stats.pop("loss"))
                agg["grad_norm"].append(float(gn))
                for k, v in step_stats.items():  # token-weighted over the ranks' shares
                    agg[k].append(v / tokens)
                self._flops += compute.train_flops(self._trained_shape, attn[idx].sum(-1).tolist())
        self.version += 1
        self._flops = int(self._sum_over_ranks({"flops": float(self._flops)})["flops"])
        means = {k: float(np.mean(v)) for k, v in agg.items()}
        return UpdateResult(
            policy_version=self.version, loss=means.pop("loss"), grad_norm=means.pop("grad_norm"),
            tokens_trained=int(mask.sum().item()) * cfg.epochs, learner_s=time.time() - t0, flops=self._flops,
            algo_stats=means, **result)

    def _minibatch_loss(self, idx, input_ids, attn, targets, mask, pi_old, engine_logp, ref_logp, adv, old_values,
                        returns, group_ids, gen, denominator: float):
        dev = self.device
        logits, values = self._forward(self.policy, input_ids[idx], attn[idx])
        on = lambda x: x[idx].to(dev) if x is not None else None  # noqa: E731
        inp = loss_inputs(logits, on(targets), on(mask), on(pi_old), on(engine_logp), on(adv), on(group_ids),
                          ref_logp=on(ref_logp), values=values, old_values=on(old_values), returns=on(returns),
                          with_entropy=self.cfg.entropy_control.name in ("entropy_bonus", "high_entropy_only"))
        return policy_objective(inp, self.cfg, gen, denominator)

    def save(self, path: str) -> str:
        self.policy.save_pretrained(path, safe_serialization=True)
        return path

    def save_checkpoint(self, path: str) -> str:
        """The learner's whole state under `path`: policy/ in HF format (a later run can load
        it as model.path once the tokenizer files are beside it) and learner_state.pt with
        the optimizer, the PPO value head, the policy version and torch's RNG. The frozen
        reference is the base model and is rebuilt from it. Returns state_hash()."""
        os.makedirs(path, exist_ok=True)
        self.save(os.path.join(path, "policy"))
        torch.save({"optimizer": self.opt.state_dict(), "version": self.version, "torch_rng": torch.get_rng_state(),
                    "value_head": self.value_head.state_dict() if self.value_head is not None else None},
                   os.path.join(path, "learner_state.pt"))
        return self.state_hash()

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this actor runs on (run.json's actor_nodes)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def get_version(self) -> int:
        return self.version

    def load_checkpoint(self, path: str) -> str:
        """Continue from a checkpoint written by save_checkpoint: policy weights, optimizer,
        value head, version and torch's RNG, exactly. Returns state_hash(), which equals the
        one recorded when the checkpoint was written."""
        trained = AutoModelForCausalLM.from_pretrained(os.path.join(path, "policy"), dtype=self.policy.dtype)
        self.policy.load_state_dict(trained.state_dict())
        state = torch.load(os.path.join(path, "learner_state.pt"), map_location=self.device, weights_only=False)
        self.opt.load_state_dict(state["optimizer"])
        if self.value_head is not None:
            self.value_head.load_state_dict(state["value_head"])
        self.version = state["version"]
        torch.set_rng_state(state["torch_rng"].cpu())
        return self.state_hash()

    def state_hash(self) -> str:
        """sha256 over the policy's and value head's tensors, the optimizer state and the
        policy version, in a fixed order: equal hashes mean equal learner state."""
        tensors = list(self.policy.state_dict().items())
        if self.value_head is not None:
            tensors += [(f"value_head.{k}", v) for k, v in self.value_head.state_dict().items()]
        opt = self.opt.state_dict()
        return hash_state(self.version, tensors, opt["state"], repr(opt["param_groups"]))
