"""Advantage estimators: one function per estimator, registered by its config name.

    estimator(inp: AdvantageInputs, cfg) -> (advantages [B, T], returns [B, T] or None)

Samples arrive grouped: rows g*G .. g*G+G-1 answer the same prompt. Outcome estimators
give one number per sample and spread it over the sample's policy tokens; GAE gives one
per token from the critic's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import registrar
from .primitives import masked_mean, masked_std

EPS = 1e-6


@dataclass
class AdvantageInputs:
    rewards: torch.Tensor  # [B] outcome reward of each sample
    group_size: int  # G samples per prompt, contiguous
    mask: torch.Tensor  # [B, T] 1 = policy token
    values: torch.Tensor | None = None  # [B, T] critic values V(s_t) before token t (GAE only)


Estimator = Callable[[AdvantageInputs, object], tuple[torch.Tensor, torch.Tensor | None]]
ADVANTAGE_ESTIMATORS: dict[str, Estimator] = {}

register_advantage = registrar(ADVANTAGE_ESTIMATORS)


def _grouped(inp: AdvantageInputs) -> torch.Tensor:
    return inp.rewards.double().view(-1, inp.group_size)


def _per_token(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return per_sample.reshape(-1, 1).to(mask.dtype) * mask


@register_advantage("group_norm")
def group_norm(inp: AdvantageInputs, cfg) -> tuple[torch.Tensor, None]:
    """GRPO (Shao et al. 2024, Sec. 4.1.2): A_i = (r_i - mean(r_group)) / std(r_group).
    std_level=batch: divide by the std of all the batch's rewards (ScaleRL, Sec. 3.2).
    A group whose rewards are all equal gets A = 0."""
    r = _grouped(inp)
    centred = r - r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, unbiased=False, keepdim=True) if cfg.std_level == "group" else r.std(unbiased=False)
    return _per_token(centred / (std + EPS), inp.mask), None


@register_advantage("group_mean")
def group_mean(inp: AdvantageInputs, cfg) -> tuple[torch.Tensor, None]:
    """Dr.GRPO (Liu et al. 2025, Eq. 2): A_i = r_i - mean(r_group); dividing by the std
    would weight easy and hard prompts up (their "question-level difficulty bias")."""
    r = _grouped(inp)
    return _per_token(r - r.mean(dim=1, keepdim=True), inp.mask), None


@register_advantage("rloo")
def rloo(inp: AdvantageInputs, cfg) -> tuple[torch.Tensor, None]:
    """RLOO (Ahmadian et al. 2024, Eq. 4): A_i = r_i - 1/(G-1) sum_{j != i} r_j."""
    r = _grouped(inp)
    G = inp.group_size
    others = (r.sum(dim=1, keepdim=True) - r) / (G - 1)
    return _per_token(r - others, inp.mask), None


@register_advantage("reinforce_pp")
def reinforce_pp(inp: AdvantageInputs, cfg) -> tuple[torch.Tensor, None]:
    """REINFORCE++ (Hu 2025, Eq. 7): every policy token of a sample carries its reward
    (minus the group mean with baseline=group, "REINFORCE++-baseline"), then the token
    advantages are normalised by the mean and std of the whole batch's tokens. The
    paper's per-token KL reward shaping is not folded in here: KL stays in the loss
    (algo.kl_coef)."""
    r = _grouped(inp)
    if cfg.baseline == "group":
        r = r - r.mean(dim=1, keepdim=True)
    a = _per_token(r, inp.mask)
    mu, sd = masked_mean(a, inp.mask), masked_std(a, inp.mask)
    return (a - mu) / (sd + EPS) * inp.mask, None


@register_advantage("gae")
def gae(inp: AdvantageInputs, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016, Eq. 16) over each sample's policy tokens in order, the
    outcome reward arriving after the last one:
        delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lam A_{t+1},
    r_t = 0 except at the last policy token, V after the last token = 0. Env-feedback
    positions (mask 0) are skipped, not counted as steps. Returns R_t = A_t + V_t are the
    value targets; whiten=True then normalises A over the batch's tokens."""
    if inp.values is None:
        raise ValueError("gae needs the critic's values")
    mask = inp.mask.bool()
    values = inp.values.double()
    B, T = mask.shape
    # position of each row's last policy token: where the outcome reward is paid
    last = torch.where(mask.any(-1), T - 1 - mask.flip(-1).double().argmax(-1), torch.full((B,), -1))
    adv = torch.zeros(B, T, dtype=torch.float64, device=values.device)
    running = torch.zeros(B, dtype=torch.float64, device=values.device)
    next_value = torch.zeros(B, dtype=torch.float64, device=values.device)
    rewards = inp.rewards.double()
    for t in range(T - 1, -1, -1):
        m = mask[:, t]
        r_t = torch.where(last == t, rewards, torch.zeros_like(rewards))
        delta = r_t + cfg.gamma * next_value - values[:, t]
        step = delta + cfg.gamma * cfg.lam * running
        adv[:, t] = torch.where(m, step, torch.zeros_like(step))
        running = torch.where(m, step, running)
        next_value = torch.where(m, values[:, t], next_value)
    returns = (adv + values) * inp.mask
    if cfg.whiten:
        adv = (adv - masked_mean(adv, inp.mask)) / (masked_std(adv, inp.mask) + EPS) * inp.mask
    return adv.to(inp.mask.dtype), returns.to(inp.mask.dtype)


def estimate_advantages(inp: AdvantageInputs, cfg) -> tuple[torch.Tensor, torch.Tensor | None]:
    adv, returns = ADVANTAGE_ESTIMATORS[cfg.name](inp, cfg)
    return adv.to(inp.mask.dtype), returns
