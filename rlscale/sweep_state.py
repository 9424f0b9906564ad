"""The state of a sweep's run directories: finished, unfinished and resumable, or from
another plan. Shared by local sweeps (sweep.py) and Ray-job sweeps (sweep_jobs.py)."""

from __future__ import annotations

import json
import traceback
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .config import ConfigError, load_config, non_experiment_keys
from .resume import config_changes, flat

if TYPE_CHECKING:
    from .sweep import Sweep, SweepRun


class SweepError(ConfigError):
    """A problem with the sweep file or the sweep directory, found before any run starts."""


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "summary.json").is_file()


def mark_finished(run: SweepRun, skipped: bool = False) -> None:
    """Record a finished run with its final accuracy (skipped: it finished in an earlier invocation)."""
    run.record.update(status="finished", skipped=skipped)
    if is_finished(run.run_dir):
        summary = json.loads((run.run_dir / "summary.json").read_text())
        keys = ("final_val_mean_at_k", "final_val_mean_at_k_se", "eval_k", "final_eval_mean_at_k",
                "final_eval_mean_at_k_se", "final_eval_n_problems")
        run.record.update({k: summary.get(k) for k in keys})


def incomplete_path(run_dir: Path) -> Path:
    """Where an unfinished earlier attempt is moved: <run>.incomplete-<k>, the first free k."""
    k = 1
    while (target := run_dir.with_name(f"{run_dir.name}.incomplete-{k}")).exists():
        k += 1
    return target


def resumable_checkpoint(run: SweepRun) -> tuple[Path | None, str]:
    """The checkpoint an unfinished attempt continues from, or None and why it starts over:
    no complete checkpoint, or a config.yaml that differs from the plan where a resumed run
    may not differ (resume.MAY_CHANGE)."""
    from .checkpoint import latest_checkpoint, read_loop_state

    ckpt = latest_checkpoint(run.run_dir)
    if ckpt is None:
        return None, "no complete checkpoint"
    try:
        saved = load_config(run.run_dir / "config.yaml", [])
    except ConfigError as e:
        return None, f"its config.yaml does not load ({e})"
    if changed := config_changes(saved, run.config):
        return None, "its config differs from the plan: " + ", ".join(changed[:4])
    step = read_loop_state(ckpt).step
    if step >= run.config.steps:
        return None, f"its last checkpoint is at the final step {step} but it wrote no summary.json"
    return ckpt, f"continues from its checkpoint at step {step}"


def continue_or_move_aside(run: SweepRun, log=print) -> Path | None:
    """Before an attempt: the checkpoint an earlier unfinished attempt continues from
    (recorded under resumed_from), or None, that attempt moved aside or there being none."""
    if not run.run_dir.exists():
        return None
    ckpt, why = resumable_checkpoint(run)
    if ckpt is None:
        move_aside(run, why, log)
        return None
    run.record["resumed_from"].append(ckpt.name)
    log(f"sweep: {run.name}: the unfinished attempt {why}")
    return ckpt


def move_aside(run: SweepRun, why: str, log=print) -> Path:
    """Keep an unfinished attempt's data (never delete it) and free the directory for a new one."""
    target = incomplete_path(run.run_dir)
    run.run_dir.rename(target)
    run.record.setdefault("moved_aside", []).append(target.name)
    log(f"sweep: {run.name}: an earlier attempt did not finish (no summary.json) and cannot continue ({why}); "
        f"moved it to {target.name} and running it again")
    return target


# Keys a finished run must agree on with the plan to count as done: the experiment, plus
# the seed and length of the run (a 20-step run does not finish a 40-step plan).
def _must_match(key: str) -> bool:
    return key in ("seed", "steps") or not any(key == k or key.startswith(k + ".") for k in non_experiment_keys())


def check_finished_runs(sweep: Sweep) -> None:
    """A finished run in the sweep directory with another config than the plan's (the sweep
    file changed since) would be skipped wrongly: stop before anything runs, naming the fields."""
    problems = []
    for run in sweep.runs:
        config_file = run.run_dir / "config.yaml"
        zoo_file = run.run_dir / "zoo.json"  # a pre-training sweep's record (sweep_zoo.py)
        if not is_finished(run.run_dir):
            continue
        if config_file.is_file():
            done = flat(yaml.safe_load(config_file.read_text()) or {})
            planned = flat(run.config.model_dump(mode="json"))
        elif zoo_file.is_file():
            record = json.loads(zoo_file.read_text())
            done = flat({"model": {"zoo_size": record.get("size")}, "pretrain": record.get("pretrain", {})})
            planned = flat({"model": {"zoo_size": run.config.model.zoo_size},
                            "pretrain": run.config.pretrain.model_dump(mode="json")})
        else:
            continue
        diff = [f"{k}: {done.get(k)!r} in the run, {planned.get(k)!r} planned"
                for k in sorted(set(done) | set(planned)) if _must_match(k) and done.get(k) != planned.get(k)]
        if diff:
            problems.append(f"  {run.name}: " + "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else ""))
    if problems:
        raise SweepError(f"{sweep.out} holds finished runs of another plan (the sweep file changed since they "
                         "ran); set another out: for the new plan, or move these runs away:\n" + "\n".join(problems))


@contextmanager
def recorded_attempt(sweep: Sweep, run: SweepRun, mode: str, log=print, on_failure=None):
    """One run's attempt: an exception is recorded as the run's failure (with its traceback)
    and the sweep goes on; an interruption is recorded and raised; either way the end time
    is recorded and sweep.json rewritten."""
    try:
        yield
    except Exception as e:  # noqa: BLE001  (one failed run must not stop the others)
        run.record.update(status="failed", error=f"{type(e).__name__}: {e}",
                          traceback=traceback.format_exc().splitlines()[-30:])
        log(f"sweep: {run.name} failed: {type(e).__name__}: {e}")
        if on_failure is not None:
            on_failure()
    except BaseException:
        run.record["status"] = "interrupted"
        raise
    finally:
        run.record["ended"] = datetime.now().isoformat(timespec="seconds")
        sweep.write(mode)
