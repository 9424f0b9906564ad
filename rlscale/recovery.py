"""The orchestrator's failure side: actor deaths, survived and recorded.

- A rollout worker that dies is restarted by Ray and given the synced policy by the
  worker pool (worker_pool.py); here it is verified, and the death recorded.
- A learner that dies is restarted by Ray, restored from the newest checkpoint, and the
  steps since are re-run (in sync mode they come out the same, as after `--resume`).
- run.json lists every failure (`failures`) with what was done; metrics rows carry the
  run's counts so far (worker_restarts, worker_retries, learner_restarts).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import ray
from ray.exceptions import RayActorError

from .checkpoint import LoopState, complete_checkpoints, read_loop_state
from .runlog import RunLog
from .weight_transfer import StaleWeightsError
from .worker_pool import WorkerFailure, when_restarted


class LearnerLostError(RuntimeError):
    """The learner died and could not be restored."""


class Recovery:
    """Mixed into Orchestrator: uses its cfg, log, learner, workers, pool, run_log,
    synced_learner_probe, last_engine_probes, prior_failures, learner_restarts, _restore
    and the loop's _producer and _pending_evals."""

    def _verify_worker(self, i: int) -> None:
        """A restarted worker, just given the synced policy: its probe must match the
        learner's probe of those weights."""
        probe = np.array(ray.get(self.workers[i].probe_logprobs.remote()))
        gap = float(np.abs(probe - self.synced_learner_probe).mean())
        if gap > self.cfg.rollout.stale_tolerance:
            raise StaleWeightsError(f"rollout worker {i}, restarted, does not sample from the synced policy: its "
                                    f"probe logprobs differ from the learner's by {gap:.2e} "
                                    f"(rollout.stale_tolerance={self.cfg.rollout.stale_tolerance})")
        self.last_engine_probes[i] = probe

    def _worker_failed(self, failure: WorkerFailure) -> None:
        self.log(f"rollout worker {failure.worker} died ({failure.error}); restarted, its work is re-run")
        self._record_failure(f"rollout_worker_{failure.worker}", failure.error, f"restarted; {failure.method} re-run")

    def _record_failure(self, actor: str, error: str, action: str) -> None:
        """run.json's `failures`: every actor death of the run, with what was done about it."""
        events = self.run_log.run_info.get("failures", [])
        events.append({"time": time.time(), "actor": actor, "error": error, "action": action})
        self.run_log.update_run_info(failures=events, failure_counts=self.failure_counts(),
                                     **self.actor_places())

    def failure_counts(self) -> dict[str, int]:
        """Actor failures of the whole run so far (a resumed run's include the earlier ones')."""
        pool = getattr(self, "pool", None)
        now = {"worker_restarts": pool.restarts if pool else 0, "worker_retries": pool.retries if pool else 0,
               "learner_restarts": self.learner_restarts}
        return {k: self.prior_failures.get(k, 0) + v for k, v in now.items()}

    def _recover_learner(self, run_log: RunLog, error: RayActorError) -> tuple[Path, LoopState]:
        """The learner died mid-run and Ray restarted it (ray.learner_max_restarts; its
        __init__ loaded the base model): restore it from the newest complete checkpoint and
        cut the logs back to that step; the loop then re-runs the steps since, as a resumed
        run does. Re-raises `error` when it is not the learner's death."""
        group = getattr(self.learner, "actor_ids", None)  # a LearnerGroup's ranks
        if error.actor_id not in (group or [self.learner._actor_id.hex()]):
            raise error
        if group:
            raise LearnerLostError(f"learner rank {group.index(error.actor_id)} died; a sharded learner's process "
                                   "group does not survive a rank's death, so the run stops (continue it from its "
                                   "last checkpoint with `rlscale run --resume RUN_DIR`)") from error
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        self.learner_restarts += 1
        ckpts = complete_checkpoints(run_log.dir)
        if self.learner_restarts > self.cfg.ray.learner_max_restarts or not ckpts:
            why = (f"more often than ray.learner_max_restarts={self.cfg.ray.learner_max_restarts} allows" if ckpts
                   else "with no checkpoint to restore it from (set checkpoint.every to write them during the run)")
            raise LearnerLostError(f"the learner died {why}; the run stops. Last error: {first_line}") from error
        start = read_loop_state(ckpts[-1])
        self.log(f"the learner died ({first_line}); restoring it from {ckpts[-1].name}, steps after "
                 f"{start.step} run again")
        self._producer.stop(wait=True)  # the old loop's collection and evaluations end first
        for _, _, calls in self._pending_evals:
            try:
                self.pool.gather(calls)
            except Exception:  # noqa: BLE001 - their rows are cut anyway
                pass
        try:
            when_restarted(lambda: ray.get(self.learner.pid.remote()))
        except RayActorError as e:
            raise LearnerLostError(f"the learner died and Ray did not bring it back ({e}); the run stops") from error
        self._record_failure("learner", f"{type(error).__name__}: {first_line}",
                             f"restored from {ckpts[-1].name}; steps {start.step + 1}.. re-run")
        run_log.rewind(start.metrics_bytes, start.samples_bytes)
        self._restore(ckpts[-1], start)  # load_checkpoint waits for Ray's restart of the learner
        return ckpts[-1], start
