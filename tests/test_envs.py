"""Tests for rlscale_envs: arithmetic tasks, answer extraction, sandboxed
verification (real math-verify, no mocks) and the gymnasium env."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import gymnasium
import numpy as np
import psutil
import pytest

import rlscale_envs
from rlscale_envs import (
    ArithFamily,
    ArithProblem,
    MathEnv,
    MathVerifier,
    Verdict,
    extract_boxed_answer,
    solution_text,
    split_of,
)

STEP_RE = re.compile(r"^(-?\d+)([+-])(\d+)=(-?\d+)$")
BOXED_RE = re.compile(r"^\\boxed\{(-?\d+)\}$")


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(timeout_s=5.0) as v:
        yield v


def _steps(solution: str) -> tuple[list[tuple[int, str, int, int]], int]:
    """Parse a worked solution into (left, op, right, result) lines and the boxed value."""
    *lines, last = solution.split("\n")
    steps = []
    for line in lines:
        m = STEP_RE.match(line)
        assert m, f"bad step line {line!r}"
        steps.append((int(m[1]), m[2], int(m[3]), int(m[4])))
    m = BOXED_RE.match(last)
    assert m, f"bad final line {last!r}"
    return steps, int(m[1])


def _child_gone(pid: int) -> bool:
    if not psutil.pid_exists(pid):
        return True
    return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# --- arith ------------------------------------------------------------------

def test_prompt_and_solution_format_exact():
    p = ArithProblem.from_expression("37+45-12")
    assert p == ArithProblem("37+45-12", "70", 2)
    assert p.prompt == "Q: 37+45-12\nA: "
    assert p.solution == "37+45=82\n82-12=70\n\\boxed{70}"
    assert ArithProblem.from_expression("3+4").solution == "3+4=7\n\\boxed{7}"
    neg = ArithProblem.from_expression("5-9+2")
    assert neg.answer == "-2"
    assert neg.solution == "5-9=-4\n-4+2=-2\n\\boxed{-2}"
    assert solution_text(p) == p.solution


def test_generated_problems_have_consistent_solutions():
    family = ArithFamily(1, 6)
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = family.sample(rng, "train")
        steps, boxed = _steps(p.solution)
        assert len(steps) == p.difficulty
        assert str(boxed) == p.answer
        value = int(re.match(r"\d+", p.expression)[0])
        for left, op, right, result in steps:
            assert left == value
            assert result == (left + right if op == "+" else left - right)
            value = result


@pytest.mark.parametrize("difficulty", range(1, 7))
def test_operand_count_and_range_follow_difficulty(difficulty):
    family = ArithFamily(difficulty, difficulty)
    rng = np.random.default_rng(difficulty)
    largest = 0
    for _ in range(200):
        p = family.sample(rng, "train")
        operands = [int(x) for x in re.findall(r"\d+", p.expression)]
        assert p.difficulty == difficulty and len(operands) == difficulty + 1
        largest = max(largest, *operands)
    assert largest <= (99 if difficulty <= 3 else 999)
    if difficulty >= 4:
        assert largest > 99


def test_sloppy_solution_carries_error_consistently():
    rng = np.random.default_rng(1)
    offsets = set()
    for p in ArithFamily(2, 5).problems(40, seed=3, split="train"):
        for wrong_step in range(p.difficulty):
            sloppy = solution_text(p, wrong_step=wrong_step, rng=rng)
            steps, boxed = _steps(sloppy)
            true_steps, _ = _steps(p.solution)
            value = int(re.match(r"\d+", p.expression)[0])
            for i, (left, op, right, result) in enumerate(steps):
                assert left == value  # later steps start from the (wrong) value
                exact = left + right if op == "+" else left - right
                if i == wrong_step:
                    offset = result - exact
                    assert 1 <= abs(offset) <= 10
                    offsets.add(offset)
                else:
                    assert result == exact
                assert right == true_steps[i][2] and op == true_steps[i][1]
                value = result
            # + and - are linear, so the final answer is off by exactly the offset
            assert boxed == int(p.answer) + offset
    assert any(o > 0 for o in offsets) and any(o < 0 for o in offsets)


def test_sloppy_solution_validates_step():
    p = ArithProblem.from_expression("1+2+3")
    for bad in (-1, 2, 5):
        with pytest.raises(ValueError, match="wrong_step"):
            solution_text(p, wrong_step=bad, rng=np.random.default_rng(0))


def test_split_is_a_stable_function_of_expression():
    exprs = [p.expression for p in ArithFamily(1, 6).problems(3000, seed=9, split="train")]
    exprs += [p.expression for p in ArithFamily(1, 6).problems(300, seed=9, split="val")]
    assert all(split_of(e) == split_of(e) for e in exprs)
    rng = np.random.default_rng(5)
    raw = [f"{a}+{b}" for a, b in rng.integers(0, 1000, size=(5000, 2))]
    val_fraction = sum(split_of(e) == "val" for e in raw) / len(raw)
    assert 0.08 < val_fraction < 0.12


def test_problems_deterministic_distinct_and_disjoint_across_seeds():
    family = ArithFamily(1, 3)
    all_train, all_val = set(), set()
    for seed in range(5):
        train = family.problems(300, seed, "train")
        val = family.problems(100, seed, "val")
        assert train == family.problems(300, seed, "train")
        assert val[:50] == family.problems(50, seed, "val")
        for split, probs in (("train", train), ("val", val)):
            exprs = [p.expression for p in probs]
            assert len(set(exprs)) == len(exprs)
            assert all(split_of(e) == split for e in exprs)
        all_train.update(p.expression for p in train)
        all_val.update(p.expression for p in val)
    assert not all_train & all_val
    assert family.problems(20, 0, "val") != family.problems(20, 1, "val")


def test_sample_respects_split():
    family = ArithFamily(1, 2)
    rng = np.random.default_rng(0)
    assert all(split_of(family.sample(rng, "val").expression) == "val" for _ in range(50))


def test_argument_validation():
    for lo, hi in ((0, 3), (1, 7), (-1, 2), (1, 99)):
        with pytest.raises(ValueError, match="difficulty"):
            ArithFamily(lo, hi)
    with pytest.raises(ValueError, match="min_difficulty"):
        ArithFamily(4, 2)
    family = ArithFamily()
    with pytest.raises(ValueError, match="split"):
        family.sample(np.random.default_rng(0), "test")
    with pytest.raises(ValueError, match="split"):
        family.problems(3, 0, "dev")
    with pytest.raises(ValueError, match="split"):
        MathEnv(split="validation")
    with pytest.raises(ValueError, match="malformed"):
        ArithProblem.from_expression("3+-4")


# --- answer extraction --------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("37+45=82\n\\boxed{82}", ("82", "ok")),
        ("\\boxed{ -4 }", ("-4", "ok")),
        ("so \\boxed{\\frac{1}{2}} done", ("\\frac{1}{2}", "ok")),
        ("\\boxed{\\{1,2\\}}", ("\\{1,2\\}", "ok")),
        ("the answer is 82", (None, "no_answer")),
        ("\\boxed 82", (None, "no_answer")),
        ("\\boxed{1} or \\boxed{2}", (None, "multiple_answers")),
        ("\\boxed{\\boxed{2}}", (None, "multiple_answers")),
        ("\\boxed{\\frac{1}{2}", (None, "unbalanced_braces")),
        ("\\boxed{5\\}", (None, "unbalanced_braces")),
        ("\\boxed{}", (None, "empty_answer")),
        ("\\boxed{   }", (None, "empty_answer")),
        ("\\boxed{" + "1" * 65 + "}", (None, "answer_too_long")),
        ("\\boxed{" + "1" * 64 + "}", ("1" * 64, "ok")),
        ("x" * 300 + "\\boxed{1}", (None, "completion_too_long")),
    ],
)
def test_extract_boxed_answer(text, expected):
    assert extract_boxed_answer(text, max_chars=256) == expected


def test_completion_length_limit_is_inclusive():
    text = "\\boxed{7}"
    assert extract_boxed_answer(text, max_chars=len(text)) == ("7", "ok")
    assert extract_boxed_answer(text, max_chars=len(text) - 1)[1] == "completion_too_long"


# --- verifier ----------------------------------------------------------------

@pytest.mark.parametrize(
    "gold, answer, correct",
    [
        ("70", "70", True),
        ("70", "71", False),
        ("-4", "-4", True),
        ("-4", "4", False),
        ("1/2", "\\frac{1}{2}", True),
        ("0.5", "\\frac12", True),
        ("70", "x", False),
    ],
)
def test_verifier_verdicts(verifier, gold, answer, correct):
    verdict = verifier.verify(gold, answer)
    assert verdict == Verdict(correct, "correct" if correct else "wrong")


def test_verify_many_keeps_order_with_duplicates_and_caches(verifier):
    pairs = [("3", "3"), ("3", "4"), ("3", "3"), ("12", "12")] * 3
    expected = [p[0] == p[1] for p in pairs]
    assert [v.correct for v in verifier.verify_many(pairs)] == expected
    start = time.perf_counter()
    assert [v.correct for v in verifier.verify_many(pairs)] == expected
    assert time.perf_counter() - start < 0.05  # served from the parent's cache
    assert verifier.verify_many([]) == []


def test_hostile_input_times_out_off_main_thread_and_worker_recovers():
    with MathVerifier(timeout_s=1.0) as v:
        assert v.verify("1", "1").correct  # start the worker outside the timing
        out = {}

        def run():
            start = time.perf_counter()
            out["verdicts"] = v.verify_many([("1", "9^{9^{9^9}}"), ("5", "5")])
            out["elapsed"] = time.perf_counter() - start

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
        assert out["verdicts"] == [Verdict(False, "verifier_timeout"), Verdict(True, "correct")]
        assert out["elapsed"] < 6.0
        # The answer a model would box, scored through the env path too.
        env = MathEnv(verifier=v)
        env.reset(options={"problem": ArithProblem.from_expression("0+1")})
        _, reward, _, _, info = env.step("\\boxed{9^{9^{9^9}}}")
        assert reward == 0.0 and info["reason"] == "verifier_timeout"


def test_killed_worker_scores_crashed_and_is_replaced():
    with MathVerifier(timeout_s=20.0) as v:
        assert v.verify("2", "2").correct
        pid = v.worker_pid
        out = {}
        thread = threading.Thread(
            target=lambda: out.setdefault("v", v.verify_many([("1", "9^{9^{9^9}}"), ("6", "6")]))
        )
        thread.start()
        time.sleep(0.5)  # the worker is now stuck on the hostile item
        os.kill(pid, signal.SIGKILL)
        thread.join(30)
        assert out["v"] == [Verdict(False, "verifier_crashed"), Verdict(True, "correct")]
        assert v.worker_pid not in (None, pid)


def test_close_leaves_no_child_process():
    v = MathVerifier()
    assert v.verify("1", "1").correct
    pid = v.worker_pid
    assert pid in {c.pid for c in psutil.Process().children()}
    v.close()
    v.close()  # idempotent
    assert _child_gone(pid)
    assert pid not in {c.pid for c in psutil.Process().children()}
    with pytest.raises(RuntimeError, match="closed"):
        v.verify("1", "1")


# --- gymnasium env -------------------------------------------------------------

def test_gymnasium_make_reset_step():
    assert rlscale_envs.ARITH_ENV_ID == "rlscale/Arith-v0"
    env = gymnasium.make("rlscale/Arith-v0", max_difficulty=2)
    obs, info = env.reset(seed=0)
    assert obs.startswith("Q: ") and obs.endswith("\nA: ")
    assert env.observation_space.contains(obs)
    problem = env.unwrapped.problem
    assert info == {"answer": problem.answer, "gold": problem.answer, "difficulty": problem.difficulty}
    obs, reward, terminated, truncated, info = env.step(problem.solution)
    assert (obs, reward, terminated, truncated) == ("", 1.0, True, False)
    assert info == {"answer": problem.answer, "gold": problem.answer, "reason": "correct",
                    "difficulty": problem.difficulty}
    pid = env.unwrapped.verifier.worker_pid
    env.close()
    assert _child_gone(pid)


def test_reset_is_seeded_and_replays_given_problem(verifier):
    env = MathEnv(split="val", verifier=verifier)
    first, _ = env.reset(seed=123)
    assert env.reset(seed=123)[0] == first
    assert split_of(env.problem.expression) == "val"
    chosen = ArithProblem.from_expression("10-20")
    obs, info = env.reset(options={"problem": chosen})
    assert obs == chosen.prompt and info["answer"] == "-10" and info["difficulty"] == 1
    with pytest.raises(TypeError):
        env.reset(options={"problem": "10-20"})


def test_step_requires_active_episode(verifier):
    env = MathEnv(verifier=verifier)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("\\boxed{1}")
    env.reset(seed=0)
    env.step("\\boxed{1}")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("\\boxed{1}")
    env.close()
    assert verifier.verify("1", "1").correct  # a shared verifier is not closed by the env


def test_score_many_matches_per_sample_step(verifier):
    env = MathEnv(max_difficulty=4, verifier=verifier, max_completion_chars=200)
    rng = np.random.default_rng(7)
    problems = ArithFamily(1, 4).problems(12, seed=11, split="train")
    completions = []
    for i, p in enumerate(problems):
        completions += [
            p.solution,
            solution_text(p, wrong_step=0, rng=rng),
            f"\\boxed{{{p.answer}}} \\boxed{{{p.answer}}}",
            "I think it is " + p.answer,
            "x" * 201 + p.solution,
            f"\\boxed{{{int(p.answer) * 2}/2}}",  # equivalent form, still correct
        ]
    paired = [p for p in problems for _ in range(6)]
    batch = env.score_many(paired, completions)
    single = []
    for p, c in zip(paired, completions):
        env.reset(options={"problem": p})
        _, reward, _, _, info = env.step(c)
        single.append((reward, info))
    assert batch == single
    rewards = [r for r, _ in batch]
    assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0] * len(problems)
    reasons = {info["reason"] for _, info in batch}
    assert reasons == {"correct", "wrong", "multiple_answers", "no_answer", "completion_too_long"}
    with pytest.raises(ValueError):
        env.score_many(problems, completions[:1])


def test_arith_distinct_bound_is_the_exact_count_of_a_small_space():
    """distinct_at_most counts a small space exactly: drawing far more than enough finds
    exactly that many distinct problems per split; a large space gets a bound above its share."""
    from rlscale_envs.arith import ArithFamily

    family = ArithFamily(1, 2, max_operand=4)  # 5^2*2 + 5^3*4 = 550 expressions
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        found = {family.sample(rng, split).expression for _ in range(30_000)}
        assert family.distinct_at_most(split) == len(found)
    big = ArithFamily(1, 6).distinct_at_most("val")
    assert 0.1 * sum(100 ** (d + 1) * 2 ** d for d in (1, 2, 3)) < big
