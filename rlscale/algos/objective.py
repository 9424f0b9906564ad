"""One minibatch's objective, top to bottom:

    per-token policy loss        (losses.py, by algo.loss)
    x truncated IS weight        (off-policy correction against the engine's sampling)
    -> entropy control           (entropy.py, by algo.entropy_control)
    -> aggregate                 (primitives.aggregate, by algo.aggregation)
    + aggregated value loss      (PPO's critic)
    + kl_coef * aggregated k3 KL to the reference policy (GRPO Eq. 3-4)

Every term goes through the same aggregation, so switching token_mean for prompt_mean
changes how tokens are weighted everywhere, not only in the policy term.
"""

from __future__ import annotations

import torch

from .entropy import ENTROPY_CONTROLS
from .losses import POLICY_LOSSES, LossInputs
from .primitives import aggregate, kl_k3, masked_mean


def truncated_is_weight(old_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor,
                        level: str, cap: float) -> torch.Tensor:
    """TIS (Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy
    RL training", Eq. 3): min(pi_old / pi_behaviour, cap), detached. The engine samples
    with its own kernels (and, asynchronously, older weights), so its distribution is not
    quite pi_old; the weight corrects the gradient's expectation back to pi_old.
    level=sequence uses one weight per sequence: the product of its token ratios."""
    log_w = torch.where(mask.bool(), old_logp - behaviour_logp, torch.zeros_like(old_logp))
    if level == "sequence":
        log_w = log_w.sum(-1, keepdim=True).expand_as(old_logp)
    return torch.clamp(torch.exp(log_w), max=cap).detach()


def policy_objective(inp: LossInputs, algo, gen: torch.Generator,
                     denominator: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar to minimise and its named stats (detached). denominator: the whole
    minibatch's aggregation_denominator when `inp` is one rank's share of it."""
    out = POLICY_LOSSES[algo.loss.name](inp, algo.loss)
    stats = dict(out.stats)
    policy = out.policy
    off = algo.off_policy
    if off.is_level != "none":
        w = truncated_is_weight(inp.old_logp, inp.behaviour_logp, inp.mask, off.is_level, off.is_cap)
        policy = policy * w
        stats["is_weight_mean"] = masked_mean(w, inp.mask)
        stats["is_capped_frac"] = masked_mean((w >= off.is_cap).float(), inp.mask)
    policy, control_stats = ENTROPY_CONTROLS[algo.entropy_control.name](policy, inp, algo.entropy_control, gen)
    stats.update(control_stats)
    loss = aggregate(policy, inp.mask, algo.aggregation, inp.group_ids, denominator)
    stats["policy_loss"] = loss.detach()
    if out.value is not None:
        loss = loss + aggregate(out.value, inp.mask, algo.aggregation, inp.group_ids, denominator)
    if algo.kl_coef > 0:
        loss = loss + algo.kl_coef * aggregate(kl_k3(inp.logp, inp.ref_logp), inp.mask, algo.aggregation,
                                               inp.group_ids, denominator)
    stats["kl_old_new"] = masked_mean(kl_k3(inp.logp.detach(), inp.old_logp), inp.mask)
    return loss, stats
