"""The orchestrator's checkpoint side: write one (rlscale/checkpoint.py) from the loop's
state, restore a run from one, and save the last whole step when a run is interrupted."""

from __future__ import annotations

import time
from pathlib import Path

import ray

from .checkpoint import LoopState, write_checkpoint
from .runlog import RunLog


class Checkpointing:
    """Mixed into Orchestrator: uses its learner, workers, collector, cfg, model_path, log and
    _sync_weights."""

    EVAL_PREFIXES = ("val_", "final_eval_")  # an evaluation row's own fields, kept in a checkpoint

    def _restore(self, ckpt: Path, start: LoopState) -> None:
        """The learner's exact state from the checkpoint, its weights on every engine, the
        prompt retirement; the loop restores the rest from `start`."""
        restored = ray.get(self.learner.load_checkpoint.remote(str(ckpt)))
        if restored != start.learner_state_hash:
            raise RuntimeError(f"{ckpt}: the learner state loaded from the checkpoint hashes to {restored[:12]}, "
                               f"not the {start.learner_state_hash[:12]} recorded when it was written; the checkpoint "
                               "is damaged")
        self._sync_weights(start.policy_version)
        if self.collector.retirement is not None:
            self.collector.retirement.retired = set(start.retired_prompts or [])

    def _loop_state(self, run_log: RunLog, step: int, version: int, totals: dict, draw_state: dict,
                    evals: list, ahead: int, cumulative_s: float) -> LoopState:
        """The driver's state right after `step` (every row up to it logged); draw_state:
        what the prompt draws depend on (sampler_rng, retired_prompts) before step+1's."""
        return LoopState(
            step=step, policy_version=version, totals=dict(totals), sampler_ahead=max(0, ahead), **draw_state,
            evals=[{k: v for k, v in row.items() if k in ("step", "policy_version") or k.startswith(self.EVAL_PREFIXES)}
                   for _, row in evals],
            metrics_bytes=run_log.metrics_bytes(), samples_bytes=run_log.samples_bytes(), cumulative_s=cumulative_s)

    def _checkpoint(self, run_log: RunLog, state: LoopState) -> Path:
        """Write checkpoints/step-NNNNNN (rlscale/checkpoint.py) and prune old ones. The
        learner must be at state.policy_version (it is between steps)."""
        t0 = time.time()
        path = write_checkpoint(run_log.dir, state, lambda p: ray.get(self.learner.save_checkpoint.remote(p)),
                                self.model_path, self.cfg.checkpoint.keep)
        run_log.update_run_info(last_checkpoint={"step": state.step, "path": str(path), "write_s": time.time() - t0})
        return path

    def _on_interrupt(self, run_log: RunLog) -> None:
        """Ctrl-C or SIGTERM stopped the run, the actors still up: checkpoint the last whole
        step, so `--resume` continues from it. A first signal during a step lets that step
        finish (orchestrator: signals.finish_step_first), so this is the step just done; a
        second signal can stop the run mid-update, with the learner's state past the last
        whole step: then no checkpoint is written here, and the newest periodic one stands
        (run.json's interrupt_checkpoint is null)."""
        point: LoopState | None = getattr(self, "_resume_point", None)
        learner = getattr(self, "learner", None)
        if point is None or learner is None:
            return
        try:
            version = ray.get(learner.get_version.remote(), timeout=120)  # waits out an update in flight
            if version != point.policy_version:
                self.log(f"interrupted during step {point.step + 1}'s update: no checkpoint of step {point.step}")
                run_log.update_run_info(interrupt_checkpoint=None)
                return
            path = self._checkpoint(run_log, point)
            run_log.update_run_info(interrupt_checkpoint=str(path))
            self.log(f"interrupted: checkpoint of step {point.step} written to {path}")
        except Exception as e:  # noqa: BLE001 - the interruption itself is what gets reported
            self.log(f"interrupted: the checkpoint could not be written ({type(e).__name__}: {e})")
            run_log.update_run_info(interrupt_checkpoint=None)
