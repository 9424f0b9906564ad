"""IsolatedScorer's (score, reason) protocol and MathVerifier as a layer on it."""

from __future__ import annotations

import threading

import psutil
import pytest

from rlscale_envs import MathVerifier, Verdict
from rlscale_envs.isolated import IsolatedScorer

HANDLER = """
def make_scorer(spec):
    def score(item):
        if item == "pair":
            return 0.5, "half"
        if item == "triple":
            return 1.0, "a", "b"
        if item == "text":
            return "not a number", "x"
        return item * spec
    return score
"""


def test_handler_may_return_score_or_score_and_reason(tmp_path):
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    with_reasons = IsolatedScorer(str(handler), 2, timeout_s=5.0)
    try:
        assert with_reasons.score_many([3, "pair", "triple", "text", 4]) == [
            (6.0, "ok"), (0.5, "half"), (None, "scorer_error: ValueError"),
            (None, "scorer_error: ValueError"), (8.0, "ok")]
    finally:
        with_reasons.close()


class _ScriptedScorer:
    """Stands in for the child: returns the scripted (score, reason) per pair."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def score_many(self, items):
        self.calls.append(list(items))
        return [self.script[item] for item in items]

    def close(self):
        pass


def test_verifier_maps_scorer_results_and_caches_only_deterministic_ones():
    v = MathVerifier(timeout_s=1.0)  # the child starts lazily: none is started here
    v._scorer.close()
    v._scorer = scripted = _ScriptedScorer({
        ("1", "1"): (1.0, "correct"), ("1", "2"): (0.0, "wrong"), ("1", "}"): (0.0, "parse_failed"),
        ("1", "hang"): (None, "scorer_timeout"), ("1", "died"): (None, "scorer_crashed"),
        ("1", "raised"): (None, "scorer_error: TypeError"),
    })
    pairs = [("1", "1"), ("1", "2"), ("1", "}"), ("1", "hang"), ("1", "died"), ("1", "raised"), ("1", "1")]
    expected = [Verdict(True, "correct"), Verdict(False, "wrong"), Verdict(False, "parse_failed"),
                Verdict(False, "verifier_timeout"), Verdict(False, "verifier_crashed"),
                Verdict(False, "verifier_crashed"), Verdict(True, "correct")]
    assert v.verify_many(pairs) == expected
    assert v.verify_many(pairs) == expected
    assert scripted.calls == [pairs[:6], [("1", "hang"), ("1", "died"), ("1", "raised")]]
    v.close()


def test_math_verify_child_has_memory_limit_and_no_inherited_secrets(monkeypatch):
    monkeypatch.setenv("RLSCALE_TEST_SECRET", "do-not-leak")
    limit = 3 * 1024**3
    with MathVerifier(timeout_s=5.0, memory_limit_bytes=limit) as v:
        assert v.verify("\\frac{1}{2}", "0.5") == Verdict(True, "correct")
        child = psutil.Process(v.worker_pid)
        assert child.rlimit(psutil.RLIMIT_AS) == (limit, limit)
        assert "RLSCALE_TEST_SECRET" not in child.environ()


def test_verifier_shared_by_threads_answers_each_caller():
    with MathVerifier(timeout_s=10.0) as v:
        out: dict[int, list[Verdict]] = {}

        def run(k):
            out[k] = v.verify_many([(str(k), str(k)), (str(k), str(k + 1)), ("1/2", f"\\frac{{{k}}}{{{2 * k}}}")])

        threads = [threading.Thread(target=run, args=(k,)) for k in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert {k: [x.correct for x in r] for k, r in out.items()} == {k: [True, False, True] for k in range(1, 5)}


@pytest.mark.parametrize("timeout_s", [0, -1.0])
def test_verifier_rejects_bad_timeout(timeout_s):
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        MathVerifier(timeout_s=timeout_s)
