"""User code datasets in JSONL, one task per line, in either of two styles:

MBPP style:      {"text", "code", "test_list"[, "test_setup_code", "task_id"]}
    ``text`` is the task, ``code`` a reference solution (it names the function the
    tests call), ``test_list`` assert statements. The prompt is ``text`` plus the first
    ``show_tests`` asserts as examples; all asserts are run. Completion: the whole
    program. ``challenge_test_list`` and other extra fields are ignored.
HumanEval style: {"task_id", "prompt", "test", "entry_point"[, "canonical_solution"]}
    exactly as HumanEval (``humaneval.py``): ``test`` defines ``check(candidate)``.

Split: by the hash of each row's task id (``task_id``, else its ``text``), like
HumanEval, with ``val_fraction`` (default 0.2) of tasks in 'val'.

Every problem with the file is reported before any training starts, as
``JSONLCodeError`` naming the file, the line, the field and what to do.
"""

from __future__ import annotations

import ast
import json
import os
from functools import lru_cache

from .env import CodeEnv
from .humaneval import humaneval_style_problem
from .problem import CodeProblem, check_val_fraction, split_of

MBPP_FIELDS = ("text", "code", "test_list")
HUMANEVAL_FIELDS = ("task_id", "prompt", "test", "entry_point")
_STYLES = ("MBPP style needs text, code, test_list (optional test_setup_code, task_id); "
           "HumanEval style needs task_id, prompt, test, entry_point (optional canonical_solution)")


class JSONLCodeError(ValueError):
    pass


def _fail(path: str, lineno: int, problem: str) -> JSONLCodeError:
    return JSONLCodeError(f"{path}, line {lineno}: {problem}. {_STYLES}. Fix or remove the row.")


def _require_str(path, lineno, row, field, allow_empty=False) -> str:
    value = row.get(field)
    if value is None:
        raise _fail(path, lineno, f"missing field {field!r}")
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise _fail(path, lineno, f"field {field!r} must be a non-empty string, got {value!r:.60}")
    return value


def _parse(path, lineno, field, source) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise _fail(path, lineno, f"field {field!r} is not valid Python ({exc.msg}, its line {exc.lineno})") from None


def _mbpp_problem(path: str, lineno: int, row: dict, show_tests: int) -> CodeProblem:
    text = _require_str(path, lineno, row, "text")
    code = _require_str(path, lineno, row, "code")
    tests = row.get("test_list")
    if tests is None:
        raise _fail(path, lineno, "missing field 'test_list'")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise _fail(path, lineno, "field 'test_list' must be a non-empty list of assert statements (strings)")
    setup = row.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise _fail(path, lineno, "field 'test_setup_code' must be a string")
    defined = {node.name for node in _parse(path, lineno, "code", code).body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    _parse(path, lineno, "test_setup_code", setup)
    called = set()
    for i, test in enumerate(tests):
        called |= {n.id for n in ast.walk(_parse(path, lineno, f"test_list[{i}]", test)) if isinstance(n, ast.Name)}
    entry_points = sorted(defined & called)
    if len(entry_points) != 1:
        found = ", ".join(entry_points) or "none"
        raise _fail(path, lineno, f"test_list must call exactly one function defined in 'code' (found: {found})")
    shown = "\n".join(tests[:show_tests])
    prompt = f"{text.strip()}\nYour code should pass tests like this:\n{shown}\n" if show_tests else text.strip() + "\n"
    return CodeProblem(
        task_id=str(row.get("task_id", text.strip())),
        prompt=prompt,
        entry_point=entry_points[0],
        tests=tuple(tests),
        setup=setup,
        labels=tuple(t.strip() if i < show_tests else f"hidden test {i + 1}" for i, t in enumerate(tests)),
        reference=code,
    )


def _humaneval_problem(path: str, lineno: int, row: dict) -> CodeProblem:
    for field in HUMANEVAL_FIELDS:
        _require_str(path, lineno, row, field)
    if not row["entry_point"].isidentifier():
        raise _fail(path, lineno, f"field 'entry_point' must be a Python name, got {row['entry_point']!r:.60}")
    _parse(path, lineno, "prompt", row["prompt"])
    if "def check(" not in row["test"]:
        raise _fail(path, lineno, "field 'test' must define check(candidate)")
    _parse(path, lineno, "test", row["test"])
    canonical = row.get("canonical_solution")
    if canonical is not None and not isinstance(canonical, str):
        raise _fail(path, lineno, "field 'canonical_solution' must be a string")
    return humaneval_style_problem(row)


def load_code_jsonl(path: str, show_tests: int = 1) -> tuple[CodeProblem, ...]:
    """Every row of ``path`` as a CodeProblem, or JSONLCodeError naming the first bad one."""
    if not os.path.isfile(path):
        raise JSONLCodeError(f"{path}: no such file; give the path of a JSONL code dataset ({_STYLES})")
    return _load(os.path.abspath(path), os.stat(path).st_mtime_ns, show_tests)


@lru_cache(maxsize=16)  # train and val envs of one run read the file once; an edit reloads it
def _load(path: str, _mtime_ns: int, show_tests: int) -> tuple[CodeProblem, ...]:
    problems, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(row, dict):
                raise _fail(path, lineno, f"expected a JSON object, got {type(row).__name__}")
            if "test_list" in row or "text" in row:
                problem = _mbpp_problem(path, lineno, row, show_tests)
            elif any(field in row for field in HUMANEVAL_FIELDS):
                problem = _humaneval_problem(path, lineno, row)
            else:
                raise _fail(path, lineno, f"the row matches neither style (fields: {sorted(row)})")
            if problem.task_id in seen:
                raise _fail(path, lineno, f"task_id {problem.task_id!r} repeats line {seen[problem.task_id]}")
            seen[problem.task_id] = lineno
            problems.append(problem)
    if not problems:
        raise JSONLCodeError(f"{path}: the file holds no tasks; add one JSON object per line ({_STYLES})")
    return tuple(problems)


class CodeJSONLEnv(CodeEnv):
    def __init__(self, path: str | None = None, split: str = "train", val_fraction: float = 0.2,
                 show_tests: int = 1, **kwargs):
        super().__init__(split, **kwargs)
        if not path:
            raise ValueError("rlscale/CodeJSONL-v0 needs kwargs.path: the JSONL file of code tasks")
        if isinstance(show_tests, bool) or not isinstance(show_tests, int) or show_tests < 0:
            raise ValueError(f"show_tests must be an integer >= 0, got {show_tests!r}")
        self.path, self.val_fraction = os.path.abspath(path), check_val_fraction(val_fraction)
        problems = load_code_jsonl(self.path, show_tests)
        self._problems = tuple(p for p in problems if split_of(p.task_id, self.val_fraction) == split)
        if not self._problems:
            raise ValueError(f"{self.path}: none of its {len(problems)} tasks falls in split {split!r} with "
                             f"val_fraction={self.val_fraction}; add tasks or change val_fraction")

    @property
    def problems(self) -> tuple[CodeProblem, ...]:
        return self._problems
