"""The pool's handle on one long-lived judge process (see harness.py for the judge itself).

Why long-lived: starting an interpreter and importing the judge costs about as much
as the sandbox itself, so each pool thread keeps one judge and sends it job after job.
Each job gets its own random token; a verdict counts only on the line that carries it.
A judge that misses its deadline or dies is killed (its sandbox dies with it) and
replaced on the next job; after ``MAX_JOBS`` jobs it is replaced anyway, so nothing
that trusted test code leaves behind can accumulate.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

from .harness import JUDGE_BOOTSTRAP, VERDICT_PREFIX
from .runner import sandbox_env

MAX_JOBS = 1000
# The directory of the rlscale_envs package itself (envs/ in a checkout).
ENVS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class JudgeFailed(Exception):
    """The judge gave no verdict: it timed out or died. The message says which."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class JudgeProcess:
    def __init__(self):
        self._errors = tempfile.TemporaryFile()  # the judge's stderr, read if it dies
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", JUDGE_BOOTSTRAP, ENVS_DIR],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
            env=sandbox_env(tempfile.gettempdir()), start_new_session=True,
        )
        self.jobs = 0
        self._buffer = b""

    @property
    def usable(self) -> bool:
        return self.process.poll() is None and self.jobs < MAX_JOBS

    def run(self, job: dict, timeout_s: float) -> dict:
        """Send one job (it must hold ``token``), return the verdict or raise JudgeFailed."""
        self.jobs += 1
        deadline = time.monotonic() + timeout_s
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            raise JudgeFailed("sandbox_error", f"the judge process is gone{self._stderr_tail()}") from None
        return self._read_verdict(f"{VERDICT_PREFIX} {job['token']} ".encode(), deadline)

    def _read_verdict(self, prefix: bytes, deadline: float) -> dict:
        fd = self.process.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.startswith(prefix):
                    return json.loads(line[len(prefix):])
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop(graceful=False)
                raise JudgeFailed("timeout", "the judge did not finish within the wall-clock limit")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                tail = self._stderr_tail()
                self.stop(graceful=False)
                raise JudgeFailed("sandbox_error", f"the judge exited without a verdict{tail}")
            self._buffer += chunk

    def _stderr_tail(self) -> str:
        try:
            self._errors.seek(0)
            tail = self._errors.read()[-500:].decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {tail}" if tail else ""

    def stop(self, graceful: bool = True) -> None:
        """End the judge and everything it started (its sandboxes die with it)."""
        if graceful and self.process.poll() is None:
            try:
                self.process.stdin.close()  # a healthy judge exits on EOF
                self.process.wait(timeout=2.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._errors.close()
