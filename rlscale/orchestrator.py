"""The orchestrator: places the actors and runs the RL loop.

    for each step:
        take the next scored batch from the pipeline (pipeline.py: collect.py draws
        prompts, rolls out G episodes each with vLLM, scores them with the env and
        applies the recipe's sample filter, up to algo.max_staleness versions ahead)
        -> drop samples older than the staleness bound
        -> learner update (advantages, objective: rlscale/algos) -> sync weights -> log
    and every `eval.every` steps: mean@k / pass@k on the held-out validation set, of the
    version just synced (in async mode while the learner trains the next step).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import ray
from ray.exceptions import RayActorError
from tqdm import tqdm

from rlscale_envs import make_text_env

from .batch import TrainBatch, UpdateResult
from .checkpoint import LoopState, read_loop_state
from .checkpointing import Checkpointing
from .collect import Collector, PromptsDoNotFitError, draw_problems, split_evenly
from .config import ConfigError, RunConfig
from .device import actor_resources, resolve_use_gpu
from .evaluation import summarize_eval
from .learner import Learner
from .learner_group import LearnerGroup
from .modelpath import resolve_model
from .pipeline import BatchProducer, drop_stale
from .raystart import init_ray, ray_setup  # noqa: F401  (ray_setup: part of this module's API)
from .recovery import LearnerLostError, Recovery  # noqa: F401  (part of the API)
from .rollout import PROBE_TEXT, RolloutWorker
from .runlog import FAILURE_ZEROS, METRIC_FIELDS, RunLog, default_run_dir
from .signals import finish_step_first, is_interrupt, sigterm_as_interrupt
from .steprow import step_row
from .tempdirs import sweep_stale_dirs
from .weight_transfer import StaleWeightsError, WeightSync, make_weight_transfer  # noqa: F401
from .worker_pool import WorkerCall, WorkerPool


class Orchestrator(Checkpointing, Recovery, WeightSync):
    def __init__(self, cfg: RunConfig, log=print):
        self.cfg, self.log = cfg, log

    def _start_actors(self, model_path: str) -> dict:
        """Start Ray, the learner and the engines; returns the seconds each took to be ready
        (from this call), for run.json."""
        cfg = self.cfg
        t0 = time.time()
        init_ray(cfg)
        ray_s = time.time() - t0
        self.use_gpu = resolve_use_gpu(cfg.ray.use_gpu)
        res = actor_resources(self.use_gpu)
        if cfg.rollout.tensor_parallel_size > 1 and not self.use_gpu:
            raise ConfigError(f"rollout.tensor_parallel_size={cfg.rollout.tensor_parallel_size} needs GPUs, and the "
                              "Ray cluster has none: set rollout.tensor_parallel_size=1")
        engine_res = actor_resources(self.use_gpu, cfg.rollout.tensor_parallel_size)
        # Async on one host: engines sample while the learner trains, and each engine runs
        # one thread (Ray's OMP_NUM_THREADS for a 1-CPU actor), so the learner takes the rest.
        alongside = cfg.rollout.num_workers if cfg.rollout.mode == "async" and not cfg.ray.address else 0
        # A dead actor is restarted by Ray (its __init__ runs again): a learner then restores
        # the last checkpoint (checkpointing.py), a rollout worker the synced policy (worker_pool.py).
        learner_args = (model_path, cfg.algo.model_dump(), cfg.seed, self.use_gpu, cfg.model.dtype, alongside)
        if cfg.learner.num_workers > 1:  # ranks of one policy, driven as one learner
            self.learner = LearnerGroup(cfg.learner.num_workers, cfg.learner.strategy, res, learner_args)
        else:
            self.learner = ray.remote(Learner).options(max_restarts=cfg.ray.learner_max_restarts, **res).remote(
                *learner_args)
        self.workers = [
            # Threaded: weights, probes and evaluations reach the engine between the calls of
            # a running generate (rollout.py); one lock keeps engine calls one at a time.
            ray.remote(RolloutWorker).options(max_concurrency=4, max_restarts=cfg.ray.worker_max_restarts,
                                              **engine_res).remote(
                model_path, cfg.rollout.model_dump(), cfg.env.model_dump(), cfg.seed + i, self.use_gpu,
                cfg.model.dtype, cfg.algo.fp32_lm_head)
            for i in range(cfg.rollout.num_workers)
        ]
        self.shape = ray.get(self.learner.model_shape.remote())
        learner_s = time.time() - t0
        self.probe_ids = ray.get(self.workers[0].probe_token_ids.remote())
        engines_s = time.time() - t0
        self.weight_transfer = make_weight_transfer(cfg.rollout.weight_transfer, cfg.rollout.weight_dir)
        self.pool = WorkerPool(self.workers, cfg.ray.worker_max_restarts, self._verify_worker, self._worker_failed)
        self.last_learner_probe = np.array(ray.get(self.learner.probe_logprobs.remote(self.probe_ids)))
        self.synced_learner_probe = self.last_learner_probe
        self.last_engine_probes = [np.array(p) for p in self.pool.call_all("probe_logprobs", [()] * len(self.pool))]
        self.last_engine_busy = self.pool.call_all("busy_seconds", [()] * len(self.pool))
        self.last_sync_time = time.time()
        self.collector = Collector(cfg, self.pool, self._tokenizer(model_path))
        return {"ray_init_s": ray_s, "learner_ready_s": learner_s, "engines_ready_s": engines_s}

    def _tokenizer(self, model_path: str):
        """The policy's tokenizer, loaded here so prompts are tokenised once, in the
        driver; it must give the engine's token ids (checked on the probe text)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_path)
        if tok(PROBE_TEXT).input_ids != self.probe_ids:
            raise RuntimeError(f"the tokenizer in {model_path} gives other token ids than the rollout engine's on "
                               "the probe text; the driver and the engines must load the same tokenizer files")
        return tok

    def _submit_eval(self, version: int, final: bool = False) -> list[WorkerCall]:
        """Start the validation of policy `version` on every engine (which must hold it): the
        curve's problems, or for the final evaluation all of eval.final_n_problems."""
        e, n = self.cfg.eval, len(self.workers)
        upto = len(self.val_problems) if final else self.n_curve_problems
        # Seeded per (eval.seed, version, problem): reproducible, and independent between evaluations.
        seeds = [(e.seed * 1_000_003 + version * 100_003 + i) % 2**31 for i in range(upto)]
        return self.pool.submit_all("evaluate", [
            (chunk, ids, e.k, e.temperature, version, sd) for chunk, ids, sd in
            zip(split_evenly(self.val_problems[:upto], n), split_evenly(self.val_ids[:upto], n),
                split_evenly(seeds, n))])

    def _eval_fields(self, rewards: list) -> dict:
        """A row's validation fields. They always describe the curve's problems (the first
        eval.n_problems), so every point of the curve measures the same set; a final
        evaluation on more problems adds final_eval_* fields. The larger set is not just a
        more precise curve point: a distinct-problem draw from a small space runs out of easy
        problems first (quickstart: 12% one-step chains in the first 200, 1% in 2500)."""
        k, n = self.cfg.eval.k, self.n_curve_problems
        fields = summarize_eval(rewards[:n], k) | {"val_n_problems": n}
        if len(rewards) > n:
            full = summarize_eval(rewards, k)
            fields |= {f"final_eval_{key.removeprefix('val_')}": v for key, v in full.items()}
            fields["final_eval_n_problems"] = len(rewards)
        return fields

    def run(self, keep_actors: bool = False, resume_from: Path | None = None) -> Path:
        """One run, start to end. The learner and engines are stopped when it ends (also
        on error), so one process can run many; keep_actors=True leaves them up for the
        caller to inspect (their synced weight files are removed either way).
        resume_from: a checkpoint of cfg.run_dir to continue from (rlscale/resume.py)."""
        cfg = self.cfg
        t_start = time.time()
        model_path, model_info = resolve_model(cfg, log=self.log)
        start = read_loop_state(resume_from) if resume_from else None
        run_log = (RunLog.reopen(Path(cfg.run_dir), cfg, start.metrics_bytes, start.samples_bytes, start.step) if start
                   else RunLog(Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg), cfg))
        run_log.update_run_info(model_path=str(model_path), model=model_info, prepare_s=time.time() - t_start)
        self.log(f"run directory: {run_log.dir}")
        self.run_log = run_log  # failures are recorded in its run.json as they happen
        self.prior_failures = dict(run_log.run_info.get("failure_counts") or FAILURE_ZEROS)  # before a resume
        self.learner_restarts = 0
        # run.json's status: `running` until the summary is written (then `finished`), or
        # `failed` (with the error) / `interrupted` (Ctrl-C, SIGTERM) when the run ends early.
        status, error = "failed", None
        try:
            with sigterm_as_interrupt():
                self.model_path = str(model_path)
                startup = self._start_actors(str(model_path))
                run_log.update_run_info(model_shape=self.shape.__dict__, use_gpu=self.use_gpu,
                                        actors_ready_s=time.time() - t_start, startup=startup,
                                        **self.actor_places())
                if start:
                    self._restore(resume_from, start)
                while True:
                    try:
                        summary = self._loop(run_log, start)
                        break
                    except RayActorError as e:  # the learner died: on from its last checkpoint
                        resume_from, start = self._recover_learner(run_log, e)
                summary["total_s"] = time.time() - t_start
                run_log.write_summary(summary)
                status = "finished"
        except BaseException as e:
            if is_interrupt(e):
                status = "interrupted"
                self._on_interrupt(run_log)
            else:
                error = e
            raise
        finally:
            self._delete_weight_files()
            if not keep_actors:
                self.stop_actors()
            run_log.close(status, error)
        return run_log.dir

    def actor_places(self) -> dict:
        """run.json's actor_pids and actor_nodes (Ray node ids), kept current: an operator's
        view of the run, and where a cluster placed each actor. A learner group lists its ranks."""
        ranks = getattr(self.learner, "ranks", None)
        if ranks:
            pids, nodes = ray.get([r.pid.remote() for r in ranks]), ray.get([r.node_id.remote() for r in ranks])
        else:
            pids, nodes = ray.get([self.learner.pid.remote(), self.learner.node_id.remote()])
        return {"actor_pids": {"learner": pids, "rollout_workers": list(self.pool.pids)},
                "actor_nodes": {"learner": nodes, "rollout_workers": list(self.pool.nodes)}}

    def _delete_weight_files(self) -> None:
        """Let each rollout worker delete its synced weight files; a worker that already
        died has nothing left to clean, so errors are ignored."""
        self._worker_pids = []
        try:  # the shared_file transfer's copies
            ray.get(self.learner.delete_weight_files.remote(), timeout=60)
        except Exception:  # noqa: BLE001  (cleanup must not mask the run's own error)
            pass
        for worker in getattr(self, "workers", []):
            try:
                self._worker_pids.append(ray.get(worker.delete_weight_files.remote(), timeout=60))
            except Exception:  # noqa: BLE001  (cleanup must not mask the run's own error)
                pass

    def stop_actors(self) -> None:
        """Kill this run's learner and engines (only those: other Ray work is untouched),
        freeing their CPUs, GPUs and memory for the next run in this process."""
        learner = getattr(self, "learner", None)
        if isinstance(learner, LearnerGroup):
            learner.kill()
            learner = None
        for actor in [learner, *getattr(self, "workers", [])]:
            if actor is not None:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001  (already gone)
                    pass
        self.learner, self.workers = None, []
        # A killed engine's exit handlers do not run: its private temp dir goes here, once dead.
        sweep_stale_dirs(getattr(self, "model_path", None), wait_for=getattr(self, "_worker_pids", []))

    def _draw_val(self, env, run_log: RunLog) -> None:
        """The fixed validation problems that fit the engine, and their prompt token ids.
        The draw is prefix-stable: the first eval.n_problems of a final_n_problems draw are
        the n_problems draw, the problems of every evaluation."""
        cfg = self.cfg
        n_curve = cfg.eval.n_problems
        drawn = draw_problems(env, cfg.eval.final_n_problems or n_curve, cfg.eval.seed, distinct=True)
        ids = self.collector.prompt_ids(drawn)
        fit = self.collector.fits(ids)
        self.val_problems = [p for p, ok in zip(drawn, fit) if ok]
        self.val_ids = [i for i, ok in zip(ids, fit) if ok]
        self.n_curve_problems = sum(fit[:n_curve])
        if not self.n_curve_problems:
            raise PromptsDoNotFitError(f"no validation prompt fits: {self.collector.too_long_hint()}")
        if len(self.val_problems) < len(drawn):
            self.log(f"warning: {len(drawn) - len(self.val_problems)} of {len(drawn)} validation prompts do not "
                     f"fit the engine's context and are left out; {self.collector.too_long_hint()}")
        run_log.update_run_info(val_problems_used=self.n_curve_problems,
                                val_problems_too_long=n_curve - self.n_curve_problems,
                                final_eval_problems_used=len(self.val_problems))

    def _loop(self, run_log: RunLog, start: LoopState | None = None) -> dict:
        """Steps 1..steps through the rollout pipeline (pipeline.py). An evaluation of
        version v runs on the engines while the learner trains step v+1; its row is
        written when it returns, before version v+1 is synced. In sync mode (k = 0)
        everything happens in turn, exactly as: sample, learn, sync, evaluate.
        start: a checkpoint's loop state; the loop goes on from the step after it."""
        cfg = self.cfg
        k, G, is_sync = cfg.algo.max_staleness, cfg.rollout.group_size, cfg.algo.max_staleness == 0
        train_env = make_text_env(cfg.env.id, cfg.env.kwargs, "train")
        val_env = make_text_env(cfg.env.id, cfg.env.kwargs, "val")
        self._draw_val(val_env, run_log)
        rng = np.random.default_rng(cfg.seed)
        totals = {"flops": 0, "tokens": 0}
        evals: list[tuple[int, dict]] = []
        first, self._resume_point = 1, None
        if start:  # a resumed run: where the checkpoint left off (rlscale/resume.py)
            rng.bit_generator.state = start.sampler_rng
            totals, evals, first = dict(start.totals), [(e["step"], e) for e in start.evals], start.step + 1
        # [(row, samples, eval calls)] of the one step whose evaluation runs (an attribute: a
        # learner recovery waits for it before it restores: recovery.py)
        pending: list = []
        self._pending_evals = pending

        def add_eval(row: dict, refs: list) -> None:
            row |= self._eval_fields([r for part in self.pool.gather(refs) for r in part])
            evals.append((row["step"], row))

        def finish_pending() -> None:
            for row, samples, refs in pending:
                add_eval(row, refs)
                run_log.log_step(row)
                run_log.log_samples(row["step"], row["policy_version"], samples)
            pending.clear()

        def draw_state() -> dict:  # what the next prompt draws depend on (a checkpoint's part)
            retired = self.collector.retirement
            return {"sampler_rng": rng.bit_generator.state,
                    "retired_prompts": sorted(retired.retired) if retired is not None else None}

        producer = self._producer = BatchProducer(lambda: self.collector.collect(train_env, rng), cfg.steps, k, first,
                                                  sampler_state=draw_state)
        if cfg.eval.at_start and not start:
            pending.append(({f: None for f in METRIC_FIELDS} | {
                "step": 0, "policy_version": 0, "time": time.time(), "cumulative_flops": 0,
                "cumulative_tokens_sampled": 0, "cumulative_s": 0.0}, [], self._submit_eval(0)))
            if is_sync:
                finish_pending()
        t_loop = t_prev = time.time()  # seconds count from the first step (a sync step-0 evaluation is before)
        if start:
            t_loop -= start.cumulative_s  # a resumed run's cumulative_s goes on from the checkpoint's
        else:
            run_log.update_run_info(loop_started_unix=t_loop)
        producer.release(start.policy_version if start else 0)
        producer.start()
        bar = tqdm(range(first, cfg.steps + 1), desc="rl", disable=not cfg.progress, dynamic_ncols=True,
                   initial=first - 1, total=cfg.steps)
        try:
            def stop_note() -> None:
                self.log(f"\nstopping after step {step}: it finishes and is checkpointed (signal again to stop now)")

            for step in bar:
                got = producer.next()
                # The learner is at version step-1; it never trains on a sample older than k versions.
                batch, stale = drop_stale(got.batch, step - 1, k, G)
                if len(batch) == 0:
                    raise RuntimeError(f"step {step}: every sample was more than {k} versions stale")
                # A signal from here on lets the step finish, so its checkpoint can be written (signals.py).
                with finish_step_first(stop_note) as held:
                    update_ref = self.learner.update.remote(TrainBatch.from_rollouts(batch, G))
                    finish_pending()  # the last evaluation ran while this update trains
                    update: UpdateResult = ray.get(update_ref)
                    t_sync = time.time()
                    sync = self._sync_weights(update.policy_version)
                    sync_s = time.time() - t_sync
                    row, samples = step_row(cfg, self.shape, step, got, batch, update, stale, totals)
                    row |= sync | {"sync_s": sync_s} | self.failure_counts()
                    if row["worker_retries"] != run_log.run_info.get("failure_counts", {}).get("worker_retries", 0):
                        run_log.update_run_info(failure_counts=self.failure_counts())
                    refs = None
                    if step % cfg.eval.every == 0 or step == cfg.steps:
                        refs = self._submit_eval(update.policy_version, final=step == cfg.steps)
                        if is_sync:
                            add_eval(row, refs)
                            refs = None
                    now = time.time()
                    row |= {"step_s": now - t_prev, "cumulative_s": now - t_loop,
                            "learner_idle_s": max(0.0, now - t_prev - update.learner_s)}
                    t_prev = now
                    if refs is not None:
                        pending.append((row, samples, refs))  # written when its evaluation returns
                    else:
                        run_log.log_step(row)
                        run_log.log_samples(step, update.policy_version, samples)
                    due = cfg.checkpoint.every and step % cfg.checkpoint.every == 0 and step < cfg.steps
                    if due or held:
                        finish_pending()  # every row up to this step on disk before the logs' lengths are taken
                    if not pending:  # the state after this step, whole: what an interruption can save
                        drawn = producer.sampler_state_before(step + 1, draw_state)
                        self._resume_point = self._loop_state(run_log, step, update.policy_version, totals, drawn,
                                                              evals, producer.started - step, time.time() - t_loop)
                    if due:
                        self._checkpoint(run_log, self._resume_point)
                    producer.release(update.policy_version)
                    restarts = {"restarts": f"{row['worker_restarts']}w/{row['learner_restarts']}l"} if (
                        row["worker_restarts"] or row["learner_restarts"]) else {}
                    bar.set_postfix(reward=f"{row['reward_mean']:.3f}", H=f"{update.entropy:.2f}",
                                    val=f"{evals[-1][1]['val_mean_at_k']:.3f}" if evals else "-", **restarts)
            finish_pending()
            # The end-of-run checkpoint: its policy/ is the run's final policy.
            final_ckpt = self._checkpoint(run_log, self._loop_state(
                run_log, cfg.steps, update.policy_version, totals, draw_state(), evals, 0, time.time() - t_loop))
        finally:
            producer.stop()
            bar.close()
            train_env.close()
            val_env.close()
        base = evals[0][1] if evals and evals[0][0] == 0 else {}
        final = evals[-1][1]
        # final_eval_*: the final evaluation on all its problems (the curve's last point when
        # eval.final_n_problems is null).
        final_eval = {f"final_eval_{key}": final.get(f"final_eval_{key}", final[f"val_{key}"])
                      for key in ("mean_at_k", "mean_at_k_se", "pass_at_k", "pass_at_k_se", "n_problems")}
        return {"steps": cfg.steps, "rollout_mode": cfg.rollout.mode, "max_staleness": k,
                "base_val_mean_at_k": base.get("val_mean_at_k"), "base_val_pass_at_k": base.get("val_pass_at_k"),
                "final_val_mean_at_k": final["val_mean_at_k"], "final_val_mean_at_k_se": final["val_mean_at_k_se"],
                "final_val_pass_at_k": final["val_pass_at_k"],
                "eval_k": cfg.eval.k, "eval_problems": self.n_curve_problems, **final_eval,
                "total_flops": totals["flops"], "rl_loop_s": time.time() - t_loop,
                "final_policy": str(final_ckpt / "policy")}
