"""The math environments of issue 4: reasoning-gym adapter, JSONL loader, Mix, multi-turn
MathEnv, the registry, and the strict answer rule through every env. Real reasoning-gym,
real math-verify, no mocks."""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import gymnasium
import psutil
import pytest

import rlscale_envs
from rlscale_envs import MathEnv, MathVerifier, make_text_env
from rlscale_envs.isolated import IsolatedScorer
from rlscale_envs.jsonl_math import DatasetError, MathJSONLEnv, split_of_question
from rlscale_envs.math_scoring import RETRY_FEEDBACK
from rlscale_envs.mix import MixEnv, MixProblem
from rlscale_envs.reasoning_gym_env import ReasoningGymEnv, ReasoningGymProblem

CHAIN = {"name": "chain_sum", "size": 300, "val_size": 100,
         "config": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}}


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(timeout_s=5.0) as v:
        yield v


@pytest.fixture(scope="module")
def chain_env():
    env = ReasoningGymEnv("train", **CHAIN)
    yield env
    env.close()


def hostile_completions(gold: str, max_chars: int) -> dict[str, str]:
    """Completions that must score 0, keyed by the reason the env must give."""
    return {
        "multiple_answers": f"\\boxed{{{gold}}} or maybe \\boxed{{{gold}}}",
        "no_answer": f"the answer is {gold}",
        "unbalanced_braces": f"\\boxed{{{gold}",
        "empty_answer": "\\boxed{  }",
        "answer_too_long": "\\boxed{" + "1" * 65 + "}",
        "completion_too_long": "x" * max_chars + f"\\boxed{{{gold}}}",
    }


# --- registry ----------------------------------------------------------------------------

def test_every_math_env_id_is_registered_and_builds():
    ids = rlscale_envs.rlscale_env_ids()
    for env_id in ("rlscale/Arith-v0", "rlscale/ReasoningGym-v0", "rlscale/MathJSONL-v0", "rlscale/Mix-v0"):
        assert env_id in ids and env_id in gymnasium.registry
    if hasattr(rlscale_envs.code, "register"):  # the code half of issue 4 registers its own ids
        assert "rlscale/HumanEval-v0" in ids
    env = gymnasium.make("rlscale/ReasoningGym-v0", name="leg_counting", size=20, val_size=10)
    obs, info = env.reset(seed=3)
    assert "\\boxed{}" in obs and info["task"] == "leg_counting"
    env.close()
    with pytest.raises(rlscale_envs.UnknownEnvError, match="registered: .*rlscale/Arith-v0"):
        make_text_env("rlscale/Nope-v0")


# --- strict extraction, through every env ----------------------------------------------

def test_strict_answer_rule_scores_zero_in_every_env(verifier, chain_env, tmp_path):
    data = tmp_path / "gsm.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"What is {i} + {i}?", "answer": f"{i}+{i}\n#### {2 * i}"})
                              for i in range(40)))
    envs = [MathEnv(verifier=verifier, max_completion_chars=100), chain_env,
            MathJSONLEnv("train", path=str(data), verifier=verifier, max_completion_chars=100)]
    for env in envs:
        env.reset(seed=0)
        problem = env.problem
        cases = hostile_completions(problem.answer, env.max_completion_chars)
        scored = env.score_many([problem] * (len(cases) + 1), [*cases.values(), f"\\boxed{{{problem.answer}}}"])
        assert [r for r, _ in scored] == [0.0] * len(cases) + [1.0], type(env).__name__
        assert [info["reason"] for _, info in scored[:-1]] == list(cases), type(env).__name__


# --- reasoning-gym ---------------------------------------------------------------------------

def test_reasoning_gym_splits_are_disjoint_and_deterministic():
    train = ReasoningGymEnv("train", **CHAIN)
    val = ReasoningGymEnv("val", **CHAIN)
    train_questions = {train.problem_at(i).question for i in range(CHAIN["size"])}
    val_questions = {val.problem_at(i).question for i in val.indices}
    assert val_questions and not val_questions & train_questions
    assert len(val.indices) + val.n_val_dropped == CHAIN["val_size"]
    assert train.reset(seed=5)[0] == train.reset(seed=5)[0]
    assert val.reset(seed=1)[0].startswith("Q: State the final answer")
    with pytest.raises(ValueError, match="overlap"):
        ReasoningGymEnv("val", **CHAIN, val_seed=CHAIN["size"] - 1)
    tiny = {**CHAIN, "size": 2000, "val_size": 10, "config": {"min_terms": 2, "max_terms": 2, "min_digits": 1,
                                                              "max_digits": 1}}
    with pytest.raises(ValueError, match="all 10 val items also occur among the 2000 train items"):
        ReasoningGymEnv("val", **tiny)


def test_reasoning_gym_scores_with_its_own_scorer(chain_env):
    chain_env.reset(seed=0)
    p = chain_env.problem
    completions = [f"12+3\n\\boxed{{{p.answer}}}", f"\\boxed{{{int(p.answer) + 1}}}",
                   f"\\boxed{{{p.answer}, {int(p.answer) + 1}}}"]  # hedging inside one box
    scored = chain_env.score_many([p] * 3, completions)
    assert [r for r, _ in scored] == [1.0, 0.0, 0.0]
    assert [i["reason"] for _, i in scored] == ["correct", "wrong", "partial"]
    assert 0 < scored[2][1]["score"] < 1  # reasoning-gym's partial credit, not paid by default
    # A scorer that raises scores 0 with the exception named (here: an entry it cannot read).
    broken = ReasoningGymProblem(p.prompt, p.question, p.answer, {"question": p.question}, "chain_sum", 0)
    reward, info = chain_env.score_many([broken], [completions[0]])[0]
    assert reward == 0.0 and info["reason"] == "scorer_error: KeyError"
    generous = ReasoningGymEnv("train", **CHAIN, partial_credit=True)
    assert generous.score_many([p], completions[2:])[0][0] == pytest.approx(scored[2][1]["score"])
    generous.close()


def test_reasoning_gym_hostile_answers_score_zero_and_leave_the_host_alone():
    """puzzle24 runs sympy's parse_expr (an eval) on the answer: the adapter must survive it."""
    env = ReasoningGymEnv("train", name="puzzle24", size=4, val_size=4, scorer_timeout_s=1.5)
    env.reset(seed=0)
    p = env.problem
    target = Path(f"/tmp/rl{os.getpid()}")  # short: the answer must fit in 64 characters
    hostile = {
        "\\boxed{9**9**9**9}": "scorer_timeout",  # sympy builds the integer: hangs
        f"\\boxed{{open('{target}', 'w')}}": "partial",  # the audit hook refuses; puzzle24's 0.01
        "\\boxed{__import__('os').system('touch x')}": "unsafe_answer",
    }
    scored = env.score_many([p] * (len(hostile) + 1), [*hostile, f"\\boxed{{{p.answer}}}"])
    assert [r for r, _ in scored] == [0.0] * len(hostile) + [1.0]  # the child was replaced after the hang
    assert [i["reason"] for _, i in scored[:-1]] == list(hostile.values())
    assert not target.exists()
    child = psutil.Process(env.scorer.child_pid)
    child.kill()
    child.wait(10)  # a dead child is replaced on the next call
    assert env.score_many([p], [f"\\boxed{{{p.answer}}}"])[0][0] == 1.0
    pid = env.scorer.child_pid
    env.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


HANDLER = """
import os, time

def make_scorer(spec):
    def score(item):
        kind, arg = item
        if kind == "write":
            open(arg, "w").write("x")
        elif kind == "system":
            os.system(f"touch {arg}")
        elif kind == "hang":
            while True:
                pass
        elif kind == "raise":
            raise ArithmeticError(arg)
        elif kind == "exit":
            os._exit(3)
        elif kind == "read":
            return len(open(arg).read())
        return spec
    return score
"""


def test_isolated_scorer_contains_what_a_scorer_does(tmp_path):
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    target = tmp_path / "written"
    scorer = IsolatedScorer(str(handler), 1.0, timeout_s=1.0)
    items = [("ok", None), ("write", str(target)), ("system", str(target)), ("raise", "boom"),
             ("hang", None), ("ok", None), ("exit", None), ("read", str(handler)), ("ok", None)]
    t0 = time.time()
    assert scorer.score_many(items) == [
        (1.0, "ok"), (None, "scorer_error: BlockedBySandbox"), (None, "scorer_error: BlockedBySandbox"),
        (None, "scorer_error: ArithmeticError"), (None, "scorer_timeout"), (1.0, "ok"), (None, "scorer_crashed"),
        (float(len(HANDLER)), "ok"), (1.0, "ok")]
    assert time.time() - t0 < 30 and not target.exists()
    pid = scorer.child_pid
    scorer.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score_many([("ok", None)])


def test_reasoning_gym_curriculum_sets_the_task_config():
    easy = ReasoningGymEnv("train", name="chain_sum", size=10, difficulty=0)
    assert (easy.config.min_terms, easy.config.max_terms, easy.config.max_digits) == (2, 2, 1)
    harder = ReasoningGymEnv("train", name="chain_sum", size=10, difficulty=0, curriculum={"num_terms": 3},
                             config={"allow_negation": True})
    assert (harder.config.min_terms, harder.config.max_terms, harder.config.allow_negation) == (2, 5, True)
    top = ReasoningGymEnv("train", name="chain_sum", size=10, curriculum={"num_terms": 3},
                          curriculum_mode="upper_bound")
    assert (top.config.min_terms, top.config.max_terms) == (5, 5)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"name": "chain_summ"}, "did you mean chain_sum"),
    ({}, "needs name="),
    ({"name": "chain_sum", "config": {"max_termz": 3}}, "unknown config field(s) ['max_termz']"),
    ({"name": "chain_sum", "config": {"seed": 3}}, "seed and size are set by the env"),
    ({"name": "chain_sum", "config": {"min_terms": 5, "max_terms": 2}}, "config rejected: max_terms must be >= min_terms"),
    ({"name": "gsm_symbolic", "difficulty": 1}, "has no curriculum"),
    ({"name": "chain_sum", "difficulty": 99}, "difficulty must be an integer in 0..10"),
    ({"name": "chain_sum", "curriculum": {"depth": 1}}, "unknown curriculum attribute 'depth'"),
    ({"name": "chain_sum", "difficulty": 1, "config": {"max_terms": 4}}, "are set by the curriculum"),
    ({"name": "chain_sum", "curriculum": {"num_terms": 1}, "curriculum_mode": "steep"}, "curriculum_mode must be"),
    ({"name": "basic_arithmetic", "max_answer_chars": 3}, "set max_answer_chars >="),
    ({"name": "chain_sum", "size": 0}, "size must be an integer >= 1"),
    ({"name": "chain_sum", "prompt_template": "Q: {q}"}, "must contain {question}"),
])
def test_reasoning_gym_bad_kwargs_say_what_to_fix(kwargs, fragment):
    with pytest.raises(ValueError) as e:
        ReasoningGymEnv("train", **{"size": 20, **kwargs})
    assert fragment in str(e.value)


# --- JSONL math ----------------------------------------------------------------------------

GSM = [{"question": f"Tom has {i} apples and buys {i + 3}. How many now?",
        "answer": f"He has {i}+{i + 3}={2 * i + 3}.\n#### {2 * i + 3:,}"} for i in range(0, 2000, 37)]
MATH = [{"problem": "What is 1/2 of 1?", "solution": "Half of one: $\\boxed{\\frac{1}{2}}$."},
        {"problem": "Simplify 2^2.", "solution": "We get \\boxed{3} no wait \\boxed{4}."},
        {"problem": "How many primes below 10?", "solution": "2, 3, 5, 7", "answer": 4}]


def write_jsonl(path, records, extra_lines=()):
    path.write_text("\n".join([json.dumps(r) for r in records] + list(extra_lines)) + "\n")
    return str(path)


def test_jsonl_gsm8k_hash_split_is_stable_disjoint_and_complete(tmp_path, verifier):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM, extra_lines=["", "   "])  # blank lines are skipped
    train = MathJSONLEnv("train", path=path, val_fraction=0.25, verifier=verifier)
    val = MathJSONLEnv("val", path=path, val_fraction=0.25, verifier=verifier)
    tq, vq = {p.question for p in train.problems}, {p.question for p in val.problems}
    assert not tq & vq and tq | vq == {r["question"] for r in GSM}
    assert 0.1 < len(vq) / len(GSM) < 0.4
    assert all(split_of_question(q, 0.25) == "val" for q in vq)
    p = next(p for p in train.problems + val.problems if p.question.startswith("Tom has 999 "))
    assert p.answer == "2001"  # "#### 2,001" without the thousands separator
    assert p.source == "gsm.jsonl:28"
    assert train.reset(seed=4)[0] == train.reset(seed=4)[0]
    scored = train.score_many([p] * 3, ["\\boxed{2001}", "\\boxed{2,001.0}", "\\boxed{2000}"])
    assert [r for r, _ in scored] == [1.0, 1.0, 0.0]


def test_jsonl_math_style_and_two_files(tmp_path, verifier):
    train_path = write_jsonl(tmp_path / "train.jsonl", MATH)
    val_path = write_jsonl(tmp_path / "val.jsonl", [MATH[2], {"problem": "1+1?", "answer": "2"}])
    train = MathJSONLEnv("train", train_path=train_path, val_path=val_path, verifier=verifier)
    val = MathJSONLEnv("val", train_path=train_path, val_path=val_path, verifier=verifier)
    assert [p.answer for p in train.problems] == ["\\frac{1}{2}", "4"]  # the val question was dropped from train
    assert [p.answer for p in val.problems] == ["4", "2"]
    half = train.problems[0]
    assert [r for r, _ in train.score_many([half] * 3, ["\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{2}"])] == [1, 1, 0]


@pytest.mark.parametrize("lines, fragment", [
    (['{"question": "a?", "answer": "#### 1"}', '{"question": "b?", "answer": "#### 2"'],
     "bad.jsonl, line 2: not valid JSON"),
    (['[1, 2]'], "line 1: expected a JSON object, got list"),
    (['{"prompt": "a?", "answer": "1"}'], "line 1: no field 'question' (GSM8K style) or 'problem' (MATH style)"),
    (['{"question": "a?"}'], "line 1: GSM8K-style record (has 'question') lacks the field 'answer'"),
    (['{"question": "", "answer": "#### 1"}'], "line 1: field 'question' must be a non-empty string"),
    (['{"question": "a?", "answer": "so ####  "}'], "line 1: field 'answer' has nothing after its '####'"),
    (['{"question": "a?", "answer": ["1"]}'], "line 1: field 'answer' must be a non-empty string"),
    (['{"problem": "a?"}'], "line 1: MATH-style record (has 'problem') needs a field 'solution'"),
    (['{"problem": "a?", "solution": "it is 4"}'], "line 1: field 'solution' has no complete, non-empty \\boxed{...}"),
    (['{"problem": "a?", "answer": "' + "9" * 70 + '"}'], "line 1: the gold answer has 70 characters"),
    (['', '  '], "holds no records"),
])
def test_jsonl_bad_input_names_file_line_and_field(tmp_path, lines, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as e:
        MathJSONLEnv("train", path=str(path))
    assert fragment in str(e.value) and "bad.jsonl" in str(e.value)


def test_jsonl_bad_arguments_and_files(tmp_path):
    good = write_jsonl(tmp_path / "g.jsonl", GSM[:1])
    cases = [
        ({"path": str(tmp_path / "missing.jsonl")}, "missing.jsonl' not found"),
        ({}, "needs either path="),
        ({"path": good, "train_path": good}, "needs either path="),
        ({"train_path": good}, "needs either path="),
        ({"path": good, "val_fraction": 1.5}, "val_fraction must be in (0, 1)"),
        ({"path": good, "prompt_template": "Q: {text}"}, "must contain {question}"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(DatasetError) as e:
            MathJSONLEnv("train", **kwargs)
        assert fragment in str(e.value), kwargs
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DatasetError, match="cannot read it as UTF-8"):
        MathJSONLEnv("train", path=str(binary))
    one = write_jsonl(tmp_path / "one.jsonl", [GSM[0]])
    empty_split = "val" if split_of_question(GSM[0]["question"], 0.1) == "train" else "train"
    with pytest.raises(DatasetError, match=f"the {empty_split} split of .*one.jsonl.* is empty"):
        MathJSONLEnv(empty_split, path=one)


# --- Mix --------------------------------------------------------------------------------------

def arith(weight, **kwargs):
    return {"id": "rlscale/Arith-v0", "weight": weight, "kwargs": {"max_operand": 9, **kwargs}}


def chain(weight, **kwargs):
    return {"id": "rlscale/ReasoningGym-v0", "weight": weight, "kwargs": {**CHAIN, **kwargs}}


def test_mix_samples_by_weight_deterministically_and_dispatches():
    env = make_text_env("rlscale/Mix-v0", {"envs": [arith(3), chain(1)]}, "train")
    counts = collections.Counter()
    for seed in range(2000):
        env.reset(seed=seed)
        counts[env.problem.env] += 1
    assert counts["rlscale/Arith-v0"] / 2000 == pytest.approx(0.75, abs=0.03)
    assert env.reset(seed=11) == env.reset(seed=11)
    problems = []
    for seed in range(40):
        env.reset(seed=seed)
        problems.append(env.problem)
    assert {p.env for p in problems} == {"rlscale/Arith-v0", "rlscale/ReasoningGym-v0"}
    answers = [f"\\boxed{{{p.inner.answer}}}" if i % 2 else "\\boxed{}" for i, p in enumerate(problems)]
    scored = env.score_many(problems, answers)
    assert [r for r, _ in scored] == [float(i % 2) for i in range(40)]
    assert [i["env"] for _, i in scored] == [p.env for p in problems]
    assert {i.get("task") for (_, i), p in zip(scored, problems) if p.env.startswith("rlscale/Reason")} == {"chain_sum"}
    with pytest.raises(TypeError, match="MixProblem"):
        env.score_many([problems[0].inner], ["\\boxed{1}"])
    env.close()


def test_mix_multi_turn_follows_each_child(verifier):
    env = MixEnv(envs=[arith(1, max_turns=3), chain(1)])  # arith: up to 3 answers, chain_sum: 1
    assert env.max_turns == 3
    by_env = {}
    for seed in range(20):
        env.reset(seed=seed)
        by_env.setdefault(env.problem.env, env.problem)
    arith_p, chain_p = by_env["rlscale/Arith-v0"], by_env["rlscale/ReasoningGym-v0"]
    wrong = {"reason": "wrong"}
    assert env.feedback(arith_p, "\\boxed{x}", 0.0, wrong, 0) == RETRY_FEEDBACK.format(reason="wrong")
    assert env.feedback(arith_p, "\\boxed{x}", 0.0, wrong, 2) is None  # the child's last turn
    assert env.feedback(chain_p, "\\boxed{x}", 0.0, wrong, 0) is None  # single-turn child
    env.reset(options={"problem": arith_p})
    obs, reward, terminated, _, info = env.step("\\boxed{100}")
    assert (reward, terminated, info["env"]) == (0.0, False, "rlscale/Arith-v0") and "Try again" in obs
    _, reward, terminated, _, _ = env.step(f"\\boxed{{{arith_p.inner.answer}}}")
    assert (reward, terminated) == (1.0, True)
    env.close()


@pytest.mark.parametrize("envs, fragment", [
    ([arith(0)], "envs[0].weight must be a finite number > 0"),
    ([arith(1), arith(-2)], "envs[1].weight must be a finite number > 0"),
    ([arith(float("nan"))], "envs[0].weight"),
    ([arith(float("inf"))], "envs[0].weight"),
    ([arith("heavy")], "envs[0].weight"),
    ([arith(True)], "envs[0].weight"),
    ([], "non-empty list"),
    ("rlscale/Arith-v0", "non-empty list"),
    ([{"weight": 1}], "envs[0]: missing 'id'"),
    ([{**arith(1), "wieght": 2}], "unknown key(s) ['wieght']"),
    ([{"id": "rlscale/Nope-v0"}], "envs[0] (rlscale/Nope-v0): unknown environment id 'rlscale/Nope-v0'; registered:"),
    ([arith(1, bogus=3)], "envs[0] (rlscale/Arith-v0): "),
    ([arith(1, split="val")], "must not set split"),
    ([{**arith(1), "name": "a"}, {**arith(1), "name": "a"}], "envs[1].name 'a' must be a string unique"),
])
def test_mix_bad_entries_name_the_entry(envs, fragment):
    with pytest.raises(ValueError) as e:
        MixEnv(envs=envs)
    assert fragment in str(e.value)


def test_mix_names_repeated_ids_apart():
    env = MixEnv(envs=[arith(1), arith(1, min_difficulty=3)])
    assert env.names == ["rlscale/Arith-v0#0", "rlscale/Arith-v0#1"]
    env.close()


# --- multi-turn MathEnv ----------------------------------------------------------------------

def test_math_env_multi_turn_retries_without_revealing_the_gold(verifier):
    env = MathEnv(verifier=verifier, max_turns=3, max_operand=9)
    env.reset(seed=2)
    gold = env.problem.answer
    wrong = str(int(gold) + 1)
    obs, reward, terminated, _, info = env.step(f"\\boxed{{{wrong}}}")
    assert obs == "\nThat is not correct (wrong). Try again.\nA: " and (reward, terminated) == (0.0, False)
    obs, reward, terminated, _, _ = env.step("\\boxed{1} \\boxed{2}")
    assert "(multiple_answers)" in obs and gold not in obs.replace("A: ", "") and not terminated
    obs, reward, terminated, _, _ = env.step(f"\\boxed{{{gold}}}")
    assert (obs, reward, terminated) == ("", 1.0, True)
    env.reset(seed=2)
    env.step("no idea")
    _, reward, terminated, _, info = env.step("still no idea")  # second of three answers
    assert not terminated
    _, reward, terminated, _, info = env.step("none")
    assert (reward, terminated, info["reason"]) == (0.0, True, "no_answer")  # out of turns
    single = MathEnv(verifier=verifier)
    single.reset(seed=2)
    assert single.step("\\boxed{x}")[2] is True  # default: one answer per episode
    for bad in (0, "2", True, 1.5):
        with pytest.raises(ValueError, match="max_turns must be an integer >= 1"):
            MathEnv(verifier=verifier, max_turns=bad)
