"""Read run directories and zoo checkpoints into pandas DataFrames.

Only the files are read (config.yaml, run.json, metrics.jsonl, summary.json; a zoo
checkpoint's pretrain_metrics.jsonl and base_eval.json), never rlscale's training code, so
analysis works on logs copied from any machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

# Which config keys do not define the experiment (runs that differ only in them are seeds
# of one setting) is the run's own record: run.json's non_experiment_keys, written from
# the marks in rlscale/config.py (analysis reads files only, never the config code). Run
# directories from before that record existed fall back to this list: every config field
# except these counts, so such runs pool only when everything else (steps included) agrees.
FALLBACK_NON_EXPERIMENT_KEYS = ("name", "seed", "run_dir")
# `rlscale sweep` moves a killed attempt aside to <run>.incomplete-<k> before running it
# again; it is not a run of its own.
INCOMPLETE_SUFFIX = re.compile(r"\.incomplete-\d+$")


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


def _sweep_runs(sweep_dir: Path) -> list[Path]:
    """The run directories a sweep planned (sweep.json), those that have logged a step."""
    try:
        plan = json.loads((sweep_dir / "sweep.json").read_text())
        names = [r["name"] for r in plan["runs"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RunDirError(f"{sweep_dir / 'sweep.json'} is damaged ({e}); rewrite it with "
                          f"`rlscale sweep <sweep file> --dry-run`, or pass the run directories themselves") from None
    return [sweep_dir / n for n in names if (sweep_dir / n / "metrics.jsonl").is_file()]


def split_zoo_paths(paths) -> tuple[list[Path], list[Path]]:
    """(run paths, zoo checkpoints) among the paths given to `rlscale analyze`: a zoo
    checkpoint (holds pretrain_metrics.jsonl), or a pre-training sweep's directory (its
    sweep.json says task: pretrain; its records are zoo checkpoints), goes to the second."""
    runs, zoo = [], []
    for raw in paths:
        p = Path(raw).expanduser()
        if (p / "pretrain_metrics.jsonl").is_file():
            zoo.append(p)
            continue
        try:
            plan = json.loads((p / "sweep.json").read_text())
        except (OSError, ValueError):
            plan = None
        if isinstance(plan, dict) and plan.get("mode") == "pretrain":
            records = [p / r["name"] for r in plan.get("runs", []) if (p / r["name"] / "pretrain_metrics.jsonl").is_file()]
            if not records:
                raise RunDirError(f"{p}: a pre-training sweep with no finished model yet; run `rlscale sweep` on its "
                                  "sweep file first")
            zoo.extend(records)
            continue
        runs.append(p)
    return runs, zoo


def expand_run_paths(paths) -> list[Path]:
    """Each path is a run directory, or a directory of run directories (e.g. runs/, or a
    sweep's directory: then the runs its sweep.json lists)."""
    out = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise RunDirError(f"{p}: no such directory. Pass the run directory that `rlscale run` printed.")
        if (p / "metrics.jsonl").is_file():
            out.append(p)
            continue
        if (p / "sweep.json").is_file():
            children = _sweep_runs(p)
        elif p.is_dir():
            children = sorted(c for c in p.iterdir() if (c / "metrics.jsonl").is_file()
                              and not INCOMPLETE_SUFFIX.search(c.name))
        else:
            children = []
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
    config = flatten(yaml.safe_load((p / "config.yaml").read_text()) or {}) if (p / "config.yaml").is_file() else {}
    # The directory read, not the config's run_dir (null for a default one, or where the run was written).
    meta: dict = {**config, "run": p.name, "run_dir": str(p)}
    non_experiment = FALLBACK_NON_EXPERIMENT_KEYS
    if (p / "run.json").is_file():
        info = json.loads((p / "run.json").read_text())
        info.pop("command", None)
        info.pop("packages", None)
        non_experiment = tuple(info.pop("non_experiment_keys", None) or FALLBACK_NON_EXPERIMENT_KEYS)
        meta.update(flatten(info, "run."))
    if (p / "summary.json").is_file():
        meta.update(flatten(json.loads((p / "summary.json").read_text()), "summary."))
    # The policy's parameter count: the matmul N of rlscale/compute.py when the run logged it.
    meta["n_params"] = meta.get("run.model_shape.n_params", meta.get("run.model.base_eval.n_params"))
    meta["finished"] = (p / "summary.json").is_file()
    # run.json's status (running | finished | failed | interrupted); runs from before it was
    # recorded: finished when they wrote a summary, else unfinished.
    meta["status"] = meta.get("run.status") or ("finished" if meta["finished"] else "unfinished")
    # All constant columns in one go (one insert per key fragments the frame: pandas warns).
    constants = pd.DataFrame({k: [v] * len(df) for k, v in meta.items()}, index=df.index)
    df = pd.concat([df.drop(columns=[k for k in meta if k in df.columns]), constants], axis=1)
    df = df.sort_values("step", kind="stable").reset_index(drop=True)
    # The config columns that define the experiment (a marked section such as `ray`
    # covers every key under it).
    df.attrs["config_columns"] = [c for c in config
                                  if not any(c == k or c.startswith(k + ".") for k in non_experiment)]
    return df


def load_runs(paths) -> pd.DataFrame:
    """Many runs stacked: one row per step per run (see load_run). Adds `setting`, a label
    shared by runs whose configs differ only in non-experiment keys (seed, name, steps, ...:
    each run's run.json lists them), so seeds can be pooled. A sweep's runs are labelled by
    their sweep setting (e.g. `algo.lr=0.0003`), other runs `setting0`, `setting1`, ..."""
    frames = [load_run(p) for p in expand_run_paths(paths)]
    df = pd.concat(frames, ignore_index=True)
    by_path = df.groupby("run")["run_dir"].nunique().max() > 1
    if by_path:
        df["run"] = df["run_dir"]  # two runs share a directory name: tell them apart by path
    keys, sweep_labels = {}, {}
    for frame in frames:
        first = frame.iloc[0]
        run = first["run_dir"] if by_path else first["run"]
        keys[run] = repr(sorted((c, repr(first[c])) for c in frame.attrs["config_columns"]))
        label = first.get("run.sweep_setting")
        if isinstance(label, str) and label:
            sweep_labels.setdefault(keys[run], label)
    labels: dict[str, str] = {}
    for i, key in enumerate(dict.fromkeys(keys.values())):
        label = sweep_labels.get(key, f"setting{i}")
        # Two sweeps analysed together may both hold a setting `algo.lr=0.0003` on other bases.
        labels[key] = f"{label} [setting{i}]" if label in labels.values() else label
    df["setting"] = df["run"].map({run: labels[k] for run, k in keys.items()})
    df.attrs["config_columns"] = list(dict.fromkeys(c for f in frames for c in f.attrs["config_columns"]))
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


def unique_zoo_models(paths) -> list[Path]:
    """Each model once: a pre-training sweep's record (its zoo.json names the checkpoint it
    copied) and that checkpoint in the cache are the same model; the first one given is kept."""
    seen, out = set(), []
    for p in paths:
        try:
            identity = Path(json.loads((p / "zoo.json").read_text())["zoo_dir"]).resolve()
        except (OSError, ValueError, KeyError, TypeError):
            identity = Path(p).resolve()
        if identity not in seen:
            seen.add(identity)
            out.append(p)
    return out


# The losses a zoo model logs (rlscale/pretrain.py), in the order the laws prefer them, each
# with how the report names it.
ZOO_LOSSES = {
    "text_loss": ("source-text loss", "`text_loss`, the loss on passages of held-out Python source files (the "
                  "zoo was pre-trained on arithmetic mixed with source text)"),
    "solution_loss": ("solution-token loss", "`solution_loss`, the loss on the solution tokens of clean held-out "
                      "worked solutions given their prompts"),
    "val_loss": ("validation loss", "`val_loss`, the loss on whole held-out documents, prompts included (these "
                 "models did not log `solution_loss`)"),
}


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
