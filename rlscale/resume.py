"""`rlscale run --resume RUN_DIR`: what may change when a run continues, and where it continues from.

A resumed run continues from its newest complete checkpoint (rlscale/checkpoint.py): the
logs are cut back to that step, the learner gets its exact state back, the engines its
weights, the prompt sampler its RNG. Its config is the run's own config.yaml with the
given overrides; only keys that do not change what the run computes may differ (`steps`,
to extend a run; logging; where it runs; checkpointing). Anything else is refused with the
keys named: a run that changed its learning rate half-way is not the run its logs describe.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import LoopState, latest_checkpoint, read_loop_state
from .config import ConfigError, RunConfig, load_config

# Top-level keys (or sections) a resumed run may change.
MAY_CHANGE = ("steps", "progress", "samples_per_step", "checkpoint", "ray", "run_dir", "logging")


def flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; an empty mapping stays a value."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_config(run_dir: Path, config_path: str | None, overrides: list[str]) -> RunConfig:
    """The config to continue RUN_DIR with: config_path (default: the run's config.yaml) plus
    overrides, checked against the config the run started with."""
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; pass the run directory `rlscale run` printed")
    saved = load_config(saved_path, [])
    cfg = load_config(config_path or saved_path, [*overrides, f"run_dir={run_dir}"])
    changed = config_changes(saved, cfg)
    if changed:
        shown = ", ".join(changed[:8])
        raise ConfigError(f"--resume {run_dir}: these keys differ from the run's config.yaml and cannot change "
                          f"mid-run: {shown}{' ...' if len(changed) > 8 else ''}. Only "
                          f"{', '.join(MAY_CHANGE)} may change; start a new run for the rest.")
    return cfg


def config_changes(saved: RunConfig, cfg: RunConfig) -> list[str]:
    """`key: old -> new` for each key that differs and may not change mid-run."""
    old, new = flat(saved.model_dump()), flat(cfg.model_dump())
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k) and k.split(".")[0] not in MAY_CHANGE]


def checkpoint_to_resume(run_dir: Path, cfg: RunConfig) -> tuple[Path, LoopState]:
    """The newest complete checkpoint of RUN_DIR and its loop state."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"--resume {run_dir}: the run has no complete checkpoint to continue from (checkpoints "
                          "are written every checkpoint.every steps and at the end); start it again instead")
    state = read_loop_state(ckpt)
    if state.step >= cfg.steps:
        raise ConfigError(f"--resume {run_dir}: its newest checkpoint is at step {state.step} and steps={cfg.steps}; "
                          f"pass steps=N with N > {state.step} to extend the run")
    return ckpt, state
