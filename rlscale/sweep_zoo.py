"""`rlscale sweep` with `task: pretrain`: a sweep that pre-trains zoo base models.

Each (setting, seed) pre-trains `model.zoo_size` with the config's `pretrain:` section
(its `pretrain.seed` is the sweep's seed) into the zoo cache, where RL runs with the same
settings find it; a model already in the cache is reused. The sweep directory gets one
record per model, OUT/<name>/, holding copies of the checkpoint's pretrain_metrics.jsonl
and base_eval.json (so `rlscale analyze OUT` fits the pre-training laws from the sweep
directory alone), zoo.json (where the checkpoint is) and summary.json (finished).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

from .sweep import Sweep, SweepRun, is_finished, recorded_attempt

RECORD_FILES = ("pretrain_metrics.jsonl", "base_eval.json")
SUMMARY_KEYS = ("size", "n_params", "tokens", "flops", "final_val_loss", "heldout_accuracy_greedy",
                "heldout_accuracy_sampled", "train_seconds")


def write_record(run: SweepRun, zoo_dir: Path, reused: bool) -> dict:
    """OUT/<name>/ for a pre-trained model; summary.json last, as the finished mark."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        shutil.copyfile(zoo_dir / name, run.run_dir / name)
    info = json.loads((zoo_dir / "base_eval.json").read_text())
    (run.run_dir / "zoo.json").write_text(json.dumps(
        {"zoo_dir": str(zoo_dir), "reused_from_cache": reused, "size": run.config.model.zoo_size,
         "pretrain": run.config.pretrain.model_dump(mode="json")}, indent=2))
    summary = {k: info.get(k) for k in SUMMARY_KEYS} | {"zoo_dir": str(zoo_dir)}
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_pretrain_sweep(sweep: Sweep, log=print) -> list[SweepRun]:
    """Pre-train (or find in the cache) each planned model, one after another; returns the
    runs that failed. Pre-training writes its checkpoint under a .tmp name and renames it
    when done, so a killed sweep leaves no half model behind: run it again."""
    from .pretrain import pretrain, settings_tag
    from .zoo import zoo_dir

    sweep.write("pretrain")
    for i, run in enumerate(sweep.runs, 1):
        size, cfg = run.config.model.zoo_size, run.config.pretrain
        if is_finished(run.run_dir):
            run.record.update(status="finished", skipped=True, **json.loads((run.run_dir / "summary.json").read_text()))
            log(f"sweep: [{i}/{len(sweep.runs)}] {run.name}: recorded earlier; skipped")
            continue
        cached = (zoo_dir(cfg.cache_dir, size, cfg.seed, settings_tag(size, cfg)) / "done.json").is_file()
        log(f"sweep: [{i}/{len(sweep.runs)}] {run.name}: zoo {size}, {cfg.steps} pre-training steps, seed {cfg.seed}"
            + (" (in the cache)" if cached else ""))
        run.record.update(status="running", started=datetime.now().isoformat(timespec="seconds"))
        sweep.write("pretrain")
        with recorded_attempt(sweep, run, "pretrain", log):
            path = pretrain(size, cfg, log=log)
            run.record.update(status="finished", skipped=False, **write_record(run, path, reused=cached))
    return [r for r in sweep.runs if r.record["status"] == "failed"]
