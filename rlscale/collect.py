"""Collecting one step's training batch from the rollout workers.

    draw prompts (skipping those too long for the engine, and retired ones)
    -> generate G episodes each across the workers -> scored RolloutBatch
    -> sample filtering (algo.filter): DAPO dynamic sampling refills dropped groups
       with fresh prompts, up to max_rounds extra rounds; no-positive-resampling
       retires prompts that the policy has mastered.

Everything that was sampled counts for compute (`sampled`), whether or not a filter
kept it for training (`batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .algos.filtering import PromptRetirement, informative_groups
from .batch import RolloutBatch
from .config import RunConfig
from .worker_pool import WorkerPool

MAX_REDRAWS = 20  # per prompt that does not fit the engine's context (or is retired)
CHUNKS_PER_WORKER = 4  # with several workers: small enough to balance, large enough for the engine's batching


class PromptsDoNotFitError(RuntimeError):
    """The environment's prompts are longer than the rollout engine's context."""


def draw_problems(env, n: int, seed: int, distinct: bool) -> list:
    """n problems from `env` via reset(seed=...). distinct=True dedups by prompt (for a
    fixed validation set), bounded so a tiny problem space cannot loop forever."""
    problems, seen = [], set()
    for i in range(n * 20 if distinct else n):
        env.reset(seed=seed + i)
        p = env.unwrapped.problem
        if distinct and p.prompt in seen:
            continue
        seen.add(p.prompt)
        problems.append(p)
        if len(problems) == n:
            return problems
    raise ValueError(f"environment yielded only {len(problems)} distinct problems; lower eval.n_problems")


def split_evenly(items: list, parts: int) -> list[list]:
    k = -(-len(items) // parts)
    return [items[i:i + k] for i in range(0, len(items), k)]


@dataclass
class Collected:
    batch: RolloutBatch  # what the learner trains on
    sampled: list[RolloutBatch]  # every round that was generated (compute, tokens)
    prompts_skipped: int  # drawn prompts too long for the engine
    rollout_s: float
    reward_s: float
    filter_stats: dict[str, float] = field(default_factory=dict)


class Collector:
    def __init__(self, cfg: RunConfig, pool: WorkerPool, tokenizer):
        """pool: the rollout workers (a dead one is restored and its share re-run there);
        tokenizer: the policy's own (the files the engines load), so prompts are
        tokenised once, here, and the engines get token ids."""
        self.cfg, self.pool, self.tok = cfg, pool, tokenizer
        f = cfg.algo.filter
        self.retirement = PromptRetirement(f.threshold) if f.name == "no_positive_resampling" else None
        self.mean_answer_tokens = float(cfg.rollout.max_tokens)  # until the first batch says

    def prompt_ids(self, problems: list) -> list[list[int]]:
        return self.tok([p.prompt for p in problems]).input_ids

    def fits(self, prompt_ids: list[list[int]]) -> list[bool]:
        """Whether each prompt leaves the engine room for at least one answer token. One
        over-long prompt would make vLLM reject the whole batch, so such problems are
        skipped (and counted) rather than sent."""
        return [0 < len(ids) < self.cfg.rollout.max_model_len for ids in prompt_ids]

    def too_long_hint(self) -> str:
        return (f"the environment's prompts do not fit rollout.max_model_len={self.cfg.rollout.max_model_len} "
                "tokens: raise rollout.max_model_len (up to the model's context), use a model with a longer "
                "context, or pick shorter tasks in env.kwargs")

    def draw_train(self, env, seeds) -> tuple[list, list[list[int]], int, int, list[int]]:
        """One problem per seed; a problem whose prompt does not fit, or that is retired,
        is replaced by a fresh draw. Returns the problems, their prompt token ids, how
        many were too long, how many were retired, and the seed each problem was drawn
        with (the rollout seeds its sampling from it)."""
        seeds = [int(s) for s in seeds]
        problems = [draw_problems(env, 1, s, distinct=False)[0] for s in seeds]
        ids = self.prompt_ids(problems)
        too_long = retired = 0
        for redraw in range(1, MAX_REDRAWS + 1):
            fit = self.fits(ids)
            old = [self.retirement is not None and self.retirement.is_retired(p.prompt) for p in problems]
            bad = [i for i in range(len(problems)) if not fit[i] or old[i]]
            if not bad:
                return problems, ids, too_long, retired, seeds
            too_long += sum(not fit[i] for i in bad)
            retired += sum(fit[i] and old[i] for i in bad)
            for i in bad:
                seeds[i] = (seeds[i] + 1_000_003) % 2**31
                problems[i] = draw_problems(env, 1, seeds[i], distinct=False)[0]
                ids[i] = self.prompt_ids([problems[i]])[0]
        if retired and not too_long:
            raise RuntimeError(f"{MAX_REDRAWS} redraws in a row hit retired prompts: the environment has run out "
                               "of unmastered prompts; raise algo.filter.threshold or use a larger task space")
        raise PromptsDoNotFitError(f"{MAX_REDRAWS} redraws in a row were too long: {self.too_long_hint()}")

    def generate(self, problems: list, prompt_ids: list[list[int]], seeds: list[int]) -> RolloutBatch:
        """Each problem's G samples, seeded by the seed it was drawn with: the same draw gives
        the same samples on any engine, in any batch (what exact resume needs), so the
        batch does not depend on which worker ran what. One worker gets the whole batch in
        one call; several get CHUNKS_PER_WORKER chunks each on average, each chunk sent to
        the worker with the fewest outstanding tokens (worker_pool.LeastOutstandingTokens)."""
        G, n = self.cfg.rollout.group_size, len(self.pool)
        k = 1 if n == 1 else min(len(problems), n * CHUNKS_PER_WORKER)
        chunks = [(c, G, ids, sd) for c, ids, sd in zip(split_evenly(problems, k), split_evenly(prompt_ids, k),
                                                        split_evenly(seeds, k))]
        # A chunk's tokens: G answers per prompt, each its prompt plus the answers' mean length so far.
        tokens = [G * sum(len(p) + self.mean_answer_tokens for p in ids) for _, _, ids, _ in chunks]
        parts, ran_on = self.pool.map_balanced("generate", chunks, tokens)
        batch = RolloutBatch.concat(parts)
        # Workers run in parallel, each its chunks one after another: the round took the busiest's time.
        for name in ("rollout_s", "reward_s"):
            per_worker = np.zeros(n)
            np.add.at(per_worker, ran_on, [getattr(p, name) for p in parts])
            setattr(batch, name, float(per_worker.max()))
        self.mean_answer_tokens = float(np.mean([sum(m) for m in batch.loss_mask])) if len(batch) else 0.0
        return batch

    def collect(self, env, rng: np.random.Generator) -> Collected:
        P, G = self.cfg.rollout.prompts_per_step, self.cfg.rollout.group_size
        f = self.cfg.algo.filter
        rounds = 1 + (f.max_rounds if f.name == "dynamic_sampling" else 0)
        kept: list[RolloutBatch] = []
        sampled: list[RolloutBatch] = []
        skipped = retired_redraws = dropped = 0
        for _ in range(rounds):
            need = P - sum(len(b) for b in kept) // G
            if need == 0:
                break
            problems, ids, too_long, retired, seeds = self.draw_train(env, rng.integers(0, 2**31 - 1, need))
            skipped, retired_redraws = skipped + too_long, retired_redraws + retired
            batch = self.generate(problems, ids, seeds)
            sampled.append(batch)
            rewards = np.array(batch.rewards).reshape(-1, G)
            if self.retirement is not None:
                self.retirement.update([p.prompt for p in problems], rewards)
            if f.name == "dynamic_sampling":
                ok = np.flatnonzero(informative_groups(rewards))
                dropped += len(rewards) - len(ok)
                batch = batch.select([g * G + j for g in ok for j in range(G)])
            kept.append(batch)
        batch = RolloutBatch.concat(kept)
        stats: dict[str, float] = {}
        if f.name == "dynamic_sampling":
            short = P - len(batch) // G
            if len(batch) == 0:
                # Not one informative group in max_rounds + 1 rounds: train on the last round
                # as drawn (zero advantages; the step still counts), rather than stall.
                batch = sampled[-1]
            stats = {"ds_rounds": len(sampled), "ds_groups_dropped": dropped, "ds_groups_short": short}
        elif self.retirement is not None:
            stats = {"prompts_retired": len(self.retirement.retired), "retired_redraws": retired_redraws}
        return Collected(batch, sampled, skipped, rollout_s=sum(b.rollout_s for b in sampled),
                         reward_s=sum(b.reward_s for b in sampled), filter_stats=stats)
