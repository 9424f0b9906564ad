"""`rlscale sweep SWEEP.yaml`: one base config x settings x seeds, one run each.

    base: configs/quickstart.yaml      # relative to the sweep file's directory, else to the cwd
    out: runs/sweep_lr                 # the sweep directory (relative to the cwd)
    seeds: [0, 1]
    grid: {algo.lr: [1.0e-4, 3.0e-4]}  # cartesian product of dotted overrides; or instead
    # list: [{algo.loss: grpo}, {algo.loss: dapo, algo.lr: 3.0e-4}]
    overrides: {steps: 20}             # applied to every run, before the setting's own
    task: rl                           # or pretrain: pre-train zoo models instead (sweep_zoo.py)

Every run's config is validated before any run starts. The plan and each run's status
live in OUT/sweep.json; run directories are OUT/<setting>-seed<k>. Runs go seed by seed
(every setting's seed 0 first), so a sweep stopped half-way has seen every setting.
Local runs execute one after another in this process (sweep_jobs.py submits Ray jobs).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ConfigError, RunConfig, load_config
from .modelpath import ModelPathError, check_model_path
from .resume import flat as _flat
from .sweep_state import (SweepError, check_finished_runs, continue_or_move_aside, incomplete_path,  # noqa: F401 (some re-exported)
                          is_finished, mark_finished, move_aside, recorded_attempt, resumable_checkpoint)

# The sweep sets these for each run itself.
PER_RUN_KEYS = ("seed", "name", "run_dir", "sweep_setting")
MAX_NAME = 80  # characters of a run directory name before the seed


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` (no dot) as a string; a sweep file means the number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


class SweepSpec(BaseModel):
    """The sweep file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    base: str = Field(description="the base run config")
    out: str = Field(description="the sweep directory")
    seeds: list[int] = Field([0], min_length=1)
    grid: dict[str, list[Any]] | None = None
    settings_list: list[dict[str, Any]] | None = Field(None, alias="list")
    overrides: dict[str, Any] = Field(default_factory=dict)
    task: Literal["rl", "pretrain"] = Field("rl", description="rl: one RL run each; pretrain: one zoo model each")


def fmt_value(v: Any) -> str:
    """A value as a label shows it: 0.0003, dapo, true, {"a":1}."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def setting_label(overrides: dict[str, Any]) -> str:
    """`algo.loss=dapo, algo.lr=0.0003`; `base` for the base config alone."""
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in overrides.items()) or "base"


def _short_keys(settings: list[dict[str, Any]]) -> dict[str, str]:
    """Each key's last part (lr for algo.lr), unless two keys of the sweep share it."""
    keys = list(dict.fromkeys(k for s in settings for k in s))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def dir_names(settings: list[dict[str, Any]]) -> list[str]:
    """A readable, filesystem-safe directory stem per setting (lr=0.0003, loss=dapo,lr=0.0003),
    unique within the sweep: a long or clashing one gets a short hash of its label."""
    flat = [_flat(s) for s in settings]  # env.kwargs={a: 1} names its entries: a=1
    short = _short_keys(flat)
    names = []
    for s in flat:
        name = ",".join(f"{short[k]}={fmt_value(v)}" for k, v in s.items()) or "base"
        name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", name).strip("._") or "setting"
        if len(name) > MAX_NAME:
            name = f"{name[:MAX_NAME - 13]}-{_hash(setting_label(s))}"
        names.append(name)
    return [f"{n}-{_hash(setting_label(s))}" if names.count(n) > 1 else n for n, s in zip(names, settings)]


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


@dataclass
class SweepRun:
    """One (setting, seed) of the plan, with its validated config and what happened to it."""

    name: str
    setting: str
    seed: int
    overrides: dict[str, Any]
    config: RunConfig
    record: dict = field(default_factory=lambda: {"status": "pending"})

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)

    def to_json(self) -> dict:
        return {"name": self.name, "setting": self.setting, "seed": self.seed, "overrides": self.overrides,
                "run_dir": str(self.run_dir), **self.record}


@dataclass
class Sweep:
    file: Path
    base: Path
    out: Path
    spec: SweepSpec
    runs: list[SweepRun]

    @property
    def plan_file(self) -> Path:
        return self.out / "sweep.json"

    def write(self, mode: str, **extra) -> None:
        """sweep.json, replaced atomically (a reader never sees half of it)."""
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {"sweep_file": str(self.file), "base": str(self.base), "out": str(self.out),
               "seeds": self.spec.seeds, "overrides": self.spec.overrides, "mode": mode, **extra,
               "updated": datetime.now().isoformat(timespec="seconds"), "runs": [r.to_json() for r in self.runs]}
        tmp = self.plan_file.with_name("sweep.json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        os.replace(tmp, self.plan_file)

    def previous_records(self) -> dict[str, dict]:
        """The runs' records from an earlier invocation's sweep.json (job ids, moved-aside attempts)."""
        try:
            return {r["name"]: r for r in json.loads(self.plan_file.read_text())["runs"]}
        except (OSError, ValueError, KeyError, TypeError):
            return {}


def _read_spec(path: Path) -> SweepSpec:
    if not path.is_file():
        raise SweepError(f"sweep file {str(path)!r} not found; pass a YAML file such as "
                         "configs/sweep_quickstart_lr.yaml")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:
        raise SweepError(f"sweep file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {path} must hold a mapping with base, out, seeds and grid or list")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc']) or 'sweep'}: {err['msg']}"
                 + (f" (got {err['input']!r})" if err["type"] != "missing" else "") for err in e.errors()]
        raise SweepError(f"invalid sweep file {path}:\n" + "\n".join(lines)) from None
    problems = []
    if spec.grid is not None and spec.settings_list is not None:
        problems.append("grid, list: give one of them (grid: a product of values; list: the settings themselves)")
    for key, values in (spec.grid or {}).items():
        if not values:
            problems.append(f"grid.{key}: give at least one value, e.g. {key}: [1, 2]")
    if len(set(spec.seeds)) < len(spec.seeds):
        problems.append(f"seeds: {spec.seeds} repeats a seed; each seed runs once per setting")
    entries = [("overrides", spec.overrides), ("grid", spec.grid or {})]
    entries += [(f"list[{i}]", s) for i, s in enumerate(spec.settings_list or [])]
    for where, mapping in entries:
        for key in mapping:
            if key in PER_RUN_KEYS:
                problems.append(f"{where}.{key}: the sweep sets {', '.join(PER_RUN_KEYS)} for each run itself "
                                "(seeds: [...] for the seeds, out: for the directory); remove it")
    if problems:
        raise SweepError(f"invalid sweep file {path}:\n" + "\n".join(f"  {p}" for p in problems))
    return spec


def _settings(spec: SweepSpec) -> list[dict[str, Any]]:
    if spec.grid is not None:
        return [dict(zip(spec.grid, values)) for values in itertools.product(*spec.grid.values())]
    if spec.settings_list is not None:
        return [dict(s) for s in spec.settings_list]
    return [{}]


def resolve_base(sweep_file: Path, base: str) -> Path:
    """The base config: an absolute path as given; a relative one from the sweep file's
    directory if it is there, else from the current directory."""
    p = Path(base).expanduser()
    candidates = [p] if p.is_absolute() else [sweep_file.parent / p, p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SweepError(f"invalid sweep file {sweep_file}:\n  base: {base!r} not found (looked at "
                     f"{', '.join(str(c) for c in dict.fromkeys(candidates))}); give a path relative to the sweep "
                     "file or to the current directory")


def plan_sweep(sweep_file: str | Path, out: str | None = None) -> Sweep:
    """Read and expand the sweep; validate every run's config. Nothing is written."""
    path = Path(sweep_file)
    spec = _read_spec(path)
    base = resolve_base(path, spec.base)
    out_dir = Path(out or spec.out).expanduser().resolve()
    settings = _settings(spec)
    labels = [setting_label(s) for s in settings]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise SweepError(f"invalid sweep file {path}:\n  list[{i}]: repeats list[{labels.index(label)}] "
                             f"({label}); each setting runs once per seed")
    names = dir_names(settings)
    common = list(spec.overrides.items())
    runs, errors = [], {}  # (setting index, message) -> the seeds it applies to
    for seed in spec.seeds:
        for i, (setting, label, stem) in enumerate(zip(settings, labels, names)):
            name = f"{stem}-seed{seed}"
            per_run = [("seed", seed), ("name", name), ("run_dir", str(out_dir / name)), ("sweep_setting", label)]
            if spec.task == "pretrain":
                per_run.append(("pretrain.seed", seed))  # the seed of a pre-training sweep is the zoo model's
            try:
                cfg = load_config(base, updates=[*common, *setting.items(), *per_run])
                if cfg.model.path and spec.task == "pretrain":
                    raise ConfigError(f"model.path={cfg.model.path!r}: a pre-training sweep trains zoo models; "
                                      "set model.path=null and model.zoo_size")
                if cfg.model.path:
                    check_model_path(cfg.model.path)
            except (ConfigError, ModelPathError) as e:
                errors.setdefault((i, str(e)), []).append(seed)
                continue
            runs.append(SweepRun(name, label, seed, setting, cfg))
    if errors:
        where = "list[{}]" if spec.settings_list is not None else "grid setting {}"
        lines = [f"  setting {labels[i]} ({where.format(i)}, seed{'s' if len(seeds) > 1 else ''} "
                 f"{', '.join(map(str, seeds))}): " + message.replace("\n", "\n  ")
                 for (i, message), seeds in errors.items()]
        raise SweepError(f"invalid sweep {path} (base {base}); nothing was run:\n" + "\n".join(lines))
    return Sweep(path.resolve(), base, out_dir, spec, runs)


def plan_lines(sweep: Sweep) -> list[str]:
    """The plan as printed by --dry-run and before a sweep starts."""
    n_settings = len({r.setting for r in sweep.runs})
    lines = [f"sweep {sweep.file}: base {sweep.base}, {n_settings} setting(s) x {len(sweep.spec.seeds)} seed(s) "
             f"= {len(sweep.runs)} runs in {sweep.out}"]
    width = max(len(r.name) for r in sweep.runs)
    previous = sweep.previous_records()
    for r in sweep.runs:
        job = previous.get(r.name, {}).get("job_id") if previous.get(r.name, {}).get("status") == "submitted" else None
        if is_finished(r.run_dir):
            todo = "finished: skip"
        elif job:
            todo = f"job {job} submitted earlier: follow it while it runs (with --ray-address), else run again"
        elif r.run_dir.exists():
            ckpt, why = resumable_checkpoint(r)
            todo = (f"unfinished attempt: {why}" if ckpt else
                    f"unfinished attempt ({why}): move it to {incomplete_path(r.run_dir).name}, run again")
        else:
            todo = "run"
        lines.append(f"  {r.name:<{width}}  seed {r.seed}  {r.setting}  -> {todo}")
    return lines


def run_local(sweep: Sweep, log=print) -> list[SweepRun]:
    """Run the plan one run after another in this process; returns the runs that failed.
    A failed run is recorded (with its error) and the sweep goes on with the next."""
    import ray

    from .orchestrator import Orchestrator
    from .raystart import ray_setup

    previous = sweep.previous_records()
    for run in sweep.runs:
        run.record.update({k: list(previous.get(run.name, {}).get(k, [])) for k in ("moved_aside", "resumed_from")})
    sweep.write("local")
    ours, setup = False, None  # the Ray this sweep started, and what it was started for
    try:
        for i, run in enumerate(sweep.runs, 1):
            if is_finished(run.run_dir):
                mark_finished(run, skipped=True)
                log(f"sweep: [{i}/{len(sweep.runs)}] {run.name}: finished earlier (summary.json); skipped")
                sweep.write("local")
                continue
            ckpt = continue_or_move_aside(run, log)
            if ours and setup != ray_setup(run.config):
                ray.shutdown()  # this run needs another Ray (CPUs, address) than the last one
            if not ray.is_initialized():
                ours, setup = True, ray_setup(run.config)
            log(f"sweep: [{i}/{len(sweep.runs)}] {run.name}: {run.setting}, seed {run.seed}")
            run.record.update(status="running", started=datetime.now().isoformat(timespec="seconds"))
            sweep.write("local")
            # After a failure, the next run starts on a fresh Ray, whatever state this one left.
            with recorded_attempt(sweep, run, "local", log, on_failure=ray.shutdown if ours else None):
                Orchestrator(run.config, log=log).run(resume_from=ckpt)
                mark_finished(run)
                log(f"sweep: {run.name}: final val mean@{run.record['eval_k']} "
                    f"{run.record['final_val_mean_at_k']:.3f} (SE {run.record['final_val_mean_at_k_se']:.3f})")
    finally:
        if ours and ray.is_initialized():
            ray.shutdown()
    return [r for r in sweep.runs if r.record["status"] == "failed"]
