"""Read run directories and zoo checkpoints into pandas DataFrames.

Only the files are read (config.yaml, run.json, metrics.jsonl, summary.json; a zoo
checkpoint's pretrain_metrics.jsonl and base_eval.json), never rlscale's training code, so
analysis works on logs copied from any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

# Fields that differ between otherwise identical runs without changing the experiment:
# runs whose config agrees on everything else are seeds of one setting.
# `steps` is here too: a longer run of the same setting just covers more of the same curve.
NON_EXPERIMENT_KEYS = ("name", "seed", "run_dir", "steps", "progress", "samples_per_step", "pretrain.cache_dir",
                       "eval.at_start", "ray.address", "ray.num_cpus", "ray.use_gpu")


class RunDirError(ValueError):
    """A path given to the analysis is not a usable run (or zoo) directory."""


def flatten(d: dict, prefix: str = "") -> dict:
    """{'algo': {'lr': 1e-3}} -> {'algo.lr': 1e-3}; lists become tuples so columns stay hashable."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v
    return out


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):  # a run still writing: its last line may be cut off mid-write
                break
            raise RunDirError(f"{path}:{i}: not valid JSON ({e.msg}); the file is damaged") from None
    return rows


def expand_run_paths(paths) -> list[Path]:
    """Each path is a run directory, or a directory of run directories (e.g. runs/)."""
    out = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise RunDirError(f"{p}: no such directory. Pass the run directory that `rlscale run` printed.")
        if (p / "metrics.jsonl").is_file():
            out.append(p)
            continue
        children = sorted(c for c in p.iterdir() if (c / "metrics.jsonl").is_file()) if p.is_dir() else []
        if not children:
            raise RunDirError(f"{p}: not a run directory (no metrics.jsonl) and holds none. A run directory "
                              "holds config.yaml, run.json and metrics.jsonl; pass the one `rlscale run` printed.")
        out.extend(children)
    return out


def load_run(path: str | Path) -> pd.DataFrame:
    """One run: a row per logged step, with `run`, `run_dir`, the metrics, the config as dotted
    columns (`algo.lr`, `rollout.group_size`, ...) and run.json facts as `run.*` columns."""
    p = Path(path)
    rows = _read_jsonl(p / "metrics.jsonl")
    if not rows:
        raise RunDirError(f"{p / 'metrics.jsonl'} is empty: the run has not logged a step yet. "
                          "Wait for its first evaluation (step 0) or pick a finished run.")
    df = pd.DataFrame(rows)
    meta: dict = {"run": p.name, "run_dir": str(p)}
    config = flatten(yaml.safe_load((p / "config.yaml").read_text()) or {}) if (p / "config.yaml").is_file() else {}
    meta.update(config)
    if (p / "run.json").is_file():
        info = json.loads((p / "run.json").read_text())
        info.pop("command", None)
        info.pop("packages", None)
        meta.update(flatten(info, "run."))
    if (p / "summary.json").is_file():
        meta.update(flatten(json.loads((p / "summary.json").read_text()), "summary."))
    # The policy's parameter count: the matmul N of rlscale/compute.py when the run logged it.
    meta["n_params"] = meta.get("run.model_shape.n_params", meta.get("run.model.base_eval.n_params"))
    meta["finished"] = (p / "summary.json").is_file()
    for k, v in meta.items():
        df[k] = [v] * len(df)
    df = df.sort_values("step", kind="stable").reset_index(drop=True)
    df.attrs["config_columns"] = list(config)
    return df


def load_runs(paths) -> pd.DataFrame:
    """Many runs stacked: one row per step per run (see load_run). Adds `setting`, a label
    shared by runs whose configs differ only in seed/name/run_dir, so seeds can be pooled."""
    frames = [load_run(p) for p in expand_run_paths(paths)]
    config_cols = list(dict.fromkeys(c for f in frames for c in f.attrs["config_columns"]
                                     if c not in NON_EXPERIMENT_KEYS and not c.startswith("ray.")))
    df = pd.concat(frames, ignore_index=True)
    if df["run"].duplicated().any() and df.groupby("run")["run_dir"].nunique().max() > 1:
        df["run"] = df["run_dir"]  # two runs share a directory name: tell them apart by path
    first_rows = df.drop_duplicates("run")
    keys = {run: repr([row.get(c) for c in config_cols]) for run, row in zip(first_rows["run"],
                                                                           first_rows.to_dict("records"))}
    labels = {k: f"setting{i}" for i, k in enumerate(dict.fromkeys(keys.values()))}
    df["setting"] = df["run"].map({run: labels[k] for run, k in keys.items()})
    df.attrs["config_columns"] = config_cols
    return df


def expand_zoo_paths(paths) -> list[Path]:
    """Each path is a zoo checkpoint (holds pretrain_metrics.jsonl) or a directory of them
    (e.g. ~/.cache/rlscale/zoo). Unfinished checkpoints (*.tmp) are skipped."""
    out = []
    for raw in paths:
        p = Path(raw).expanduser()
        if (p / "pretrain_metrics.jsonl").is_file():
            out.append(p)
            continue
        children = sorted(c for c in p.iterdir() if (c / "pretrain_metrics.jsonl").is_file()
                          and not c.name.endswith(".tmp")) if p.is_dir() else []
        if not children:
            raise RunDirError(f"{p}: not a zoo checkpoint (no pretrain_metrics.jsonl) and holds none. "
                              "Pass a directory printed by `rlscale pretrain`, or ~/.cache/rlscale/zoo.")
        out.extend(children)
    return list(dict.fromkeys(out))


def load_zoo(paths) -> pd.DataFrame:
    """Zoo pre-training curves: one row per logged pre-training step per checkpoint, with
    `model` (the checkpoint's directory name), `size`, `final` (True on its last row) and the
    base evaluation (`heldout_accuracy_greedy`, `heldout_accuracy_sampled`) as columns."""
    frames = []
    for p in expand_zoo_paths(paths):
        rows = _read_jsonl(p / "pretrain_metrics.jsonl")
        if not rows:
            raise RunDirError(f"{p / 'pretrain_metrics.jsonl'} is empty; re-run `rlscale pretrain` for it.")
        df = pd.DataFrame(rows).sort_values("step").reset_index(drop=True)
        info = json.loads((p / "base_eval.json").read_text()) if (p / "base_eval.json").is_file() else {}
        df["model"], df["zoo_dir"] = p.name, str(p)
        df["size"] = info.get("size", p.name.split("-")[0])
        df["seed"] = info.get("settings", {}).get("seed")
        for key in ("heldout_accuracy_greedy", "heldout_accuracy_sampled", "final_val_loss"):
            df[key] = info.get(key)
        df["final"] = df.index == len(df) - 1
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
