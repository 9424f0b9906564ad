"""One RL step's metrics row (runlog.METRIC_FIELDS) and its logged samples."""

from __future__ import annotations

import time

import numpy as np

from . import compute
from .batch import RolloutBatch, UpdateResult
from .collect import Collected
from .compute import ModelShape
from .config import RunConfig
from .runlog import METRIC_FIELDS


def reward_by_env(rewards: list[float], env_names: list, default_name: str) -> dict[str, float]:
    """Mean reward per environment: per sub-environment for those that tag info["env"]
    (Mix), else one entry under the configured env id."""
    groups: dict[str, list[float]] = {}
    for r, name in zip(rewards, env_names):
        groups.setdefault(default_name if name is None else str(name), []).append(r)
    return {name: float(np.mean(rs)) for name, rs in sorted(groups.items())}


def step_row(cfg: RunConfig, shape: ModelShape, step: int, got: Collected, batch: RolloutBatch,
             update: UpdateResult, stale: int, totals: dict) -> tuple[dict, list[dict]]:
    """The step's metrics row (without timing and evaluation) and its logged samples.
    Compute follows what ran: every sampled episode (filtered out, dropped as stale,
    or trained) and every pass the learner reports."""
    sampled = [x for b in got.sampled for x in b.turn_lens]
    rollout_flops = compute.rollout_flops(shape, sampled)
    tokens_sampled = sum(sum(m) for b in got.sampled for m in b.loss_mask)
    totals["flops"] += rollout_flops + update.flops
    totals["tokens"] += tokens_sampled
    rewards = np.array(batch.rewards)
    lags = np.bincount([step - 1 - v for v in batch.policy_versions])
    row = {f: None for f in METRIC_FIELDS} | {
        "step": step, "policy_version": update.policy_version, "time": time.time(),
        "policy_lag_mean": update.policy_lag_mean, "policy_lag_max": update.policy_lag_max,
        "policy_lag_hist": {str(lag): int(n) for lag, n in enumerate(lags) if n},
        "stale_dropped": stale,
        "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()),
        "entropy": update.entropy,
        # Policy-sampled tokens per trained episode (multi-turn: env feedback excluded).
        "response_len_mean": float(np.mean([sum(m) for m in batch.loss_mask])),
        "truncated_frac": float(np.mean(batch.truncated)), "prompts_skipped": got.prompts_skipped,
        "turns_mean": float(np.mean(batch.turns)),
        "reward_by_env": reward_by_env(batch.rewards, batch.env_names, cfg.env.id),
        "kl_ref": update.kl_ref, "loss": update.loss, "grad_norm": update.grad_norm,
        "logprob_diff": update.logprob_diff,
        "tokens_sampled": tokens_sampled, "tokens_trained": update.tokens_trained,
        "rollout_flops": rollout_flops, "train_flops": update.flops,
        "step_flops": rollout_flops + update.flops, "cumulative_flops": totals["flops"],
        "cumulative_tokens_sampled": totals["tokens"],
        "rollout_s": got.rollout_s, "reward_s": got.reward_s, "learner_s": update.learner_s,
    } | update.algo_stats | got.filter_stats
    every = max(1, len(batch) // max(1, cfg.samples_per_step))
    samples = [{"prompt": batch.prompts[i], "completion": batch.completions[i], "reward": batch.rewards[i],
                "reason": batch.reasons[i], "advantage": update.advantages[i], "turns": batch.turns[i],
                "env": batch.env_names[i], "sample_policy_version": batch.policy_versions[i]}
               for i in range(0, len(batch), every)][: cfg.samples_per_step]
    return row, samples
