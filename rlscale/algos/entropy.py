"""Entropy control: transforms of the per-token policy loss, one per config name.

    control(policy [B, T], inp: LossInputs, cfg, gen) -> (policy [B, T], stats)

Cui et al. 2025 ("The Entropy Mechanism of RL for Reasoning LMs") show entropy falls
with the covariance between a token's logprob and its advantage (their Eq. 9), and
bound the few high-covariance tokens (Clip-Cov, KL-Cov). The covariance is centred over
the policy tokens of the minibatch, as in the authors' implementation.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import registrar
from .losses import LossInputs
from .primitives import masked_mean

Control = Callable[[torch.Tensor, LossInputs, object, torch.Generator], tuple[torch.Tensor, dict]]
ENTROPY_CONTROLS: dict[str, Control] = {}

register_entropy_control = registrar(ENTROPY_CONTROLS)


@register_entropy_control("none")
def none(policy, inp, cfg, gen):
    return policy, {}


@register_entropy_control("entropy_bonus")
def entropy_bonus(policy, inp, cfg, gen):
    """L_t - coef * H_t: rewards spread-out next-token distributions (the classic bonus,
    Williams & Peng 1991; the baseline Cui et al. 2025 compare against in Sec. 4)."""
    return policy - cfg.coef * inp.entropy, {}


def token_covariance(inp: LossInputs) -> torch.Tensor:
    """Cov_t = (logp_t - mean logp) (A_t - mean A) over the policy tokens (Cui et al. Eq. 10)."""
    logp = inp.logp.detach()
    return (logp - masked_mean(logp, inp.mask)) * (inp.advantages - masked_mean(inp.advantages, inp.mask))


def _count(ratio: float, n: int) -> int:
    # The paper's ratios (2e-4, 2e-3) assume batches of millions of tokens; at least one
    # token is selected so the control acts at all on small batches.
    return max(1, int(ratio * n))


@register_entropy_control("clip_cov")
def clip_cov(policy, inp, cfg, gen):
    """Clip-Cov (Cui et al. 2025, Eq. 11): among policy tokens whose covariance lies in
    [low, high], a random share `ratio` of all policy tokens is taken out of the loss
    (value and gradient 0)."""
    cov = token_covariance(inp)
    valid = inp.mask.bool()
    candidates = torch.nonzero((valid & (cov >= cfg.low) & (cov <= cfg.high)).flatten()).squeeze(-1)
    k = min(_count(cfg.ratio, int(valid.sum())), len(candidates))
    chosen = candidates[torch.randperm(len(candidates), generator=gen)[:k].to(candidates.device)]
    keep = torch.ones(policy.numel(), dtype=policy.dtype, device=policy.device)
    keep[chosen] = 0
    return policy * keep.view_as(policy), {"cov_clipped_frac": torch.tensor(k / max(1, int(valid.sum())))}


@register_entropy_control("kl_cov")
def kl_cov(policy, inp, cfg, gen):
    """KL-Cov (Cui et al. 2025, Eq. 12): the top `ratio` share of policy tokens by
    covariance get a penalty coef * |logp - old_logp|, the authors' per-token estimate
    of KL(pi_old || pi_theta)."""
    cov = token_covariance(inp)
    valid = inp.mask.bool()
    k = _count(cfg.ratio, int(valid.sum()))
    scores = torch.where(valid, cov, torch.full_like(cov, -torch.inf)).flatten()
    chosen = torch.topk(scores, k).indices
    penalty = torch.zeros(policy.numel(), dtype=policy.dtype, device=policy.device)
    penalty[chosen] = 1.0
    penalty = penalty.view_as(policy) * cfg.coef * (inp.logp - inp.old_logp).abs()
    return policy + penalty, {"kl_cov_frac": torch.tensor(k / max(1, int(valid.sum())))}


@register_entropy_control("high_entropy_only")
def high_entropy_only(policy, inp, cfg, gen):
    """Wang et al. 2025 ("Beyond the 80/20 Rule", Eq. 5): only tokens whose entropy is in
    the batch's top `top_frac` (the forking tokens) keep their loss; the normaliser of
    the aggregation still counts all policy tokens, as in the paper."""
    entropy = inp.entropy.detach()
    threshold = torch.quantile(entropy[inp.mask.bool()].float(), 1 - cfg.top_frac)
    keep = (entropy >= threshold).to(policy.dtype)
    return policy * keep, {"entropy_threshold": threshold, "high_entropy_frac": masked_mean(keep, inp.mask)}
