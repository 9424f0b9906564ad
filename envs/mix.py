"""A weighted mixture of environments (``rlscale/Mix-v0``).

    env:
      id: rlscale/Mix-v0
      kwargs:
        envs:
          - {id: rlscale/Arith-v0, weight: 3, kwargs: {max_operand: 9}}
          - {id: rlscale/ReasoningGym-v0, weight: 1, kwargs: {name: chain_sum}}

Each problem comes from one sub-environment, chosen with probability proportional to
its ``weight`` by the same generator that then draws the sub-problem, so a reset seed
fixes both. Problems are tagged with their sub-environment's ``name`` (default: its
id; ``#<position>`` is appended when an id occurs twice); ``score_many`` hands each
sub-environment its own problems in one call, and ``info["env"]`` names the source.
The reward of a problem is its sub-environment's reward.

Multi-turn: ``max_turns`` is the largest of the children's; feedback is delegated to
the problem's own sub-environment and stops at that sub-environment's ``max_turns``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .base import TextEnv
from .registry import make_text_env

ENTRY_KEYS = {"id", "kwargs", "weight", "name"}


@dataclass(frozen=True)
class MixProblem:
    prompt: str
    env: str  # the sub-environment's name
    index: int  # its position in ``envs``
    inner: Any  # the sub-environment's own problem


def _check_entries(envs: Any) -> list[dict]:
    if not isinstance(envs, (list, tuple)) or not envs:
        raise ValueError("rlscale/Mix-v0 needs envs: a non-empty list of {id, kwargs, weight} entries, "
                         f"got {envs!r}")
    entries, names = [], []
    ids = [e.get("id") if isinstance(e, dict) else None for e in envs]
    for i, entry in enumerate(envs):
        where = f"envs[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a mapping with keys id, kwargs, weight; got {entry!r}")
        unknown = sorted(set(entry) - ENTRY_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(ENTRY_KEYS)}")
        if "id" not in entry:
            raise ValueError(f"{where}: missing 'id' (an environment id such as rlscale/Arith-v0)")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"{where}.weight must be a finite number > 0, got {weight!r}")
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"{where}.kwargs must be a mapping of constructor arguments, got {kwargs!r}")
        if "split" in kwargs:
            raise ValueError(f"{where}.kwargs must not set split: the mixture passes its own split to every child")
        name = entry.get("name") or (entry["id"] if ids.count(entry["id"]) == 1 else f"{entry['id']}#{i}")
        if not isinstance(name, str) or name in names:
            raise ValueError(f"{where}.name {name!r} must be a string unique within envs")
        names.append(name)
        entries.append({"id": entry["id"], "kwargs": kwargs, "weight": float(weight), "name": name})
    return entries


class MixEnv(TextEnv):
    def __init__(self, split: str = "train", envs: list | None = None):
        entries = _check_entries(envs)
        self.children: list[TextEnv] = []
        try:
            for i, e in enumerate(entries):
                try:
                    self.children.append(make_text_env(e["id"], e["kwargs"], split))
                except (ValueError, TypeError) as err:  # bad id or kwargs: say which entry
                    raise ValueError(f"envs[{i}] ({e['id']}): {err}") from err
        except BaseException:
            for child in self.children:
                child.close()
            raise
        super().__init__(split, max(c.max_completion_chars for c in self.children),
                         max(c.observation_space.max_length for c in self.children))
        self.names = [e["name"] for e in entries]
        weights = np.array([e["weight"] for e in entries])
        self.probs = weights / weights.sum()
        self.max_turns = max(c.max_turns for c in self.children)

    def distinct_problems_at_most(self) -> int | None:
        bounds = [c.distinct_problems_at_most() for c in self.children]
        return None if None in bounds else sum(bounds)  # a prompt two children share counts twice: still a bound

    def sample_problem(self, rng: np.random.Generator) -> MixProblem:
        i = int(rng.choice(len(self.children), p=self.probs))
        inner = self.children[i].sample_problem(rng)
        return MixProblem(inner.prompt, self.names[i], i, inner)

    def _child_of(self, problem: Any) -> TextEnv:
        if not isinstance(problem, MixProblem):
            raise TypeError(f"rlscale/Mix-v0 scores MixProblem objects (from its own reset), got {type(problem)!r}")
        if not 0 <= problem.index < len(self.children) or self.names[problem.index] != problem.env:
            raise ValueError(f"problem from sub-environment {problem.env!r} does not belong to this mixture "
                             f"({', '.join(self.names)})")
        return self.children[problem.index]

    def problem_info(self, problem: MixProblem) -> dict[str, Any]:
        return {**self._child_of(problem).problem_info(problem.inner), "env": problem.env}

    def score_many(self, problems: Sequence[MixProblem], completions: Sequence[str]):
        if len(problems) != len(completions):
            raise ValueError(f"got {len(problems)} problems but {len(completions)} completions")
        groups: dict[int, list[int]] = {}
        for pos, p in enumerate(problems):
            self._child_of(p)
            groups.setdefault(p.index, []).append(pos)
        results: list = [None] * len(problems)
        for i, positions in groups.items():
            scored = self.children[i].score_many([problems[p].inner for p in positions],
                                                 [completions[p] for p in positions])
            for pos, (reward, info) in zip(positions, scored):
                results[pos] = (reward, {**info, "env": self.names[i]})
        return results

    def feedback(self, problem: MixProblem, completion: str, reward: float, info: dict, turn: int) -> str | None:
        child = self._child_of(problem)
        if turn + 1 >= child.max_turns:
            return None  # this child's episodes are over, however long others' run
        return child.feedback(problem.inner, completion, reward, info, turn)

    def close(self) -> None:
        for child in self.children:
            child.close()
        super().close()

