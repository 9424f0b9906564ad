"""Config errors worded for the person who wrote the config: each names its field, the
value and the fix (config.py raises them as ConfigError)."""

from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from .algos.settings import VARIANT_FIELDS


def env_kwarg_hint(env) -> str:
    """"; did you mean ...?" for env.kwargs keys the env's constructor does not take."""
    from .preflight import unknown_env_kwargs

    return "".join(f"; env.kwargs.{key}: did you mean '{hint}'?" if hint else f"; env.kwargs.{key}: unknown"
                   for key, hint in unknown_env_kwargs(env.id, env.kwargs).items())


# Keys that moved into a recipe variant, with where they live now.
MOVED_KEYS = {
    "algo.clip_eps": "algo.loss.clip_eps (a setting of loss grpo, dr_grpo and ppo)",
    "algo.adv_std_normalize": "algo.advantage (group_norm divides by the std, group_mean does not)",
    "algo.loss_agg_mode": "algo.aggregation",
}


def _variants(annotation: Any) -> dict[str, type[BaseModel]]:
    """The members of a discriminated union annotation, by their `name` tag."""
    members = typing.get_args(typing.get_args(annotation)[0]) if typing.get_origin(annotation) is Annotated else ()
    return {m.model_fields["name"].default: m for m in members if isinstance(m, type) and "name" in m.model_fields}


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at loc[:-1]: walks nested models and, through a discriminated
    union, the variant named by the tag pydantic puts in the location."""
    parent: Any = model
    parts = list(loc[:-1])
    while parts and isinstance(parent, type) and issubclass(parent, BaseModel):
        field = parent.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        variants = _variants(field.annotation) or _variants(Annotated[field.annotation, None])
        if variants and parts and parts[0] in variants:
            parent = variants[parts.pop(0)]
        else:
            parent = field.annotation
    return list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []


def describe(err: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        # pydantic puts a union member's tag in the path (algo.loss.grpo.clip_eps); the
        # user wrote algo.loss.clip_eps.
        field = ".".join(str(p) for i, p in enumerate(loc) if not (i and loc[i - 1] in VARIANT_FIELDS))
        if e["type"] == "extra_forbidden":
            key, shown = str(loc[-1]), field
            if shown in MOVED_KEYS:
                lines.append(f"  {shown}: this key moved to {MOVED_KEYS[shown]}")
                continue
            known = _known_keys(model, loc)
            hint = difflib.get_close_matches(key, known, n=1)
            tip = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(known)}"
            lines.append(f"  {shown}: unknown key{tip}")
        elif e["type"] == "value_error":
            # Cross-field checks: each message line names its fields; the input is a whole mapping.
            lines += [f"  {line}" for line in e["msg"].removeprefix("Value error, ").splitlines()]
        elif e["type"] == "union_tag_not_found":
            lines.append(f"  {field}: name the variant first, e.g. {field}=<name> then {field}.<setting>=...; "
                         f"{e['msg']}")
        else:
            # A whole section as the input (a model-level check) would dump the config.
            got = "" if isinstance(e.get("input"), dict) else f" (got {e.get('input')!r})"
            lines.append(f"  {field or 'config'}: {e['msg'].removeprefix('Assertion failed, ')}{got}")
    return "invalid config:\n" + "\n".join(lines)


def inherited_kwargs_hint(base: dict, pairs: list, env, path) -> str:
    """When an override switched env.id, env.kwargs keys kept from the file (written for the
    old env) are the likely culprit: a dotted env.kwargs.x override edits that mapping."""
    old = base.get("env") if isinstance(base.get("env"), dict) else {}
    keys = {k for k, _ in pairs}
    if "env.id" not in keys or old.get("id") == env.id or "env.kwargs" in keys:
        return ""
    kept = [k for k in (old.get("kwargs") or {}) if f"env.kwargs.{k}" not in keys]
    if not kept:
        return ""
    own = {k.removeprefix("env.kwargs."): v for k, v in pairs if k.startswith("env.kwargs.")}
    mapping = "{" + ", ".join(f"{k}: {v}" for k, v in own.items()) + "}"
    return (f"\n  env.kwargs: {', '.join(kept)} came from {path}, written for {old.get('id')}; overriding env.id "
            f"keeps them (a dotted env.kwargs.x override edits one entry). Give the new env its whole mapping "
            f"instead: 'env.kwargs={mapping}' (env.kwargs={{}} for its defaults)")
