"""Advantages, policy losses and per-token diagnostics.

Each policy loss is a small function with one signature, registered in POLICY_LOSSES,
so DAPO, Dr.GRPO, CISPO, GSPO and friends can be added beside GRPO:

    loss_fn(logp, old_logp, advantages, mask, cfg) -> (scalar loss, stats dict)

logp / old_logp / mask are [B, T] over completion positions; advantages is [B].
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def group_advantages(rewards: np.ndarray, std_normalize: bool = True, eps: float = 1e-6) -> np.ndarray:
    """GRPO outcome advantages (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2):
    A_i = (r_i - mean(r_group)) / std(r_group). rewards: [n_prompts, G].
    A group whose rewards are all equal carries no signal and gets A = 0."""
    r = np.asarray(rewards, dtype=np.float64)
    centered = r - r.mean(axis=1, keepdims=True)
    if not std_normalize:  # Dr.GRPO (Liu et al. 2025) drops the std to avoid difficulty bias
        return centered
    return centered / (r.std(axis=1, keepdims=True) + eps)


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
    """Token-level aggregation (DAPO, Yu et al. 2025, Eq. 12): every token of the batch
    weighs the same, so long responses are not down-weighted as in per-sequence means.
    Selects rather than multiplies, so an inf at a masked position (0 * inf = nan) cannot
    leak into the mean."""
    return torch.where(mask.bool(), x, torch.zeros_like(x)).sum() / mask.sum().clamp(min=1)


def grpo_loss(logp, old_logp, advantages, mask, cfg) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO policy objective (DeepSeekMath Eq. 3) with token-level aggregation.

    ratio r_t = pi(o_t) / pi_old(o_t)
    L = -mean_t min(r_t A, clip(r_t, 1 - eps, 1 + eps) A)      (PPO, Schulman et al. 2017, Eq. 7)
    """
    adv = advantages.unsqueeze(-1)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped < unclipped).float(), mask).item()
    return loss, {"clip_frac": clip_frac, "ratio_mean": masked_mean(ratio.detach(), mask).item()}


PolicyLoss = Callable[..., tuple[torch.Tensor, dict[str, float]]]


def regularized_policy_loss(loss_fn: PolicyLoss, logits, targets, old_logp, ref_logp, advantages, mask, cfg):
    """One minibatch's objective from the policy's logits: ``loss_fn`` plus, when
    cfg.kl_coef > 0, beta * k3 KL to the reference policy (GRPO, DeepSeekMath Eq. 3,
    estimator Eq. 4). Every term is a masked mean, so positions with mask 0 (padding,
    and env feedback tokens of multi-turn episodes) contribute neither value nor gradient.
    Also reports kl_old_new, the k3 KL this update has moved the policy by."""
    keep = mask.bool()
    # Outside the mask the policy may find the tokens (env text, padding) arbitrarily
    # unlikely; pin those positions to old_logp so no exp() overflow there can turn into
    # a nan value or gradient through the mask. Inside the mask nothing changes.
    logp = torch.where(keep, gather_logprobs(logits, targets), old_logp)
    ref_logp = torch.where(keep, ref_logp, old_logp)
    loss, terms = loss_fn(logp, old_logp, advantages, mask, cfg)
    if cfg.kl_coef > 0:
        loss = loss + cfg.kl_coef * masked_mean(kl_k3(logp, ref_logp), mask)
    terms["kl_old_new"] = masked_mean(kl_k3(logp.detach(), old_logp), mask).item()
    return loss, terms
POLICY_LOSSES: dict[str, PolicyLoss] = {"grpo": grpo_loss}
