"""The gymnasium ids of rlscale's environments, and a checked way to build one by id."""

from __future__ import annotations

from typing import Any

import gymnasium

ARITH_ENV_ID = "rlscale/Arith-v0"
REASONING_GYM_ENV_ID = "rlscale/ReasoningGym-v0"
MATH_JSONL_ENV_ID = "rlscale/MathJSONL-v0"
MIX_ENV_ID = "rlscale/Mix-v0"

ENTRY_POINTS = {
    ARITH_ENV_ID: "rlscale_envs.math_env:MathEnv",
    REASONING_GYM_ENV_ID: "rlscale_envs.reasoning_gym_env:ReasoningGymEnv",
    MATH_JSONL_ENV_ID: "rlscale_envs.jsonl_math:MathJSONLEnv",
    MIX_ENV_ID: "rlscale_envs.mix:MixEnv",
}


def register(entry_points: dict[str, str]) -> None:
    """Register each id with gymnasium. Idempotent, so re-importing (e.g. after
    importlib.reload) does not re-register."""
    for env_id, entry_point in entry_points.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)


def rlscale_env_ids() -> list[str]:
    return sorted(k for k in gymnasium.registry if k.startswith("rlscale/"))


class UnknownEnvError(ValueError):
    pass


def make_text_env(env_id: Any, kwargs: dict | None = None, split: str | None = None):
    """``gymnasium.make(env_id, **kwargs)`` (with ``split`` when given), unwrapped to the
    TextEnv. An unknown id lists the registered rlscale ids; a bad kwargs mapping says so.
    Constructor errors pass through unchanged: they already name the bad argument."""
    if not isinstance(env_id, str) or env_id not in gymnasium.registry:
        raise UnknownEnvError(f"unknown environment id {env_id!r}; registered: {', '.join(rlscale_env_ids())}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"kwargs of {env_id} must be a mapping of constructor arguments, got {kwargs!r}")
    if split is not None:
        kwargs = {**kwargs, "split": split}
    # The passive checker only warns, and would reset() the env to check it.
    return gymnasium.make(env_id, disable_env_checker=True, **kwargs).unwrapped
