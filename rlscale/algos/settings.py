"""Typed settings of every recipe axis: one pydantic model per variant, selected by `name`.

Each axis is a discriminated union, so a variant carries only its own settings
(`algo.loss.clip_high` exists for dapo, and is an unknown key for cispo), and a bare
name (`algo.loss: cispo`) means that variant with its defaults. Pure pydantic: the
config check imports this before torch, Ray or vLLM.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---- policy losses (losses.py) -------------------------------------------------------

class GRPOLoss(_Variant):
    """PPO-clipped surrogate with group advantages (Shao et al. 2024, DeepSeekMath Eq. 3)."""
    name: Literal["grpo"] = "grpo"
    clip_eps: float = Field(0.2, gt=0, lt=1)


class DAPOLoss(_Variant):
    """Asymmetric clip-higher (Yu et al. 2025, DAPO Eq. 10): ratio in [1 - clip_low, 1 + clip_high]."""
    name: Literal["dapo"] = "dapo"
    clip_low: float = Field(0.2, gt=0, lt=1)
    clip_high: float = Field(0.28, gt=0)


class DrGRPOLoss(_Variant):
    """GRPO done right (Liu et al. 2025): no std in the advantage, a constant length normaliser."""
    name: Literal["dr_grpo"] = "dr_grpo"
    clip_eps: float = Field(0.2, gt=0, lt=1)


class CISPOLoss(_Variant):
    """Clipped IS-weight policy optimisation (MiniMax-M1 2025, Eq. 4; ScaleRL's loss): the
    IS weight is truncated at eps_max and stop-gradiented, so every token keeps a gradient."""
    name: Literal["cispo"] = "cispo"
    eps_max: float = Field(4.0, gt=1, description="upper truncation of the IS weight (ScaleRL's epsilon_max)")


class GSPOLoss(_Variant):
    """Sequence-level, length-normalised ratio and clip (Zheng et al. 2025, GSPO Eq. 5-7)."""
    name: Literal["gspo"] = "gspo"
    clip_low: float = Field(3e-4, gt=0, lt=1)
    clip_high: float = Field(4e-4, gt=0)


class PPOLoss(_Variant):
    """PPO with a learned value head (Schulman et al. 2017, Eq. 7 and Eq. 9)."""
    name: Literal["ppo"] = "ppo"
    clip_eps: float = Field(0.2, gt=0, lt=1)
    vf_coef: float = Field(0.1, gt=0, description="weight of the value loss (c1 in PPO Eq. 9)")
    value_clip: float | None = Field(0.2, gt=0, description="clip the value update to +-value_clip; null = off")


LossConfig = Annotated[Union[GRPOLoss, DAPOLoss, DrGRPOLoss, CISPOLoss, GSPOLoss, PPOLoss],
                       Field(discriminator="name")]

# ---- advantage estimators (advantages.py) -------------------------------------------

class GroupNormAdvantage(_Variant):
    """GRPO: (r - group mean) / std. std_level=batch divides by the std over the whole batch
    instead of the group's (ScaleRL's batch-level normalisation)."""
    name: Literal["group_norm"] = "group_norm"
    std_level: Literal["group", "batch"] = "group"


class GroupMeanAdvantage(_Variant):
    """Dr.GRPO: r - group mean, no std normalisation."""
    name: Literal["group_mean"] = "group_mean"


class RLOOAdvantage(_Variant):
    """RLOO: r_i minus the mean of the other G-1 rewards (Ahmadian et al. 2024, Eq. 4)."""
    name: Literal["rloo"] = "rloo"


class ReinforcePPAdvantage(_Variant):
    """REINFORCE++: global batch normalisation of token advantages (Hu 2025, Eq. 7);
    baseline=group subtracts the group mean first (REINFORCE++-baseline)."""
    name: Literal["reinforce_pp"] = "reinforce_pp"
    baseline: Literal["none", "group"] = "none"


class GAEAdvantage(_Variant):
    """GAE over the critic's values (Schulman et al. 2016, Eq. 16); needs algo.loss=ppo."""
    name: Literal["gae"] = "gae"
    gamma: float = Field(1.0, gt=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    whiten: bool = Field(True, description="normalise advantages over the batch's tokens")


AdvantageConfig = Annotated[Union[GroupNormAdvantage, GroupMeanAdvantage, RLOOAdvantage, ReinforcePPAdvantage,
                                  GAEAdvantage], Field(discriminator="name")]

# ---- loss aggregation (primitives.aggregate) ----------------------------------------

class TokenMean(_Variant):
    """Every token of the batch weighs the same (DAPO Eq. 12)."""
    name: Literal["token_mean"] = "token_mean"


class SeqMeanTokenMean(_Variant):
    """Mean over sequences of each sequence's token mean (GRPO as published)."""
    name: Literal["seq_mean_token_mean"] = "seq_mean_token_mean"


class SeqMeanTokenSumNorm(_Variant):
    """Mean over sequences of token sums divided by one constant (Dr.GRPO)."""
    name: Literal["seq_mean_token_sum_norm"] = "seq_mean_token_sum_norm"
    length: int | None = Field(None, gt=0, description="the constant; null = the rollout's token budget")


class PromptMean(_Variant):
    """Mean over prompts of the token mean over all G answers to the prompt (ScaleRL)."""
    name: Literal["prompt_mean"] = "prompt_mean"


AggregationConfig = Annotated[Union[TokenMean, SeqMeanTokenMean, SeqMeanTokenSumNorm, PromptMean],
                              Field(discriminator="name")]

# ---- sample filtering (filtering.py, applied by the orchestrator) -------------------

class NoFilter(_Variant):
    name: Literal["none"] = "none"


class DynamicSampling(_Variant):
    """DAPO dynamic sampling (Yu et al. 2025, Eq. 11): drop groups whose rewards are all
    equal (zero advantage) and sample fresh prompts until the batch is full again."""
    name: Literal["dynamic_sampling"] = "dynamic_sampling"
    max_rounds: int = Field(4, ge=1, description="extra generation rounds before training on a short batch")


class NoPositiveResampling(_Variant):
    """ScaleRL: retire a prompt for good once its pass rate in a step reaches threshold."""
    name: Literal["no_positive_resampling"] = "no_positive_resampling"
    threshold: float = Field(0.9, gt=0, le=1)


FilterConfig = Annotated[Union[NoFilter, DynamicSampling, NoPositiveResampling], Field(discriminator="name")]

# ---- entropy control (entropy.py; Cui et al. 2025 unless noted) ---------------------

class NoEntropyControl(_Variant):
    name: Literal["none"] = "none"


class EntropyBonus(_Variant):
    """Subtract coef * token entropy from the loss (Williams & Peng 1991; Cui et al. 2025 Sec. 4)."""
    name: Literal["entropy_bonus"] = "entropy_bonus"
    coef: float = Field(1e-3, gt=0)


class ClipCov(_Variant):
    """Clip-Cov (Cui et al. 2025, Eq. 11): detach the gradient of a random share `ratio` of
    tokens whose centred logp-advantage covariance lies in [low, high]. Paper defaults."""
    name: Literal["clip_cov"] = "clip_cov"
    ratio: float = Field(2e-4, gt=0, le=1)
    low: float = 1.0
    high: float = 5.0


class KLCov(_Variant):
    """KL-Cov (Cui et al. 2025, Eq. 12): a KL penalty coef * |logp - old_logp| on the top
    `ratio` share of tokens by covariance. Paper defaults (k = 2e-3, beta = 1, for 7B)."""
    name: Literal["kl_cov"] = "kl_cov"
    ratio: float = Field(2e-3, gt=0, le=1)
    coef: float = Field(1.0, gt=0)


class HighEntropyOnly(_Variant):
    """Policy gradient only on the top_frac highest-entropy ("forking") tokens of the batch
    (Wang et al. 2025, "Beyond the 80/20 Rule", Eq. 5, rho = 0.2)."""
    name: Literal["high_entropy_only"] = "high_entropy_only"
    top_frac: float = Field(0.2, gt=0, le=1)


EntropyControlConfig = Annotated[Union[NoEntropyControl, EntropyBonus, ClipCov, KLCov, HighEntropyOnly],
                                 Field(discriminator="name")]


class OffPolicyConfig(_Variant):
    """Correction against the engine's sampling (behaviour) logprobs.

    is_level: truncated importance sampling (TIS; Yao et al. 2025) multiplies each token's
    loss by min(pi_old / pi_behaviour, is_cap), per token or with one product per sequence.
    old_logp: `learner` recomputes pi_old with the learner's weights before the update;
    `behaviour` uses the engine's sampling logprobs as pi_old (decoupled objective of the
    asynchronous setting), which leaves nothing for TIS to correct."""
    is_level: Literal["none", "token", "sequence"] = "none"
    is_cap: float = Field(2.0, gt=0)
    old_logp: Literal["learner", "behaviour"] = "learner"


# Which settings a bare loss name brings along when the config leaves the axis unset: the
# paper's own recipe. An explicit algo.advantage / algo.aggregation always wins.
LOSS_DEFAULTS: dict[str, dict[str, str]] = {
    "grpo": {"advantage": "group_norm", "aggregation": "token_mean"},
    "dapo": {"advantage": "group_norm", "aggregation": "token_mean"},
    "dr_grpo": {"advantage": "group_mean", "aggregation": "seq_mean_token_sum_norm"},
    "cispo": {"advantage": "group_norm", "aggregation": "token_mean"},
    "gspo": {"advantage": "group_norm", "aggregation": "seq_mean_token_mean"},
    "ppo": {"advantage": "gae", "aggregation": "token_mean"},
}

# Config paths whose value is a variant: a bare string there means {name: string}.
VARIANT_FIELDS = ("loss", "advantage", "aggregation", "filter", "entropy_control")


def as_variant(value: Any) -> Any:
    """`cispo` -> {"name": "cispo"}; mappings and models pass through."""
    return {"name": value} if isinstance(value, str) else value


def fill_loss_defaults(algo: Any) -> Any:
    """Before validation: bare names become variants, and an unset advantage or
    aggregation takes the loss's default (LOSS_DEFAULTS), so the resolved config
    written to the run directory names every axis explicitly."""
    if not isinstance(algo, dict):
        return algo
    algo = {k: as_variant(v) if k in VARIANT_FIELDS else v for k, v in algo.items()}
    loss = algo.get("loss") or {"name": "grpo"}
    name = loss.get("name", "grpo") if isinstance(loss, dict) else getattr(loss, "name", "grpo")
    for axis, default in LOSS_DEFAULTS.get(name, {}).items():
        if algo.get(axis) is None:
            algo[axis] = {"name": default}
        elif isinstance(algo[axis], dict) and "name" not in algo[axis]:
            # a dotted setting on an unnamed axis (algo.advantage.std_level=batch) edits the loss's default
            algo[axis] = {"name": default, **algo[axis]}
    return algo


def check_combination(algo) -> list[str]:
    """Combinations that cannot work, each as 'field: reason and fix'."""
    loss, adv = algo.loss.name, algo.advantage.name
    errors = []
    if adv == "gae" and loss != "ppo":
        errors.append(f"algo.advantage: gae needs a critic, which only algo.loss=ppo trains (got algo.loss={loss}); "
                      "use algo.loss=ppo or an outcome estimator (group_norm, group_mean, rloo, reinforce_pp)")
    if loss == "ppo" and adv != "gae":
        errors.append(f"algo.loss: ppo trains a value head that only algo.advantage=gae uses (got "
                      f"algo.advantage={adv}); set algo.advantage=gae, or pick a critic-free loss")
    if loss == "gspo" and adv == "gae":
        errors.append("algo.advantage: gspo clips a sequence-level ratio and needs one advantage per sequence; "
                      "gae gives one per token")
    off = algo.off_policy
    if off.is_level != "none" and off.old_logp == "behaviour":
        errors.append("algo.off_policy.is_level: with old_logp=behaviour, pi_old is the behaviour policy and the "
                      "TIS weight is 1; set is_level=none or old_logp=learner")
    return errors
