"""Bounded concurrent pool: many samples, each judged in its own process and sandbox.

``run_tests_many`` is what environments call with a whole step's completions. At most
``max_workers`` samples run at once: threads that each drive one long-lived judge
process (judge_process.py), so the trainer's own threads and GIL stay free. Whatever a
sample does, its entry comes back as a verdict: a judge that hangs is killed after the
wall limit plus a margin ("timeout"), one that dies or prints no verdict with the job's
token gives "sandbox_error". The trainer never sees an exception from a sample.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import tempfile
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from .judge_process import JudgeFailed, JudgeProcess
from .limits import SandboxLimits
from .runner import detect_backend
from .slots import DEFAULT_UID_BASE, DEFAULT_UID_COUNT, SlotAllocator, sweep

log = logging.getLogger(__name__)

# Time a judge may take beyond the sample's wall limit: its first start, the sandbox's
# start and the test setup, on a loaded machine.
JUDGE_MARGIN_S = 20.0


@dataclass(frozen=True)
class TestJob:
    """One candidate program and the trusted tests it must pass."""

    program: str  # the candidate's code: runs in the sandbox only
    entry_points: tuple[str, ...]  # functions of `program` the tests call
    tests: tuple[str, ...]  # trusted snippets, each run by the judge; one passes if it raises nothing
    setup: str = ""  # trusted code the judge runs first (helpers, `check`, imports)
    labels: tuple[str, ...] = ()  # how feedback names each test; never its expected value

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestVerdict:
    status: str  # see harness.STATUSES
    passed: int
    total: int
    failures: tuple[dict, ...] = ()  # {"test", "label", "kind", "detail"} per failed test
    message: str = ""
    seconds: float = 0.0

    __test__ = False

    @property
    def all_passed(self) -> bool:
        return self.status == "passed" and self.total > 0 and self.passed == self.total


@dataclass(frozen=True)
class ProgramResult:
    status: str  # "ran", "timeout" or "sandbox_error"
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    message: str = field(default="")


def _remove_tree(path: str) -> None:
    def allow_and_retry(function, failed_path, _exc):
        try:  # a sample may have taken the write bit off its own directories
            os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
            os.chmod(failed_path, stat.S_IRWXU)
            function(failed_path)
        except OSError:
            pass

    shutil.rmtree(path, onerror=allow_and_retry)


def _stop_judges(judges: list[JudgeProcess], lock: threading.Lock) -> None:
    with lock:
        stopping = list(judges)
        judges.clear()
    for judge in stopping:
        judge.stop()


class SandboxPool:
    """``uid_range`` = (first uid, count): the unprivileged uids samples run as when the
    trainer is root (see slots.py); pick another range if 64000-64511 is in use here."""

    def __init__(self, limits: Mapping[str, Any] | SandboxLimits | None = None, max_workers: int | None = None,
                 backend: str = "auto", python: str | None = None,
                 uid_range: Sequence[int] = (DEFAULT_UID_BASE, DEFAULT_UID_COUNT)):
        self.limits = SandboxLimits.from_dict(limits)
        self.max_workers = int(max_workers or os.cpu_count() or 1)
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if len(uid_range) != 2 or not all(isinstance(v, int) and v > 0 for v in uid_range):
            raise ValueError(f"uid_range must be [first uid, count] of positive integers, got {uid_range!r}")
        self.uid_range = (int(uid_range[0]), int(uid_range[1]))
        self._slots = SlotAllocator(*self.uid_range) if os.geteuid() == 0 else None
        slot = self._slots.acquire() if self._slots else None
        try:  # probes once per process; raises with the reason if nothing can run samples
            self.backend = detect_backend(backend, python, slot.uid if slot else None)
        finally:
            if slot:
                sweep(slot.uid)
                slot.release()
        self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="rlscale-sandbox")
        self._local = threading.local()  # each pool thread's JudgeProcess
        self._judges: list[JudgeProcess] = []
        self._judges_lock = threading.Lock()
        # A pool dropped without close() still ends its judges (they would exit at EOF anyway).
        self._finalizer = weakref.finalize(self, _stop_judges, self._judges, self._judges_lock)

    # ---- public API ----------------------------------------------------------------
    def run_tests_many(self, jobs: Sequence[TestJob]) -> list[TestVerdict]:
        payloads = [{"kind": "tests", "source": j.program, "entry_points": list(j.entry_points),
                     "tests": list(j.tests), "setup": j.setup, "labels": list(j.labels)} for j in jobs]
        return [self._to_verdict(r, len(j.tests)) for r, j in zip(self._run_all(payloads), jobs)]

    def run_programs(self, sources: Sequence[str]) -> list[ProgramResult]:
        """Run whole programs in the sandbox; stdout/stderr kept up to limits.output_bytes."""
        results = self._run_all([{"kind": "program", "source": s} for s in sources])
        return [ProgramResult(r.get("status", "sandbox_error"), r.get("returncode"), r.get("stdout", ""),
                              r.get("stderr", ""), r.get("seconds", 0.0), r.get("message", "")) for r in results]

    @property
    def judge_pids(self) -> set[int]:
        """The long-lived judge processes (children of this process, by design)."""
        with self._judges_lock:
            return {j.process.pid for j in self._judges if j.process.poll() is None}

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- internals -----------------------------------------------------------------
    @staticmethod
    def _to_verdict(raw: dict, total: int) -> TestVerdict:
        return TestVerdict(status=str(raw.get("status", "sandbox_error")), passed=int(raw.get("passed", 0)),
                           total=total, failures=tuple(raw.get("failures", ())), message=str(raw.get("message", "")),
                           seconds=float(raw.get("seconds", 0.0)))

    def _run_all(self, payloads: list[dict]) -> list[dict]:
        return list(self._executor.map(self._run_one_safely, payloads))

    def _run_one_safely(self, payload: dict) -> dict:
        try:
            return self._run_one(payload)
        except Exception as exc:  # noqa: BLE001 - one sample must never take the trainer down
            log.exception("sandbox job failed")
            return {"status": "sandbox_error", "message": f"{type(exc).__name__}: {exc}"[:300]}

    def _run_one(self, payload: dict) -> dict:
        slot = self._slots.acquire() if self._slots else None
        host_tmp = None
        try:
            if self.backend.needs_host_tmp:
                host_tmp = tempfile.mkdtemp(prefix="rlscale-sandbox-")
                if slot:
                    os.chown(host_tmp, slot.uid, slot.uid)
            job = {**payload, "token": secrets.token_hex(16), "uid": slot.uid if slot else None,
                   "host_tmp": host_tmp, "limits": self.limits.to_dict(), "backend": asdict(self.backend)}
            return self._judge(job)
        finally:
            if slot:
                sweep(slot.uid)  # anything that outlived its namespace (the fallback's, mostly)
            if host_tmp:
                _remove_tree(host_tmp)
            if slot:
                slot.release()

    def _judge(self, job: dict) -> dict:
        judge = getattr(self._local, "judge", None)
        if judge is None or not judge.usable:
            if judge is not None:
                judge.stop()
            judge = self._local.judge = JudgeProcess()
            with self._judges_lock:
                self._judges.append(judge)
        try:
            return judge.run(job, self.limits.wall_s + JUDGE_MARGIN_S)
        except JudgeFailed as failure:
            if failure.status != "timeout":
                log.warning("sandbox judge failed: %s", failure.message)
            return {"status": failure.status, "message": failure.message}
