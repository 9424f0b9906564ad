"""The orchestrator: places the actors and runs the RL loop.

    for each step:
        collect a scored batch (collect.py: draw prompts, roll out G episodes each with
        vLLM, score with the env, apply the recipe's sample filter)
        -> learner update (advantages, objective: rlscale/algos) -> sync weights -> log
    and every `eval.every` steps: mean@k / pass@k on the held-out validation set.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import ray
from tqdm import tqdm

from rlscale_envs import make_text_env

from . import compute
from .batch import TrainBatch, UpdateResult
from .collect import Collector, PromptsDoNotFitError, draw_problems, split_evenly
from .config import RunConfig
from .device import actor_resources, resolve_use_gpu
from .evaluation import summarize_eval
from .learner import Learner
from .modelpath import resolve_model
from .rollout import PROBE_TEXT, RolloutWorker
from .runlog import METRIC_FIELDS, RunLog, default_run_dir


class StaleWeightsError(RuntimeError):
    """The rollout engine is not sampling from the policy the learner holds."""


def init_ray(cfg: RunConfig) -> None:
    if ray.is_initialized():
        return
    env_vars = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
                "TOKENIZERS_PARALLELISM": "false"}
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, runtime_env={"env_vars": env_vars}, log_to_driver=True)
        return
    # Logical CPUs: one per actor at least, even on a 2-core laptop (they take turns).
    num_cpus = cfg.ray.num_cpus or max(os.cpu_count() or 1, cfg.rollout.num_workers + 1)
    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": env_vars},
             log_to_driver=True, configure_logging=True, logging_level="WARNING")


def reward_by_env(rewards: list[float], env_names: list, default_name: str) -> dict[str, float]:
    """Mean reward per environment: per sub-environment for those that tag info["env"]
    (Mix), else one entry under the configured env id."""
    groups: dict[str, list[float]] = {}
    for r, name in zip(rewards, env_names):
        groups.setdefault(default_name if name is None else str(name), []).append(r)
    return {name: float(np.mean(rs)) for name, rs in sorted(groups.items())}


class Orchestrator:
    def __init__(self, cfg: RunConfig, log=print):
        self.cfg, self.log = cfg, log

    def _start_actors(self, model_path: str):
        cfg = self.cfg
        init_ray(cfg)
        self.use_gpu = resolve_use_gpu(cfg.ray.use_gpu)
        res = actor_resources(self.use_gpu)
        self.learner = ray.remote(Learner).options(**res).remote(
            model_path, cfg.algo.model_dump(), cfg.seed, self.use_gpu, cfg.model.dtype)
        self.workers = [
            ray.remote(RolloutWorker).options(**res).remote(
                model_path, cfg.rollout.model_dump(), cfg.env.model_dump(), cfg.seed + i, self.use_gpu,
                cfg.model.dtype, cfg.algo.fp32_lm_head)
            for i in range(cfg.rollout.num_workers)
        ]
        self.shape = ray.get(self.learner.model_shape.remote())
        self.probe_ids = ray.get(self.workers[0].probe_token_ids.remote())
        self.last_learner_probe = np.array(ray.get(self.learner.probe_logprobs.remote(self.probe_ids)))
        self.last_engine_probes = [np.array(p) for p in ray.get([w.probe_logprobs.remote() for w in self.workers])]
        self.collector = Collector(cfg, self.workers, self._tokenizer(model_path))

    def _tokenizer(self, model_path: str):
        """The policy's tokenizer, loaded here so prompts are tokenised once, in the
        driver; it must give the engine's token ids (checked on the probe text)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_path)
        if tok(PROBE_TEXT).input_ids != self.probe_ids:
            raise RuntimeError(f"the tokenizer in {model_path} gives other token ids than the rollout engine's on "
                               "the probe text; the driver and the engines must load the same tokenizer files")
        return tok

    def _evaluate(self, val_problems: list, val_ids: list[list[int]]) -> dict:
        e, n = self.cfg.eval, len(self.workers)
        parts = ray.get([w.evaluate.remote(chunk, ids, e.k, e.temperature) for w, chunk, ids in
                         zip(self.workers, split_evenly(val_problems, n), split_evenly(val_ids, n))])
        return summarize_eval([row for part in parts for row in part], e.k)

    def _sync_weights(self, version: int) -> dict:
        """Push learner weights to every engine, then prove the engines really changed."""
        state = self.learner.state_dict.remote()
        ray.get([w.load_weights.remote(state, version) for w in self.workers])
        return self.check_engines(version)

    def check_engines(self, version: int) -> dict:
        """Compare each engine's logprobs on a fixed probe text with the learner's.
        Stale weights show up two ways: the engine's probe did not move although the
        learner's did, or the two disagree by more than rollout.stale_tolerance."""
        learner_probe = np.array(ray.get(self.learner.probe_logprobs.remote(self.probe_ids)))
        engine_probes = [np.array(p) for p in ray.get([w.probe_logprobs.remote() for w in self.workers])]
        learner_shift = float(np.abs(learner_probe - self.last_learner_probe).mean())
        engine_shift = min(float(np.abs(e - prev).mean()) for e, prev in zip(engine_probes, self.last_engine_probes))
        gap = max(float(np.abs(e - learner_probe).mean()) for e in engine_probes)
        tol = self.cfg.rollout.stale_tolerance
        if gap > tol or (learner_shift > 1e-6 and engine_shift < 0.01 * learner_shift):
            raise StaleWeightsError(
                f"rollout engine weights are stale after the sync to policy version {version}: the engine's probe "
                f"logprobs moved by {engine_shift:.2e} while the learner's moved by {learner_shift:.2e}, and they "
                f"now differ by {gap:.2e} (rollout.stale_tolerance={tol}). The engine did not load the new "
                "weights: check the weight-reload path for this vLLM version.")
        self.last_learner_probe, self.last_engine_probes = learner_probe, engine_probes
        return {"sync_probe_diff": gap, "engine_probe_shift": engine_shift, "learner_probe_shift": learner_shift}

    def run(self) -> Path:
        cfg = self.cfg
        t_start = time.time()
        model_path, model_info = resolve_model(cfg, log=self.log)
        run_log = RunLog(Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg), cfg)
        run_log.update_run_info(model_path=str(model_path), model=model_info, prepare_s=time.time() - t_start)
        self.log(f"run directory: {run_log.dir}")
        try:
            self._start_actors(str(model_path))
            run_log.update_run_info(model_shape=self.shape.__dict__, use_gpu=self.use_gpu,
                                    actors_ready_s=time.time() - t_start)
            summary = self._loop(run_log)
        finally:
            self._delete_weight_files()
            run_log.close()
        summary["total_s"] = time.time() - t_start
        run_log.write_summary(summary)
        return run_log.dir

    def _delete_weight_files(self) -> None:
        """Let each rollout worker delete its synced weight files; a worker that already
        died has nothing left to clean, so errors are ignored."""
        for worker in getattr(self, "workers", []):
            try:
                ray.get(worker.delete_weight_files.remote(), timeout=60)
            except Exception:  # noqa: BLE001  (cleanup must not mask the run's own error)
                pass

    def _draw_val(self, env, run_log: RunLog) -> tuple[list, list[list[int]]]:
        """The fixed validation problems that fit the engine, and their prompt token ids."""
        cfg = self.cfg
        drawn = draw_problems(env, cfg.eval.n_problems, cfg.eval.seed, distinct=True)
        ids = self.collector.prompt_ids(drawn)
        fit = self.collector.fits(ids)
        kept = [p for p, ok in zip(drawn, fit) if ok]
        kept_ids = [i for i, ok in zip(ids, fit) if ok]
        if not kept:
            raise PromptsDoNotFitError(f"no validation prompt fits: {self.collector.too_long_hint()}")
        if len(kept) < len(drawn):
            self.log(f"warning: {len(drawn) - len(kept)} of {len(drawn)} validation prompts do not fit the "
                     f"engine's context and are left out; {self.collector.too_long_hint()}")
        run_log.update_run_info(val_problems_used=len(kept), val_problems_too_long=len(drawn) - len(kept))
        return kept, kept_ids

    def _loop(self, run_log: RunLog) -> dict:
        cfg = self.cfg
        train_env = make_text_env(cfg.env.id, cfg.env.kwargs, "train")
        val_env = make_text_env(cfg.env.id, cfg.env.kwargs, "val")
        val_problems, val_ids = self._draw_val(val_env, run_log)
        rng = np.random.default_rng(cfg.seed)
        G = cfg.rollout.group_size
        totals = {"flops": 0, "tokens": 0, "seconds": 0.0}

        base = self._evaluate(val_problems, val_ids)
        run_log.log_step({k: None for k in METRIC_FIELDS} | base | {
            "step": 0, "policy_version": 0, "time": time.time(), "cumulative_flops": 0,
            "cumulative_tokens_sampled": 0, "cumulative_s": 0.0})
        evals = [(0, base)]
        bar = tqdm(range(1, cfg.steps + 1), desc="rl", disable=not cfg.progress, dynamic_ncols=True)
        for step in bar:
            t0 = time.time()
            got = self.collector.collect(train_env, rng)
            batch = got.batch
            update: UpdateResult = ray.get(self.learner.update.remote(TrainBatch.from_rollouts(batch, G)))
            t_sync = time.time()
            probe = self._sync_weights(update.policy_version)
            sync_s = time.time() - t_sync

            # Compute follows what ran: every sampled episode (filtered out or not) and
            # every pass the learner reports.
            sampled = [x for b in got.sampled for x in b.turn_lens]
            rollout_flops = compute.rollout_flops(self.shape, sampled)
            tokens_sampled = sum(sum(m) for b in got.sampled for m in b.loss_mask)
            totals["flops"] += rollout_flops + update.flops
            totals["tokens"] += tokens_sampled
            rewards = np.array(batch.rewards)

            row = {k: None for k in METRIC_FIELDS} | {
                "step": step, "policy_version": update.policy_version, "time": time.time(),
                "policy_lag_mean": update.policy_lag_mean, "policy_lag_max": update.policy_lag_max,
                "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()),
                "entropy": update.entropy,
                # Policy-sampled tokens per trained episode (multi-turn: env feedback excluded).
                "response_len_mean": float(np.mean([sum(m) for m in batch.loss_mask])),
                "truncated_frac": float(np.mean(batch.truncated)), "prompts_skipped": got.prompts_skipped,
                "turns_mean": float(np.mean(batch.turns)),
                "reward_by_env": reward_by_env(batch.rewards, batch.env_names, cfg.env.id),
                "kl_ref": update.kl_ref, "loss": update.loss, "grad_norm": update.grad_norm,
                "logprob_diff": update.logprob_diff, **probe,
                "tokens_sampled": tokens_sampled, "tokens_trained": update.tokens_trained,
                "rollout_flops": rollout_flops, "train_flops": update.flops,
                "step_flops": rollout_flops + update.flops, "cumulative_flops": totals["flops"],
                "cumulative_tokens_sampled": totals["tokens"],
                "rollout_s": got.rollout_s, "reward_s": got.reward_s,
                "learner_s": update.learner_s, "sync_s": sync_s,
            } | update.algo_stats | got.filter_stats
            if step % cfg.eval.every == 0 or step == cfg.steps:
                row |= self._evaluate(val_problems, val_ids)
                evals.append((step, row))
            row["step_s"] = time.time() - t0
            totals["seconds"] += row["step_s"]
            row["cumulative_s"] = totals["seconds"]
            run_log.log_step(row)
            every = max(1, len(batch) // max(1, cfg.samples_per_step))
            run_log.log_samples(step, update.policy_version, [
                {"prompt": batch.prompts[i], "completion": batch.completions[i], "reward": batch.rewards[i],
                 "reason": batch.reasons[i], "advantage": update.advantages[i], "turns": batch.turns[i],
                 "env": batch.env_names[i], "sample_policy_version": batch.policy_versions[i]}
                for i in range(0, len(batch), every)][: cfg.samples_per_step])
            bar.set_postfix(reward=f"{row['reward_mean']:.3f}", val=f"{evals[-1][1]['val_mean_at_k']:.3f}",
                            H=f"{update.entropy:.2f}")
        bar.close()
        train_env.close()
        val_env.close()
        final = evals[-1][1]
        return {"steps": cfg.steps, "base_val_mean_at_k": base["val_mean_at_k"],
                "base_val_pass_at_k": base["val_pass_at_k"], "final_val_mean_at_k": final["val_mean_at_k"],
                "final_val_pass_at_k": final["val_pass_at_k"], "eval_k": cfg.eval.k,
                "eval_problems": len(val_problems), "total_flops": totals["flops"],
                "rl_loop_s": totals["seconds"]}
