"""Resolve the policy's starting checkpoint: a user's HF model, or a zoo base model."""

from __future__ import annotations

import json
from pathlib import Path

from .config import RunConfig


class ModelPathError(ValueError):
    """model.path does not point at a loadable causal LM."""


def looks_local(path: str) -> bool:
    """A model.path that names a local directory; anything else is tried as a hub id."""
    return Path(path).expanduser().exists() or path.startswith((".", "/", "~")) or path.count("/") > 1


def check_local_checkpoint(path: str) -> Path:
    """A local model.path must be a directory holding config.json (a HF checkpoint)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelPathError(f"model.path={path!r} does not exist; point it at a Hugging Face checkpoint "
                             "directory (with config.json) or set model.path=null to use the zoo")
    if not (p / "config.json").is_file():
        raise ModelPathError(f"model.path={path!r} has no config.json; it must be a Hugging Face "
                             "checkpoint directory saved with save_pretrained()")
    return p


def check_model_path(path: str) -> Path | str:
    """A local directory must hold a HF checkpoint; anything else is tried as a hub id."""
    target: Path | str = check_local_checkpoint(path).resolve() if looks_local(path) else path
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(target))
    except Exception as e:  # noqa: BLE001  (any failure here means the same thing to the user)
        raise ModelPathError(f"model.path={path!r} could not be loaded as a Hugging Face model config: "
                             f"{type(e).__name__}: {e}. Without network access, use a local directory.") from None
    archs = getattr(cfg, "architectures", None) or []
    if archs and not any(a.endswith("ForCausalLM") for a in archs):
        raise ModelPathError(f"model.path={path!r} is a {archs[0]}, not a causal LM (*ForCausalLM)")
    return target


def resolve_model(cfg: RunConfig, log=print) -> tuple[Path | str, dict]:
    if cfg.model.path:
        return check_model_path(cfg.model.path), {"source": "path"}
    from .pretrain import pretrain  # only the zoo needs the pre-training code

    path = pretrain(cfg.model.zoo_size, cfg.pretrain, log=log)
    info = {"source": "zoo", "zoo_size": cfg.model.zoo_size}
    base_eval = path / "base_eval.json"
    if base_eval.is_file():
        info["base_eval"] = json.loads(base_eval.read_text())
    return path, info
