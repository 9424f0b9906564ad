"""Policy losses: one function per loss, registered by its config name.

    loss(inp: LossInputs, cfg) -> LossOutput(policy [B, T], value [B, T] | None, stats)

`policy` is the per-token loss (the negated per-token objective) before aggregation;
objective.py applies off-policy weights and entropy control to it and then aggregates
it as configured. Sequence-level losses (GSPO) put their per-sequence term on every
token of the sequence, so seq_mean_token_mean aggregation gives the paper's mean over
sequences. Stats are detached scalars, reported as masked means over policy tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from . import registrar
from .primitives import masked_mean, masked_row_mean


@dataclass
class LossInputs:
    logp: torch.Tensor  # [B, T] log pi_theta of the sampled tokens (carries the gradient)
    old_logp: torch.Tensor  # [B, T] log pi_old: the learner's pre-update logprobs, or the behaviour policy's
    behaviour_logp: torch.Tensor  # [B, T] the engine's sampling logprobs
    advantages: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] 1 = policy token
    group_ids: torch.Tensor  # [B] prompt group of each sample
    ref_logp: torch.Tensor | None = None  # [B, T] frozen reference policy (KL)
    values: torch.Tensor | None = None  # [B, T] critic values (carry the gradient; PPO)
    old_values: torch.Tensor | None = None  # [B, T] critic values before the update
    returns: torch.Tensor | None = None  # [B, T] value targets (GAE)
    entropy: torch.Tensor | None = None  # [B, T] token entropy of pi_theta (when entropy control needs it)


@dataclass
class LossOutput:
    policy: torch.Tensor  # [B, T] per-token policy loss
    value: torch.Tensor | None = None  # [B, T] per-token value loss, already weighted
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


PolicyLoss = Callable[[LossInputs, object], LossOutput]
POLICY_LOSSES: dict[str, PolicyLoss] = {}

register_loss = registrar(POLICY_LOSSES)


def _clipped_surrogate(inp: LossInputs, low: float, high: float) -> LossOutput:
    """-min(r A, clip(r, 1 - low, 1 + high) A) per token, r = pi / pi_old
    (PPO, Schulman et al. 2017, Eq. 7). Where the clipped branch is the minimum the
    token gets no gradient: it has already moved far enough in the advantage's direction."""
    ratio = torch.exp(inp.logp - inp.old_logp)
    unclipped = ratio * inp.advantages
    clipped = torch.clamp(ratio, 1 - low, 1 + high) * inp.advantages
    with torch.no_grad():
        stats = {"clip_frac": masked_mean((clipped < unclipped).float(), inp.mask),
                 "ratio_mean": masked_mean(ratio, inp.mask)}
    return LossOutput(-torch.minimum(unclipped, clipped), stats=stats)


@register_loss("grpo")
def grpo(inp: LossInputs, cfg) -> LossOutput:
    """GRPO (Shao et al. 2024, DeepSeekMath Eq. 3): the symmetric clipped surrogate."""
    return _clipped_surrogate(inp, cfg.clip_eps, cfg.clip_eps)


@register_loss("dapo")
def dapo(inp: LossInputs, cfg) -> LossOutput:
    """DAPO clip-higher (Yu et al. 2025, Eq. 10): eps_high > eps_low leaves more room to
    raise unlikely tokens, which keeps entropy from collapsing."""
    return _clipped_surrogate(inp, cfg.clip_low, cfg.clip_high)


@register_loss("dr_grpo")
def dr_grpo(inp: LossInputs, cfg) -> LossOutput:
    """Dr.GRPO (Liu et al. 2025, Eq. 2): GRPO's clipped surrogate; what differs is the
    advantage (no std: group_mean) and the aggregation (token sums over a constant
    length: seq_mean_token_sum_norm), which LOSS_DEFAULTS select with this name."""
    return _clipped_surrogate(inp, cfg.clip_eps, cfg.clip_eps)


@register_loss("cispo")
def cispo(inp: LossInputs, cfg) -> LossOutput:
    """CISPO (MiniMax-M1 2025, Eq. 4; ScaleRL Eq. 5):
        J = sg(min(r_t, eps_max)) A_t log pi_theta(o_t)
    The IS weight is truncated and stop-gradiented instead of clipping the token out, so
    every token keeps a gradient (rare "fork" tokens included)."""
    ratio = torch.exp(inp.logp - inp.old_logp).detach()
    weight = torch.clamp(ratio, max=cfg.eps_max)
    stats = {"is_truncated_frac": masked_mean((ratio > cfg.eps_max).float(), inp.mask),
             "ratio_mean": masked_mean(ratio, inp.mask)}
    return LossOutput(-weight * inp.advantages * inp.logp, stats=stats)


@register_loss("gspo")
def gspo(inp: LossInputs, cfg) -> LossOutput:
    """GSPO (Zheng et al. 2025, Eq. 5-7): one length-normalised ratio per sequence,
        s_i = (pi(y_i) / pi_old(y_i)) ^ (1 / |y_i|) = exp(mean_t (logp - old_logp)),
        J_i = min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i),
    placed on every token of sequence i. clip_frac is the share of sequences clipped."""
    s = torch.exp(masked_row_mean(inp.logp - inp.old_logp, inp.mask))
    adv = masked_row_mean(inp.advantages, inp.mask)
    unclipped = s * adv
    clipped = torch.clamp(s, 1 - cfg.clip_low, 1 + cfg.clip_high) * adv
    per_seq = -torch.minimum(unclipped, clipped)
    rows = inp.mask.sum(-1) > 0
    with torch.no_grad():
        stats = {"clip_frac": (clipped < unclipped)[rows].float().mean(), "ratio_mean": s[rows].mean()}
    return LossOutput(per_seq.unsqueeze(-1).expand_as(inp.logp), stats=stats)


@register_loss("ppo")
def ppo(inp: LossInputs, cfg) -> LossOutput:
    """PPO (Schulman et al. 2017): the clipped surrogate (Eq. 7) plus c1 times the value
    loss (Eq. 9), with the value update clipped to +-value_clip as in the reference
    implementation: 0.5 max((V - R)^2, (V_old + clip(V - V_old) - R)^2)."""
    if inp.values is None or inp.returns is None or inp.old_values is None:
        raise ValueError("ppo needs the critic's values, old values and returns")
    out = _clipped_surrogate(inp, cfg.clip_eps, cfg.clip_eps)
    err = (inp.values - inp.returns) ** 2
    if cfg.value_clip is not None:
        v_clipped = inp.old_values + torch.clamp(inp.values - inp.old_values, -cfg.value_clip, cfg.value_clip)
        clipped_err = (v_clipped - inp.returns) ** 2
        with torch.no_grad():
            out.stats["value_clip_frac"] = masked_mean((clipped_err > err).float(), inp.mask)
        err = torch.maximum(err, clipped_err)
    value_loss = 0.5 * err
    out.value = cfg.vf_coef * value_loss
    out.stats["value_loss"] = masked_mean(value_loss.detach(), inp.mask)
    return out
