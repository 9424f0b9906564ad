"""Typed experiment config: YAML file + dotted overrides -> validated pydantic model.

Every error names the offending field and is raised before any actor starts or any
file is written, so a typo never costs a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .algos.settings import (
    VARIANT_FIELDS, AdvantageConfig, AggregationConfig, EntropyControlConfig, FilterConfig, GroupNormAdvantage,
    GRPOLoss, LossConfig, NoEntropyControl, NoFilter, OffPolicyConfig, TokenMean, check_combination,
    fill_loss_defaults,
)
from .config_errors import describe, env_kwarg_hint, inherited_kwargs_hint


class ConfigError(ValueError):
    """A config problem, worded for the person who wrote the config."""


# Marks a field that changes how a run is executed or recorded, not what it measures: runs
# whose configs differ only in such fields are seeds (or longer/shorter runs) of one
# setting. The run writes the list (non_experiment_keys) into run.json, and the analysis
# groups runs by the remaining fields.
NOT_EXPERIMENT = {"experiment": False}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    path: str | None = Field(None, description="HF causal-LM checkpoint (dir or hub id); null = zoo")
    zoo_size: Literal["xs", "s", "m", "l"] = "xs"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class PretrainConfig(_Strict):
    """Pre-training of a zoo base model on the arithmetic corpus, optionally mixed with source text
    (used when model.path is null)."""

    steps: int = Field(600, gt=0)
    batch_size: int = Field(32, gt=0)
    seq_len: int = Field(128, ge=32, le=256)
    lr: float = Field(3e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    min_difficulty: int = Field(1, ge=1, le=6)
    max_difficulty: int = Field(3, ge=1, le=6)
    max_operand: int | None = Field(None, ge=1, description="cap on operands (9 = single digits); null = default")
    answer_noise: float = Field(0.25, ge=0, lt=1, description="fraction of sloppy worked solutions")
    text_fraction: float = Field(0.0, ge=0, lt=1, description=(
        "share of the training characters (= tokens) that are passages of the Python standard library's "
        "source (rlscale/text_corpus.py); 0 = arithmetic only"))
    seed: int = 0
    eval_problems: int = Field(200, gt=0)
    cache_dir: str = Field("~/.cache/rlscale", json_schema_extra=NOT_EXPERIMENT)

    @model_validator(mode="after")
    def _difficulty_range(self):
        if self.min_difficulty > self.max_difficulty:
            raise ValueError(f"pretrain.min_difficulty must be <= max_difficulty (got {self.min_difficulty} > "
                             f"{self.max_difficulty})")
        return self


class EnvConfig(_Strict):
    id: str = Field("rlscale/Arith-v0", description="a registered gymnasium id, e.g. rlscale/Mix-v0")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="the environment's constructor arguments")


def check_env(env: EnvConfig) -> None:
    """Build the configured environment once per split and close it again, so an unknown
    id or bad kwargs stops the run here, before any actor starts or file is written,
    in the environment's own words (which name the bad argument)."""
    from rlscale_envs import SPLITS, UnknownEnvError, make_text_env

    if "split" in env.kwargs:
        raise ConfigError("invalid config:\n  env.kwargs.split: the trainer sets the split itself (train for "
                          "rollouts, val for evaluation); remove it")
    for split in SPLITS:
        try:
            built = make_text_env(env.id, env.kwargs, split)
        except UnknownEnvError as e:
            raise ConfigError(f"invalid config:\n  env.id: {e}") from None
        except Exception as e:  # constructor errors vary: TypeError, ValueError, DatasetError ...
            raise ConfigError(f"invalid config:\n  env.kwargs: {env.id} (split {split!r}) rejected its "
                              f"arguments: {type(e).__name__}: {e}{env_kwarg_hint(env)}") from None
        built.close()


def check_val_problems(cfg: "RunConfig") -> None:
    """The validation split must hold max(eval.n_problems, eval.final_n_problems) distinct
    problems: preflight.check_val_problems draws them as the run will, in seconds."""
    from .preflight import check_val_problems as check  # imports this module, hence here

    check(cfg)


class RolloutConfig(_Strict):
    mode: Literal["sync", "async"] = Field(
        "sync", description="sync: sample, then learn, in turn; async: workers keep sampling while the learner "
                            "trains, at most algo.max_staleness policy versions behind")
    num_workers: int = Field(1, ge=1, description="vLLM engines, one Ray actor each; a step's prompts go to them "
                                                  "by fewest outstanding tokens (worker_pool.py)")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per engine (vLLM tensor parallelism); GPU hosts "
                                                           "only")
    prompts_per_step: int = Field(32, gt=0)
    group_size: int = Field(8, ge=2, description="G completions per prompt (GRPO needs >= 2)")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(96, gt=0, description="tokens per answer (per turn in multi-turn episodes)")
    max_episode_tokens: int | None = Field(
        None, gt=0, description="multi-turn: cap on an episode's answer + feedback tokens over all turns; "
                                "null = only max_model_len limits it")
    max_model_len: int = Field(256, ge=64)
    kv_cache_gib: float = Field(1.0, gt=0, description="CPU only: VLLM_CPU_KVCACHE_SPACE")
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="CUDA only")
    stale_tolerance: float = Field(0.05, gt=0, description="max engine-vs-learner probe logprob gap")
    weight_transfer: Literal["object_store", "shared_file"] = Field(
        "object_store", description="learner -> engines: through Ray (any hosts), or one file the engines read "
                                    "(weight_transfer.py)")
    weight_dir: str | None = Field(None, description="shared_file: where (null = /dev/shm: learner and engines "
                                                     "on one host; or a shared filesystem's directory)")


class AlgoConfig(_Strict):
    """The recipe: every axis is a variant chosen by name (rlscale/algos/settings.py)."""

    loss: LossConfig = Field(default_factory=GRPOLoss, description="grpo | dapo | dr_grpo | cispo | gspo | ppo")
    advantage: AdvantageConfig = Field(default_factory=GroupNormAdvantage,
                                       description="group_norm | group_mean | rloo | reinforce_pp | gae; "
                                                   "unset = the loss's own")
    aggregation: AggregationConfig = Field(default_factory=TokenMean,
                                           description="token_mean | seq_mean_token_mean | seq_mean_token_sum_norm "
                                                       "| prompt_mean; unset = the loss's own")
    filter: FilterConfig = Field(default_factory=NoFilter,
                                 description="none | dynamic_sampling | no_positive_resampling")
    entropy_control: EntropyControlConfig = Field(default_factory=NoEntropyControl,
                                                  description="none | entropy_bonus | clip_cov | kl_cov | "
                                                              "high_entropy_only")
    off_policy: OffPolicyConfig = Field(default_factory=OffPolicyConfig)
    fp32_lm_head: bool = Field(False, description="learner computes the LM head and logprobs in fp32 (ScaleRL)")
    kl_coef: float = Field(0.0, ge=0, description="k3 KL to the frozen base policy; 0 = off")
    log_kl_ref: bool = Field(False, description="log kl_ref even with kl_coef=0 (builds the reference model)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float = Field(1.0, gt=0)
    minibatches: int = Field(1, ge=1)
    epochs: int = Field(1, ge=1)
    max_staleness: int | None = Field(
        None, ge=0, description="async: a sample from policy version v is trained at learner version v+k at most; "
                                "older ones are dropped. null = 0 in sync mode, 1 in async mode")

    @model_validator(mode="before")
    @classmethod
    def _fill_loss_defaults(cls, data: Any) -> Any:
        return fill_loss_defaults(data)

    @model_validator(mode="after")
    def _combination(self):
        errors = check_combination(self)
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def needs_reference(self) -> bool:
        """The frozen base policy is built only when something uses it."""
        return self.kl_coef > 0 or self.log_kl_ref


class EvalConfig(_Strict):
    every: int = Field(10, gt=0, description="evaluate every N steps (and at the end)")
    at_start: bool = Field(True, json_schema_extra=NOT_EXPERIMENT,
                           description="evaluate the base policy as step 0 (the scaling fits' anchor R0; "
                                       "without it they fit R0 freely)")
    n_problems: int = Field(200, gt=0, description="validation problems of every evaluation (the curve)")
    final_n_problems: int | None = Field(
        None, gt=0, json_schema_extra=NOT_EXPERIMENT,
        description="problems of the run's final evaluation: a superset of the n_problems (which stay the "
                    "curve's), for a precise final value (SE 0.01 takes ~2500 at p=0.5); null = n_problems")
    k: int = Field(4, ge=1, description="samples per problem for mean@k and pass@k")
    temperature: float = Field(1.0, gt=0)
    seed: int = 1234

    @model_validator(mode="after")
    def _final_superset(self):
        if self.final_n_problems is not None and self.final_n_problems < self.n_problems:
            raise ValueError(f"eval.final_n_problems={self.final_n_problems} must be >= eval.n_problems="
                             f"{self.n_problems}: the final evaluation's problems include every evaluation's; "
                             "raise it, or set it to null for a final evaluation like the others")
        return self


class RayConfig(_Strict):
    address: str | None = Field(None, description="null = start a local Ray; 'auto' or ray://... to connect")
    num_cpus: int | None = Field(None, gt=0)
    use_gpu: Literal["auto", "yes", "no"] = "auto"
    worker_max_restarts: int = Field(3, ge=0, description="restarts of each rollout worker (worker_pool.py)")
    learner_max_restarts: int = Field(1, ge=0, description="learner restarts, each from the last checkpoint")


class LearnerConfig(_Strict):
    """How the learner is placed (learner_group.py); the update it computes is the same."""

    num_workers: int = Field(1, ge=1, description="learner ranks (torch.distributed: gloo on CPU, NCCL on GPU)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="ddp: replicated; fsdp: FSDP2 fully_shard")


class CheckpointConfig(_Strict):
    """Checkpoints under <run_dir>/checkpoints/step-NNNNNN (rlscale/checkpoint.py); one is
    always written at the end of a run, and its policy/ is the run's final policy."""

    every: int | None = Field(None, gt=0, description="also write one every N steps; null = only at the end")
    keep: int = Field(2, ge=1, description="complete checkpoints kept (the newest); older ones are pruned")


class LoggingConfig(_Strict):
    """Copies of each metrics.jsonl row for watching a run (rlscale/metric_writers.py,
    docs/logging.md); metrics.jsonl is written either way and stays the run's record."""

    tensorboard: bool = Field(False, description="also write scalars to <run_dir>/tensorboard/ "
                                                 "(needs: pip install tensorboard)")
    wandb: bool = Field(False, description="also write a W&B offline run to <run_dir>/wandb/, uploaded later with "
                                           "`wandb sync` (needs: pip install wandb)")
    wandb_project: str = Field("rlscale", min_length=1, description="the W&B project the run is synced to")


class RunConfig(_Strict):
    name: str = Field("run", json_schema_extra=NOT_EXPERIMENT)
    seed: int = Field(0, json_schema_extra=NOT_EXPERIMENT)
    run_dir: str | None = Field(None, json_schema_extra=NOT_EXPERIMENT)
    # A longer run of the same setting covers more of the same curve.
    steps: int = Field(50, gt=0, json_schema_extra=NOT_EXPERIMENT)
    samples_per_step: int = Field(4, ge=0, json_schema_extra=NOT_EXPERIMENT,
                                  description="examples written to samples.jsonl per step")
    progress: bool = Field(True, json_schema_extra=NOT_EXPERIMENT)
    sweep_setting: str | None = Field(None, json_schema_extra=NOT_EXPERIMENT,
                                      description="set by `rlscale sweep`: the run's setting, e.g. algo.lr=0.0003 "
                                                  "(the analysis labels the setting with it)")
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ray: RayConfig = Field(default_factory=RayConfig, json_schema_extra=NOT_EXPERIMENT)  # where, not what
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, json_schema_extra=NOT_EXPERIMENT)
    learner: LearnerConfig = Field(default_factory=LearnerConfig, json_schema_extra=NOT_EXPERIMENT)
    logging: LoggingConfig = Field(default_factory=LoggingConfig, json_schema_extra=NOT_EXPERIMENT)  # how it is watched

    @model_validator(mode="after")
    def _cross_field(self):
        if self.rollout.tensor_parallel_size > 1 and self.ray.use_gpu == "no":
            raise ValueError(f"rollout.tensor_parallel_size={self.rollout.tensor_parallel_size} splits an engine over "
                             "GPUs, and ray.use_gpu=no: set rollout.tensor_parallel_size=1 on CPU")
        k = self.algo.max_staleness
        if self.rollout.mode == "sync" and k:
            raise ValueError(f"algo.max_staleness={k} needs rollout.mode=async: in sync mode every batch is "
                             "trained by the policy that sampled it; set rollout.mode=async or drop the key")
        if k is None:
            self.algo.max_staleness = 1 if self.rollout.mode == "async" else 0
        if self.rollout.prompts_per_step % self.algo.minibatches:
            # Minibatches hold whole prompt groups (prompt-level aggregation, group statistics).
            raise ValueError(
                f"algo.minibatches={self.algo.minibatches} must divide rollout.prompts_per_step="
                f"{self.rollout.prompts_per_step}: minibatches hold whole prompt groups")
        if self.algo.filter.name == "dynamic_sampling" and self.rollout.prompts_per_step < 2 * self.algo.minibatches:
            raise ValueError(
                f"algo.filter=dynamic_sampling with rollout.prompts_per_step={self.rollout.prompts_per_step} and "
                f"algo.minibatches={self.algo.minibatches}: a batch of one group per minibatch cannot be refilled "
                "meaningfully (one dropped group empties a minibatch); raise rollout.prompts_per_step to at least "
                f"{2 * self.algo.minibatches} or lower algo.minibatches")
        agg = self.algo.aggregation
        if agg.name == "seq_mean_token_sum_norm" and agg.length is None:
            # Dr.GRPO's constant: the most policy tokens an episode can hold.
            agg.length = self.rollout.max_episode_tokens or self.rollout.max_tokens
        if self.rollout.max_tokens >= self.rollout.max_model_len:
            raise ValueError(f"rollout.max_tokens must be < rollout.max_model_len (prompt needs room; got "
                             f"{self.rollout.max_tokens} >= {self.rollout.max_model_len})")
        self._check_learner_group()
        episode = self.rollout.max_episode_tokens
        if episode is not None and not self.rollout.max_tokens <= episode < self.rollout.max_model_len:
            raise ValueError(f"rollout.max_episode_tokens={episode} must be >= rollout.max_tokens="
                             f"{self.rollout.max_tokens} (the first answer's cap) and < rollout.max_model_len="
                             f"{self.rollout.max_model_len} (the prompt needs room)")
        return self

    def _check_learner_group(self) -> None:
        """What a learner sharded over ranks does not support (learner_rank.py)."""
        n, algo = self.learner.num_workers, self.algo
        if n == 1:
            return
        if algo.entropy_control.name in ("clip_cov", "kl_cov", "high_entropy_only"):
            raise ValueError(f"learner.num_workers={n} with algo.entropy_control={algo.entropy_control.name}: its "
                             "token selection ranks the whole minibatch, which no rank holds; use "
                             "learner.num_workers=1 or another entropy control")
        if self.learner.strategy == "fsdp" and (algo.fp32_lm_head or algo.loss.name == "ppo"):
            raise ValueError(f"learner.strategy=fsdp with {'algo.fp32_lm_head' if algo.fp32_lm_head else 'algo.loss=ppo'}"
                             ": these compute the LM head outside the sharded model; use learner.strategy=ddp")
        groups = self.rollout.prompts_per_step // algo.minibatches
        if groups < n:
            raise ValueError(f"learner.num_workers={n} needs at least {n} prompt groups per minibatch: "
                             f"rollout.prompts_per_step={self.rollout.prompts_per_step} / algo.minibatches="
                             f"{algo.minibatches} gives {groups}; raise prompts_per_step or lower minibatches")


def _variant_names_as_mappings(merged: DictConfig) -> None:
    """`algo.loss: cispo` -> `algo.loss: {name: cispo}`, so that a later dotted override
    (`algo.loss.eps_max=5`) has a mapping to edit, and a new name replaces the old
    variant's settings instead of merging into them."""
    algo = merged.get("algo")
    if isinstance(algo, DictConfig):
        for name in VARIANT_FIELDS:
            if isinstance(algo.get(name), str):
                algo[name] = {"name": algo[name]}


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                updates: list[tuple[str, Any]] | None = None) -> RunConfig:
    """Read YAML, apply `updates` ((dotted key, value) pairs, e.g. a sweep's settings, as
    parsed values), then `a.b=c` overrides, validate. Raises ConfigError naming each bad field."""
    base: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found; pass a YAML file such as configs/quickstart.yaml")
        try:
            base = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(base, dict):
            raise ConfigError(f"config file {p} must hold a mapping at the top level")
    for item in overrides or []:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like dotted.key=value, e.g. rollout.group_size=8")
    try:
        merged = OmegaConf.create(base)
        _variant_names_as_mappings(merged)
        pairs = list(updates or [])
        for item in overrides or []:
            key = item.split("=", 1)[0].strip()
            pairs.append((key, OmegaConf.select(OmegaConf.from_dotlist([item]), key)))
        for key, value in pairs:
            is_mapping = isinstance(value, (dict, DictConfig))
            # A mapping replaces the mapping it names (env.kwargs={path: x} must not keep the
            # old env's kwargs); a dotted key changes one entry (env.kwargs.path=x).
            OmegaConf.update(merged, key, value, merge=not is_mapping, force_add=True)
            _variant_names_as_mappings(merged)
        data = OmegaConf.to_container(merged, resolve=True)
    except Exception as e:  # OmegaConf grammar or interpolation errors
        raise ConfigError(f"could not parse config/overrides: {e}") from None
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, RunConfig)) from None
    try:
        check_env(cfg.env)
    except ConfigError as e:
        raise ConfigError(f"{e}{inherited_kwargs_hint(base, pairs, cfg.env, path)}") from None
    check_val_problems(cfg)
    return cfg


def non_experiment_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """The dotted keys marked NOT_EXPERIMENT, walking nested config sections (a marked
    section, like `ray`, stands for every key under it)."""
    keys = []
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("experiment") is False:
            keys.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += non_experiment_keys(field.annotation, f"{prefix}{name}.")
    return keys


def to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
