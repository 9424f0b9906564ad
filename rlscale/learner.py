"""The learner: a Ray actor holding the torch policy and its optimizer.

One `update` call = one RL step on a batch of scored rollouts:
  1. no-grad pass with the current weights -> old logprobs, full-vocab token entropy,
     reference logprobs (KL), and the gap to the engine's sampling logprobs;
  2. `epochs` x `minibatches` optimizer steps on the policy loss from losses.py.
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from .compute import ModelShape
from .config import AlgoConfig
from .device import torch_device
from .losses import POLICY_LOSSES, gather_logprobs, kl_k3, masked_mean, regularized_policy_loss, token_entropy


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


class Learner:
    def __init__(self, model_path: str, algo: dict, seed: int, use_gpu: bool, dtype: str):
        torch.manual_seed(seed)
        if not use_gpu:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.cfg = AlgoConfig.model_validate(algo)
        self.device = torch_device(use_gpu)
        hf_logging.disable_progress_bar()  # a load bar per actor start is noise in the run's output
        self.policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(self.device)
        self.policy.config.use_cache = False
        # The frozen base policy: the KL penalty's anchor when kl_coef > 0, and always the
        # reference for the logged kl_ref (how far RL has moved the policy).
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                     weight_decay=self.cfg.weight_decay)
        self.pad_id = self.policy.config.pad_token_id or 0
        self.loss_fn = POLICY_LOSSES[self.cfg.loss]
        self.version = 0

    def model_shape(self) -> ModelShape:
        return ModelShape.from_hf(self.policy)

    def _logits(self, model, input_ids, attn):
        return model(input_ids=input_ids.to(self.device), attention_mask=attn.to(self.device)).logits[:, :-1]

    @torch.no_grad()
    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        """logprobs of token_ids[1:] given their prefixes: compared with the engine's
        prompt logprobs after each weight sync to catch stale engine weights."""
        ids = torch.tensor([token_ids])
        logits = self._logits(self.policy.eval(), ids, torch.ones_like(ids))
        return gather_logprobs(logits, ids[:, 1:].to(self.device))[0].cpu().tolist()

    @torch.no_grad()
    def _old_pass(self, input_ids, attn, targets, mask, mb: int):
        old, ref, ent = [], [], []
        self.policy.eval()
        for s in range(0, input_ids.shape[0], mb):
            logits = self._logits(self.policy, input_ids[s:s + mb], attn[s:s + mb])
            old.append(gather_logprobs(logits, targets[s:s + mb].to(self.device)).cpu())
            ent.append(token_entropy(logits).cpu())
            ref_logits = self._logits(self.ref, input_ids[s:s + mb], attn[s:s + mb])
            ref.append(gather_logprobs(ref_logits, targets[s:s + mb].to(self.device)).cpu())
        return torch.cat(old), torch.cat(ref), torch.cat(ent)

    def update(self, batch: dict) -> dict:
        """batch: prompt_ids, completion_ids, sampling_logprobs (lists per sample), advantages [B],
        and optionally loss_mask (per completion token; 0 = env feedback, excluded from the
        loss and from every per-token statistic)."""
        t0 = time.time()
        prompt_lens = [len(p) for p in batch["prompt_ids"]]
        input_ids, attn, targets, mask = pad_batch(batch["prompt_ids"], batch["completion_ids"], self.pad_id,
                                                   batch.get("loss_mask"))
        adv = torch.tensor(batch["advantages"], dtype=torch.float32)
        B = input_ids.shape[0]
        mb = B // self.cfg.minibatches
        old_logp, ref_logp, entropy = self._old_pass(input_ids, attn, targets, mask, mb)
        engine_logp = scatter_completion(batch["sampling_logprobs"], prompt_lens, mask.shape)
        stats = {
            "entropy": masked_mean(entropy, mask).item(),
            # Same tokens, same policy version: only numerics should separate these two.
            "logprob_diff": masked_mean((engine_logp - old_logp).abs(), mask).item(),
            "kl_ref": masked_mean(kl_k3(old_logp, ref_logp), mask).item(),
        }
        self.policy.train()
        agg: dict[str, list[float]] = {"loss": [], "grad_norm": [], "clip_frac": [], "kl_old_new": []}
        gen = torch.Generator().manual_seed(self.version)
        for _ in range(self.cfg.epochs):
            order = torch.randperm(B, generator=gen)
            for s in range(0, B, mb):
                idx = order[s:s + mb]
                m = mask[idx].to(self.device)
                logits = self._logits(self.policy, input_ids[idx], attn[idx])
                loss, terms = regularized_policy_loss(
                    self.loss_fn, logits, targets[idx].to(self.device), old_logp[idx].to(self.device),
                    ref_logp[idx].to(self.device), adv[idx].to(self.device), m, self.cfg)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.max_grad_norm)
                self.opt.step()
                agg["loss"].append(loss.item())
                agg["grad_norm"].append(float(gn))
                agg["clip_frac"].append(terms["clip_frac"])
                agg["kl_old_new"].append(terms["kl_old_new"])
        self.version += 1
        stats.update({k: float(np.mean(v)) for k, v in agg.items()})
        stats.update({
            "policy_version": self.version,
            "tokens_trained": int(mask.sum().item()) * self.cfg.epochs,
            "learner_s": time.time() - t0,
        })
        return stats

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights for the rollout engine, on CPU, under HF checkpoint names."""
        return {k: v.detach().to("cpu").contiguous() for k, v in self.policy.state_dict().items()}

    def save(self, path: str) -> str:
        self.policy.save_pretrained(path, safe_serialization=True)
        return path
