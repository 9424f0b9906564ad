"""Answer verification with math-verify, safe against hostile inputs and threads.

Why a child process: math-verify's own timeouts use SIGALRM, which only works
on the main thread (the trainer may call us from a threaded Ray actor), and
hostile answers such as ``9^{9^{9^9}}`` make sympy hang or eat memory. So
``parse``/``verify`` run in a worker process with math-verify's timeouts
disabled and an address-space rlimit; the parent enforces a hard wall-clock
timeout per item. A hung worker is killed (item -> "verifier_timeout"), a dead
one (item -> "verifier_crashed") is replaced lazily when more work arrives.

The worker is a fresh interpreter (fork+exec like multiprocessing's "spawn",
so safe from threaded parents) started with subprocess: "spawn" would re-run
the parent's ``__main__`` script in the child (fatal without a ``__main__``
guard, and it drags torch/ray imports into every restart). This module imports
only the stdlib at top level, so the child loads it by file path. Messages use
multiprocessing's Connection over two OS pipes.

Both gold and answer are parsed as ``\\boxed{<text>}``: with math-verify 0.9.0
that gives exact integers and rationals, so "1/2", "0.5", "\\frac12" and
"\\frac{1}{2}" are all equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection

VERDICT_REASONS = ("correct", "wrong", "verifier_timeout", "verifier_crashed", "parse_failed")
# Deterministic outcomes only: a timeout may be a fluke of a loaded machine.
_CACHEABLE_REASONS = frozenset({"correct", "wrong", "parse_failed"})

WORKER_MEMORY_LIMIT_BYTES = 2 * 1024**3
WORKER_START_TIMEOUT_S = 120.0  # interpreter + sympy import on a busy 2-core box

# Runs in the child: same sys.path as the parent, then load this file by path
# (not as part of its package, whose __init__ would import gymnasium/numpy).
_CHILD_BOOTSTRAP = """\
import importlib.util, json, sys
sys.path[:] = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("_rlscale_verify_worker", sys.argv[2])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module._worker_main(*map(int, sys.argv[3:]))
"""


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str


def _wrap(text: str) -> str:
    return "\\boxed{" + text + "}"


def _exit_when_orphaned(parent_pid: int) -> None:
    """Child-side watchdog: if the parent dies without closing us, stop."""
    import time

    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _worker_main(read_fd: int, write_fd: int, memory_limit_bytes: int, parent_pid: int) -> None:
    """Child process: receive a list of (gold, answer) pairs, send one
    (correct, reason) tuple per pair, in order; exit on None or EOF."""
    import logging
    import resource
    import signal

    from math_verify import parse, verify

    # Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    requests = Connection(read_fd, writable=False)
    results = Connection(write_fd, readable=False)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    # The "timeouts disabled" warnings are expected here: the parent times us.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    parse(_wrap("1"), parsing_timeout=None)  # warm up sympy/antlr before the clock starts
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    results.send("ready")
    while True:
        try:
            batch = requests.recv()
        except (EOFError, OSError):
            return  # parent went away
        if batch is None:
            return
        for gold, answer in batch:
            try:
                gold_parsed = parse(_wrap(gold), parsing_timeout=None)
                answer_parsed = parse(_wrap(answer), parsing_timeout=None)
                if not gold_parsed or not answer_parsed:
                    result = (False, "parse_failed")
                elif verify(gold_parsed, answer_parsed, timeout_seconds=None):
                    result = (True, "correct")
                else:
                    result = (False, "wrong")
            except MemoryError:
                results.send((False, "verifier_crashed"))
                return  # heap may be in a bad state; the parent starts a fresh one
            except Exception:
                result = (False, "verifier_crashed")
            results.send(result)


class _Worker:
    """One child process and the parent's ends of its two pipes."""

    def __init__(self, memory_limit_bytes: int):
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-P", "-c", _CHILD_BOOTSTRAP,
                    json.dumps(sys.path), os.path.abspath(__file__),
                    str(request_read), str(result_write),
                    str(memory_limit_bytes), str(os.getpid()),
                ],
                pass_fds=(request_read, result_write),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(request_write)
            os.close(result_read)
            raise
        finally:
            # Only the child may hold these, so each side sees EOF when the other dies.
            os.close(request_read)
            os.close(result_write)
        self.requests = Connection(request_write, readable=False)
        self.results = Connection(result_read, writable=False)
        if not self.results.poll(WORKER_START_TIMEOUT_S) or self._recv_or_none() != "ready":
            self.stop()
            raise RuntimeError("math-verify worker process failed to start")

    def _recv_or_none(self):
        try:
            return self.results.recv()
        except (EOFError, OSError):
            return None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Ask politely, then kill; always reaps the child."""
        if self.alive():
            try:
                self.requests.send(None)
                self.process.wait(0.5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.process.kill()
            self.process.wait()
        self.requests.close()
        self.results.close()


def _stop_worker_in(holder: list) -> None:
    """Finalizer shared by close(), __del__ and interpreter exit."""
    worker = holder[0]
    holder[0] = None
    if worker is not None:
        worker.stop()


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
        self._lock = threading.Lock()
        self._closed = False
        self._holder: list[_Worker | None] = [None]  # mutable so restarts stay finalizable
        # Runs on close(), on garbage collection, or at interpreter exit, whichever first.
        self._finalizer = weakref.finalize(self, _stop_worker_in, self._holder)

    # -- public API ---------------------------------------------------------
    def verify(self, gold: str, answer: str) -> Verdict:
        return self.verify_many([(gold, answer)])[0]

    def verify_many(self, pairs: list[tuple[str, str]]) -> list[Verdict]:
        """Verdicts in order; uncached unique pairs go to the worker in one batch."""
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
                for pair, verdict in zip(todo, self._run_batch(todo)):
                    results[pair] = verdict
                    if verdict.reason in _CACHEABLE_REASONS:
                        self._remember(pair, verdict)
            return [results[pair] for pair in pairs]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> "MathVerifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # weakref.finalize also fires on collection; this covers odd GC orders.
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    @property
    def worker_pid(self) -> int | None:
        """PID of the current child process, if one is running (for tests/ops)."""
        worker = self._holder[0]
        return worker.pid if worker is not None and worker.alive() else None

    # -- internals (caller holds the lock) -----------------------------------
    def _remember(self, pair: tuple[str, str], verdict: Verdict) -> None:
        self._cache[pair] = verdict
        self._cache.move_to_end(pair)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _live_worker(self) -> _Worker:
        worker = self._holder[0]
        if worker is not None and not worker.alive():
            _stop_worker_in(self._holder)
            worker = None
        if worker is None:
            worker = _Worker(self.memory_limit_bytes)
            self._holder[0] = worker
        return worker

    def _discard_worker(self) -> None:
        _stop_worker_in(self._holder)

    def _run_batch(self, pending: list[tuple[str, str]]) -> list[Verdict]:
        """Send the batch, read answers one by one, each with its own deadline.
        On timeout or crash that item scores 0 and the rest go to a new worker."""
        verdicts: list[Verdict] = []
        while len(verdicts) < len(pending):
            remaining = pending[len(verdicts):]
            worker = self._live_worker()
            try:
                worker.requests.send(remaining)
            except (OSError, ValueError):
                self._discard_worker()
                verdicts.append(Verdict(False, "verifier_crashed"))  # ensures progress
                continue
            for _ in remaining:
                if not worker.results.poll(self.timeout_s):
                    self._discard_worker()  # hung: kill it; restarted lazily
                    verdicts.append(Verdict(False, "verifier_timeout"))
                    break
                try:
                    correct, reason = worker.results.recv()
                except (EOFError, OSError):
                    self._discard_worker()
                    verdicts.append(Verdict(False, "verifier_crashed"))
                    break
                verdicts.append(Verdict(bool(correct), str(reason)))
                if reason == "verifier_crashed":
                    # The child may be exiting (MemoryError); rest go to a fresh one.
                    self._discard_worker()
                    break
        return verdicts
