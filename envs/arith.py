"""Procedurally generated integer arithmetic with a difficulty knob.

A problem is a chain of ``+`` and ``-`` applied left to right, e.g. ``37+45-12``.

Difficulty ``d`` (1..6):
  * the expression has ``d + 1`` operands, so ``d`` binary steps;
  * operands are non-negative integers of up to 2 digits (0..99) for ``d <= 3``
    and up to 3 digits (0..999) for ``d >= 4``, unless ``max_operand`` caps them
    (``max_operand=9``: single digits, a task the tiniest zoo model can learn).
Intermediate and final results may be negative (``5-9=-4``).

The prompt is ``"Q: {expression}\\nA: "``. The worked solution (what a perfect
model writes) has one line per binary step, then the boxed answer::

    37+45=82
    82-12=70
    \\boxed{70}

Train and validation never overlap, for any seed: a problem's split is a pure
function of its expression string (a stable blake2b hash; 10% go to "val").
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

import numpy as np

from .base import SPLITS

MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 6
VAL_FRACTION_PER_MILLE = 100  # 10% of expressions are validation-only
MAX_SLOPPY_OFFSET = 10

_TOKEN_RE = re.compile(r"(\d+)|([+-])")


def max_operand(difficulty: int) -> int:
    """Largest operand used at this difficulty (2 digits up to d=3, then 3 digits)."""
    _check_difficulty(difficulty)
    return 99 if difficulty <= 3 else 999


def split_of(expression: str) -> str:
    """"train" or "val", decided by a stable hash of the expression alone."""
    digest = hashlib.blake2b(
        expression.encode("utf-8"), digest_size=8, person=b"rlscale-split"
    ).digest()
    bucket = int.from_bytes(digest, "big") % 1000
    return "val" if bucket < VAL_FRACTION_PER_MILLE else "train"


def parse_expression(expression: str) -> tuple[list[int], list[str]]:
    """Split ``"37+45-12"`` into operands ``[37, 45, 12]`` and operators ``["+", "-"]``."""
    operands: list[int] = []
    operators: list[str] = []
    pos = 0
    for match in _TOKEN_RE.finditer(expression):
        if match.start() != pos:
            break
        pos = match.end()
        number, op = match.groups()
        expect_number = len(operands) == len(operators)
        if expect_number and number is not None:
            operands.append(int(number))
        elif not expect_number and op is not None:
            operators.append(op)
        else:
            raise ValueError(f"malformed expression {expression!r}")
    if pos != len(expression) or not operators or len(operands) != len(operators) + 1:
        raise ValueError(f"malformed expression {expression!r}")
    return operands, operators


def _apply(left: int, op: str, right: int) -> int:
    return left + right if op == "+" else left - right


@dataclass(frozen=True)
class ArithProblem:
    expression: str
    answer: str
    difficulty: int

    @classmethod
    def from_expression(cls, expression: str) -> "ArithProblem":
        """Build a problem (gold answer and difficulty) from its expression string."""
        operands, operators = parse_expression(expression)
        value = operands[0]
        for op, right in zip(operators, operands[1:]):
            value = _apply(value, op, right)
        return cls(expression=expression, answer=str(value), difficulty=len(operators))

    @property
    def prompt(self) -> str:
        return f"Q: {self.expression}\nA: "

    @property
    def solution(self) -> str:
        return solution_text(self)

    @property
    def num_steps(self) -> int:
        return len(parse_expression(self.expression)[1])


def solution_text(
    problem: ArithProblem,
    wrong_step: int | None = None,
    rng: np.random.Generator | None = None,
) -> str:
    """Worked solution; with ``wrong_step`` (0-based) that step's result is off
    by a nonzero amount in ±1..±10 and the error is carried forward consistently
    (later steps start from the wrong value), so the boxed answer is wrong too.
    Used to build imperfect pre-training corpora. ``rng`` draws the offset
    (a fresh unseeded generator when None)."""
    operands, operators = parse_expression(problem.expression)
    if wrong_step is not None and not 0 <= wrong_step < len(operators):
        raise ValueError(
            f"wrong_step must be in 0..{len(operators) - 1} for {problem.expression!r}, "
            f"got {wrong_step}"
        )
    lines = []
    value = operands[0]
    for step, (op, right) in enumerate(zip(operators, operands[1:])):
        result = _apply(value, op, right)
        if step == wrong_step:
            rng = rng if rng is not None else np.random.default_rng()
            magnitude = int(rng.integers(1, MAX_SLOPPY_OFFSET + 1))
            result += magnitude if rng.random() < 0.5 else -magnitude
        lines.append(f"{value}{op}{right}={result}")
        value = result
    lines.append(f"\\boxed{{{value}}}")
    return "\n".join(lines)


def _check_difficulty(difficulty: int) -> None:
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, np.integer)):
        raise ValueError(f"difficulty must be an int, got {difficulty!r}")
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(
            f"difficulty must be in {MIN_DIFFICULTY}..{MAX_DIFFICULTY}, got {difficulty}"
        )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _check_max_operand(value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"max_operand must be a positive int or None, got {value!r}")


def generate(rng: np.random.Generator, difficulty: int, operand_cap: int | None = None) -> ArithProblem:
    """One random problem at the given difficulty, regardless of split. Operands are
    drawn from 0..min(max_operand(difficulty), operand_cap)."""
    _check_difficulty(difficulty)
    _check_max_operand(operand_cap)
    high = max_operand(difficulty) if operand_cap is None else min(max_operand(difficulty), operand_cap)
    operands = rng.integers(0, high + 1, size=difficulty + 1)
    operators = rng.choice(["+", "-"], size=difficulty)
    expression = str(int(operands[0])) + "".join(
        f"{op}{int(x)}" for op, x in zip(operators, operands[1:])
    )
    return ArithProblem.from_expression(expression)


def _expressions(difficulty: int, high: int):
    """Every expression ``generate`` can produce at this difficulty with operands 0..high."""
    for operands in itertools.product(range(high + 1), repeat=difficulty + 1):
        for operators in itertools.product("+-", repeat=difficulty):
            yield str(operands[0]) + "".join(f"{op}{x}" for op, x in zip(operators, operands[1:]))


class ArithFamily:
    """Problems with difficulty drawn uniformly from [min_difficulty, max_difficulty];
    ``max_operand`` (None = the difficulty's default) caps every operand."""

    # Guards against asking for more distinct problems than a tiny range holds.
    MAX_ATTEMPTS_WITHOUT_PROGRESS = 100_000

    def __init__(self, min_difficulty: int = 1, max_difficulty: int = 3, max_operand: int | None = None):
        _check_difficulty(min_difficulty)
        _check_difficulty(max_difficulty)
        _check_max_operand(max_operand)
        if min_difficulty > max_difficulty:
            raise ValueError(
                f"min_difficulty ({min_difficulty}) must be <= max_difficulty ({max_difficulty})"
            )
        self.min_difficulty = int(min_difficulty)
        self.max_difficulty = int(max_difficulty)
        self.max_operand = None if max_operand is None else int(max_operand)

    def __repr__(self) -> str:
        return (f"ArithFamily(min_difficulty={self.min_difficulty}, max_difficulty={self.max_difficulty}, "
                f"max_operand={self.max_operand})")

    def sample(self, rng: np.random.Generator, split: str) -> ArithProblem:
        """Rejection-sample a problem until its (hash-determined) split matches."""
        _check_split(split)
        while True:
            difficulty = int(rng.integers(self.min_difficulty, self.max_difficulty + 1))
            problem = generate(rng, difficulty, self.max_operand)
            if split_of(problem.expression) == split:
                return problem

    # Up to this many expressions the split's are counted exactly (a hash each, ~0.1 s per 100k).
    EXACT_COUNT_LIMIT = 200_000

    def distinct_at_most(self, split: str) -> int:
        """An upper bound on the distinct problems (expressions) of ``split``: the exact count
        when the space is small, else its expected share plus six binomial standard deviations
        (the split is a hash of the expression: each one lands in val with VAL_FRACTION)."""
        _check_split(split)
        highs = {d: max_operand(d) if self.max_operand is None else min(max_operand(d), self.max_operand)
                 for d in range(self.min_difficulty, self.max_difficulty + 1)}
        total = sum((high + 1) ** (d + 1) * 2 ** d for d, high in highs.items())
        if total <= self.EXACT_COUNT_LIMIT:
            return sum(split_of(e) == split for d, high in highs.items() for e in _expressions(d, high))
        f = VAL_FRACTION_PER_MILLE / 1000 if split == "val" else 1 - VAL_FRACTION_PER_MILLE / 1000
        return int(f * total + 6 * (f * (1 - f) * total) ** 0.5) + 1

    def problems(self, n: int, seed: int, split: str) -> list[ArithProblem]:
        """``n`` problems with distinct expressions, deterministic given (n, seed, split);
        ``problems(n, ...)`` is a prefix of ``problems(n + k, ...)``."""
        _check_split(split)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        out: list[ArithProblem] = []
        attempts_since_new = 0
        while len(out) < n:
            problem = self.sample(rng, split)
            if problem.expression in seen:
                attempts_since_new += 1
                if attempts_since_new > self.MAX_ATTEMPTS_WITHOUT_PROGRESS:
                    raise ValueError(
                        f"could not find {n} distinct {split} problems in {self!r}"
                    )
                continue
            attempts_since_new = 0
            seen.add(problem.expression)
            out.append(problem)
        return out
