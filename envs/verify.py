"""Answer verification with math-verify, safe against hostile inputs and threads.

Why a child process: math-verify's own timeouts use SIGALRM, which only works
on the main thread (the trainer may call us from a threaded Ray actor), and
hostile answers such as ``9^{9^{9^9}}`` make sympy hang or eat memory. So
``parse``/``verify`` run in an ``IsolatedScorer`` child (``isolated.py``: fresh
interpreter, address-space rlimit, audit hook) with math-verify's timeouts
disabled (``math_verify_child.py``); the parent enforces a hard wall-clock
timeout per item. A hung child is killed (item -> "verifier_timeout"), a dead
one (item -> "verifier_crashed") is replaced lazily when more work arrives.

Both gold and answer are parsed as ``\\boxed{<text>}``: with math-verify 0.9.0
that gives exact integers and rationals, so "1/2", "0.5", "\\frac12" and
"\\frac{1}{2}" are all equal.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .isolated import MEMORY_LIMIT_BYTES, IsolatedScorer

VERDICT_REASONS = ("correct", "wrong", "verifier_timeout", "verifier_crashed", "parse_failed")
# Deterministic outcomes only: a timeout may be a fluke of a loaded machine.
_CACHEABLE_REASONS = frozenset({"correct", "wrong", "parse_failed"})

WORKER_MEMORY_LIMIT_BYTES = MEMORY_LIMIT_BYTES
_CHILD_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "math_verify_child.py")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def _verdict(score: float | None, reason: str) -> Verdict:
    """IsolatedScorer's (score, reason) -> Verdict; any scorer failure scores 0."""
    if score is not None:
        return Verdict(reason == "correct", reason)  # correct / wrong / parse_failed
    if reason == "scorer_timeout":
        return Verdict(False, "verifier_timeout")
    return Verdict(False, "verifier_crashed")  # child died, MemoryError, or math-verify raised


class MathVerifier:
    """Checks answers against gold with math-verify in a sandboxed child process.

    Thread-safe; results for repeated (gold, answer) pairs come from an LRU cache.
    """

    def __init__(
        self,
        timeout_s: float = 2.0,
        cache_size: int = 65536,
        memory_limit_bytes: int = WORKER_MEMORY_LIMIT_BYTES,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.cache_size = int(cache_size)
        self.memory_limit_bytes = int(memory_limit_bytes)
        self._cache: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        # Guards the cache and makes a batch atomic; the scorer has its own lock inside.
        self._lock = threading.Lock()
        self._closed = False
        self._scorer = IsolatedScorer(_CHILD_FILE, None, timeout_s=self.timeout_s,
                                      memory_limit_bytes=self.memory_limit_bytes)

    # -- public API ---------------------------------------------------------
    def verify(self, gold: str, answer: str) -> Verdict:
        return self.verify_many([(gold, answer)])[0]

    def verify_many(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        """Verdicts in order; uncached unique pairs go to the child in one batch."""
        pairs = [(str(gold), str(answer)) for gold, answer in pairs]
        with self._lock:
            if self._closed:
                raise RuntimeError("MathVerifier is closed")
            results: dict[tuple[str, str], Verdict] = {}
            todo: list[tuple[str, str]] = []
            for pair in pairs:
                if pair in results:
                    continue
                cached = self._cache.get(pair)
                if cached is not None:
                    self._cache.move_to_end(pair)
                    results[pair] = cached
                else:
                    results[pair] = None  # placeholder keeps todo unique
                    todo.append(pair)
            if todo:
                for pair, scored in zip(todo, self._scorer.score_many(todo)):
                    verdict = results[pair] = _verdict(*scored)
                    if verdict.reason in _CACHEABLE_REASONS:
                        self._remember(pair, verdict)
            return [results[pair] for pair in pairs]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._scorer.close()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        """PID of the current child process, if one is running (for tests/ops)."""
        return self._scorer.child_pid

    # -- internals (caller holds the lock) -----------------------------------
    def _remember(self, pair: tuple[str, str], verdict: Verdict) -> None:
        self._cache[pair] = verdict
        self._cache.move_to_end(pair)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
