"""Procedural code tasks: write ``f`` from input/output examples, checked on hidden cases.

A task is a short pipeline of primitive steps over one of three input kinds:

- ``int``:  ``x = x + 3``, ``x = x % 4``, ``x = abs(x)``, ``x = max(x, -2)``, ...
- ``list``: ``xs = [v * 2 for v in xs]``, ``xs = sorted(xs)``, keep even / odd / > k,
  reverse, take / drop k, prefix sums; possibly ending in ``sum``, ``len``, ``max``...
- ``str``:  reverse, upper, double, every other char, rotate, drop or swap a char, ...

Difficulty = the number of steps (1..6): difficulty 1 (``x = x + 3`` from four
examples) is within reach of very small models, 6 is hard for large ones.

The prompt shows ``n_examples`` input/output pairs; the reward needs those and
``n_hidden`` further cases (hidden from the prompt) to pass with type-strict equality
(returning True where 1 is expected fails). Expected outputs come from the generated
reference function, run here in the environment's process: it is our own code.

Split: a task's identity is its behaviour, the outputs of its function on a fixed
probe set, so two pipelines that compute the same function (x*2 and x+x) share one
split; a task is 'val' iff that fingerprint's hash falls in ``val_fraction``. Problems
are drawn by rejection until one of the env's split turns up: deterministic per seed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .env import CodeEnv
from .problem import CodeProblem, check_val_fraction, split_of

FAMILIES = ("int", "list", "str")
MAX_DIFFICULTY = 6
MAX_ABS_VALUE = 10**6  # beyond this a task is about big numbers, not the pipeline: redraw
MAX_TRIES = 10_000

# name -> (expression over `v` with parameter k, range of k or None)
INT_STEPS = {
    "add": ("{v} + {k}", (1, 9)), "sub": ("{v} - {k}", (1, 9)), "mul": ("{v} * {k}", (2, 5)),
    "floordiv": ("{v} // {k}", (2, 5)), "mod": ("{v} % {k}", (2, 7)), "square": ("{v} * {v}", None),
    "abs": ("abs({v})", None), "neg": ("-{v}", None), "max": ("max({v}, {k})", (-5, 5)),
    "min": ("min({v}, {k})", (-5, 5)),
}
LIST_STEPS = {
    "map": None,  # [<an int step over v> for v in xs]
    "keep_even": ("[v for v in xs if v % 2 == 0]", None), "keep_odd": ("[v for v in xs if v % 2 == 1]", None),
    "keep_gt": ("[v for v in xs if v > {k}]", (-3, 3)), "reverse": ("xs[::-1]", None),
    "sort": ("sorted(xs)", None), "sort_desc": ("sorted(xs, reverse=True)", None),
    "take": ("xs[:{k}]", (1, 3)), "drop": ("xs[{k}:]", (1, 2)),
    "prefix_sums": ("[sum(xs[:i + 1]) for i in range(len(xs))]", None),
}
LIST_REDUCERS = ("sum(xs)", "len(xs)", "max(xs, default=0)", "min(xs, default=0)",
                 "sum(1 for v in xs if v % 2 == 0)")
ALPHABET = "abcdef"
STR_STEPS = {
    "reverse": ("s[::-1]", None), "upper": ("s.upper()", None), "double": ("s + s", None),
    "every_other": ("s[::2]", None), "rotate": ("s[{k}:] + s[:{k}]", (1, 2)), "first": ("s[:{k}]", (2, 4)),
    "drop_char": ("s.replace({c!r}, '')", None), "swap_char": ("s.replace({c!r}, {d!r})", None),
    "sort_chars": ("''.join(sorted(s))", None), "dedupe": ("''.join(dict.fromkeys(s))", None),
}
PROBES = {
    "int": tuple(range(-12, 13)),
    "list": ([], [0], [5], [-3], [1, 2], [2, -1], [3, 3, 1], [-4, 0, 4], [1, 2, 3, 4], [7, -2, 5, 0, -6],
             [9, 8, 7, 6, 5, 4], [-1, -3, 2, 8, 0, 5, 5]),
    "str": ("a", "ab", "ba", "abc", "cab", "aabb", "fedcba", "abcdef", "face", "decaf", "bead", "ffaacc"),
}
KIND_TEXT = {"int": "integers", "list": "lists of integers", "str": "strings of the letters a-f"}
PARAM = {"int": "x", "list": "xs", "str": "s"}


def _param(rng: np.random.Generator, bounds) -> int | None:
    return None if bounds is None else int(rng.integers(bounds[0], bounds[1] + 1))


def _int_expr(rng: np.random.Generator, var: str) -> str:
    name = sorted(INT_STEPS)[int(rng.integers(len(INT_STEPS)))]
    template, bounds = INT_STEPS[name]
    return template.format(v=var, k=_param(rng, bounds))


def draw_steps(rng: np.random.Generator, family: str, difficulty: int) -> list[str]:
    """The body lines of ``f``: ``difficulty`` steps, then the return."""
    var = PARAM[family]
    lines = []
    for step in range(difficulty):
        last = step == difficulty - 1
        if family == "int":
            lines.append(f"x = {_int_expr(rng, 'x')}")
        elif family == "list":
            if last and difficulty > 1 and rng.random() < 0.5:
                return lines + [f"return {LIST_REDUCERS[int(rng.integers(len(LIST_REDUCERS)))]}"]
            name = sorted(LIST_STEPS)[int(rng.integers(len(LIST_STEPS)))]
            if name == "map":
                lines.append(f"xs = [{_int_expr(rng, 'v')} for v in xs]")
            else:
                template, bounds = LIST_STEPS[name]
                lines.append("xs = " + template.format(k=_param(rng, bounds)))
        else:
            name = sorted(STR_STEPS)[int(rng.integers(len(STR_STEPS)))]
            template, bounds = STR_STEPS[name]
            c, d = rng.choice(list(ALPHABET), size=2, replace=False)
            lines.append("s = " + template.format(k=_param(rng, bounds), c=str(c), d=str(d)))
    return lines + [f"return {var}"]


def draw_input(rng: np.random.Generator, family: str):
    if family == "int":
        return int(rng.integers(-20, 21))
    if family == "list":
        return [int(v) for v in rng.integers(-9, 10, size=int(rng.integers(0, 7)))]
    return "".join(rng.choice(list(ALPHABET), size=int(rng.integers(2, 8))))


def _too_big(value) -> bool:
    if isinstance(value, int):
        return abs(value) > MAX_ABS_VALUE
    if isinstance(value, list):
        return len(value) > 16 or any(_too_big(v) for v in value)
    return len(value) > 40


def reference_function(family: str, lines: list[str]) -> tuple[str, Any]:
    source = f"def f({PARAM[family]}):\n" + "".join(f"    {line}\n" for line in lines)
    namespace: dict = {}
    exec(compile(source, "<procedural reference>", "exec"), namespace)  # our own generated code
    return source, namespace["f"]


class ProceduralCodeEnv(CodeEnv):
    def __init__(self, split: str = "train", min_difficulty: int = 1, max_difficulty: int = 3,
                 families: tuple[str, ...] | list[str] = FAMILIES, n_examples: int = 4, n_hidden: int = 6,
                 val_fraction: float = 0.2, **kwargs):
        super().__init__(split, **kwargs)
        for name, value in (("min_difficulty", min_difficulty), ("max_difficulty", max_difficulty),
                            ("n_examples", n_examples), ("n_hidden", n_hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not min_difficulty <= max_difficulty <= MAX_DIFFICULTY:
            raise ValueError(f"need 1 <= min_difficulty <= max_difficulty <= {MAX_DIFFICULTY}, "
                             f"got {min_difficulty} and {max_difficulty}")
        families = (families,) if isinstance(families, str) else tuple(families)
        if not families or any(f not in FAMILIES for f in families):
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {families!r}")
        self.min_difficulty, self.max_difficulty = min_difficulty, max_difficulty
        self.families, self.n_examples, self.n_hidden = families, n_examples, n_hidden
        self.val_fraction = check_val_fraction(val_fraction)

    def sample_problem(self, rng: np.random.Generator) -> CodeProblem:
        for _ in range(MAX_TRIES):
            family = self.families[int(rng.integers(len(self.families)))]
            difficulty = int(rng.integers(self.min_difficulty, self.max_difficulty + 1))
            source, f = reference_function(family, draw_steps(rng, family, difficulty))
            outputs = [f(list(x) if isinstance(x, list) else x) for x in PROBES[family]]
            if len(set(map(repr, outputs))) < 3 or outputs == list(PROBES[family]) or any(map(_too_big, outputs)):
                continue  # (nearly) constant, the identity, or huge: not a task worth learning
            fingerprint = hashlib.sha256(f"{family}:{outputs!r}".encode()).hexdigest()
            if split_of(fingerprint, self.val_fraction) != self.split:
                continue
            return self._build_problem(rng, family, difficulty, source, f, fingerprint)
        raise RuntimeError(f"no {self.split} task found in {MAX_TRIES} draws; widen the difficulty range")

    def _build_problem(self, rng, family, difficulty, source, f, fingerprint) -> CodeProblem:
        inputs: list = []
        for _ in range(200 * (self.n_examples + self.n_hidden)):
            x = draw_input(rng, family)
            if x not in inputs and not _too_big(f(list(x) if isinstance(x, list) else x)):
                inputs.append(x)
            if len(inputs) == self.n_examples + self.n_hidden:
                break
        cases = [(x, f(list(x) if isinstance(x, list) else x)) for x in inputs]
        shown = "\n".join(f"f({x!r}) == {y!r}" for x, y in cases[:self.n_examples])
        prompt = (f"Write a Python function f({PARAM[family]}) that gives these results:\n{shown}\n"
                  f"It must also be right on other {KIND_TEXT[family]}.\n")
        return CodeProblem(
            task_id=f"procedural/{family}/{fingerprint[:16]}",
            prompt=prompt,
            entry_point="f",
            tests=tuple(f"assert _rlscale_same(f({x!r}), {y!r})" for x, y in cases),
            labels=tuple(f"f({x!r})" for x, _ in cases),
            reference=source,
            difficulty=difficulty,
        )
