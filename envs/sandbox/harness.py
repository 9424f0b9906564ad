"""The judge: the trusted half of scoring one sample, in its own process outside the sandbox.

The pool keeps one judge process per worker thread (``python -I -S -c JUDGE_BOOTSTRAP``)
and writes each job, with a per-execution random token, to its stdin. For each job the
judge

1. starts the worker in the sandbox and sends it the candidate's program;
2. runs the trusted setup code (e.g. the HumanEval prompt and its ``check``) in its own
   namespace, where each entry point is a ``RemoteFunction``: calling it sends the
   arguments to the worker and decodes the answer as plain data (``wire.decode``);
3. runs every test, counts the passes itself, and only then prints
   ``RLSCALE-VERDICT <token> <json>`` on its stdout.

Why this cannot be forged: the tests, expected values and the token never enter the
sandbox (no file, no argv, no environment variable; a pid namespace and another uid
keep the judge's memory out of reach), the candidate's stdout and stderr go to
/dev/null, and whatever the worker sends is decoded into genuine builtin values that
the judge compares. Early exits, patched builtins or asserts, always-equal objects and
fake success lines all act on the worker only; the judge just sees failed calls.
"""

from __future__ import annotations

import builtins
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

from . import wire
from .limits import SandboxLimits
from .runner import Backend, kill_tree, launch

VERDICT_PREFIX = "RLSCALE-VERDICT"
JUDGE_MEMORY_BYTES = 2 * 1024**3
EXIT_GRACE_S = 1.0  # for a worker told to stop (EOF) to exit by itself
DETAIL_CHARS = 160  # of a failure detail sent back (feedback, logs)
STATUSES = ("passed", "failed", "load_error", "missing_function", "timeout", "crashed",
            "test_setup_error", "sandbox_error")

# The pool runs this with `python -I -S -B -c JUDGE_BOOTSTRAP <the rlscale_envs dir>`.
# Stub packages let the judge load its modules without running envs/__init__.py (which
# imports gymnasium and numpy, not on the path with -S) or sandbox/__init__.py (the pool).
JUDGE_BOOTSTRAP = """\
import os, sys, types
for name, path in (("rlscale_envs", sys.argv[1]), ("rlscale_envs.sandbox", os.path.join(sys.argv[1], "sandbox"))):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from rlscale_envs.sandbox import harness
harness.judge_main()
"""


class _Abort(BaseException):
    """Stops the remaining tests: timeout, crash or protocol violation. A BaseException
    so that test code's own ``except Exception`` cannot swallow it."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class CandidateError(Exception):
    """The candidate's function raised an exception the judge has no builtin type for."""


def same(got, want) -> bool:
    """Type-strict deep equality for generated tests: True is not 1, 1.0 is not 1."""
    if type(got) is not type(want):
        return False
    if type(want) in (list, tuple):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    if type(want) is dict:
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    return got == want


class RemoteFunction:
    """Stands in for a candidate function inside the judge's test namespace."""

    def __init__(self, name: str, channel: "_Channel"):
        self.name, self.channel = name, channel

    def __call__(self, *args, **kwargs):
        return self.channel.call(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.name}>"


class _Channel:
    def __init__(self, request_fd: int, answer_fd: int, deadline: float, limits: SandboxLimits):
        self.request_fd, self.answer_fd = request_fd, answer_fd
        self.deadline, self.limits = deadline, limits
        self.calls = 0
        self.crashed = False  # the worker went away: worth asking why (a limit's signal?)
        self.timed_out = False
        self.last_result = None
        self.has_result = False

    def _wire(self, op, *args):
        """One wire operation; each way the sandboxed side can fail it becomes an _Abort."""
        try:
            return op(*args)
        except wire.WireTimeout:
            self.timed_out = True
            raise _Abort("timeout", f"exceeded the {self.limits.wall_s:g}s wall-clock limit") from None
        except wire.WireClosed:
            self.crashed = True
            raise _Abort("crashed", "the sandboxed process exited") from None
        except wire.WireError as exc:  # only recv raises it: a malformed frame from the sandbox
            self.crashed = True
            raise _Abort("crashed", f"the sandboxed process sent an invalid answer: {exc}") from None

    def send(self, message) -> None:
        self._wire(wire.send, self.request_fd, message, self.deadline)

    def receive(self):
        return self._wire(wire.recv, self.answer_fd, self.limits.message_bytes, self.deadline)

    def call(self, name: str, args: tuple, kwargs: dict):
        try:
            request = {"id": self.calls, "name": name, "args": wire.encode(list(args)),
                       "kwargs": wire.encode(dict(kwargs))}
        except wire.WireError as exc:  # a dataset problem, not the candidate's
            error = TypeError(f"the test passes an argument the sandbox cannot carry: {exc}")
            error.rlscale_harness = _detail(str(error))
            raise error from None
        if self.timed_out or self.crashed:  # test code swallowed an _Abort: stay stopped
            raise _Abort("timeout" if self.timed_out else "crashed", "the sandboxed process is gone")
        self.calls += 1
        self.send(request)
        answer = self.receive()
        if type(answer) is not dict or answer.get("id") != request["id"]:
            raise _Abort("crashed", "the sandboxed process answered out of turn")
        if "ok" in answer:
            try:
                value = wire.decode(answer["ok"])
            except wire.WireError as exc:
                raise _Abort("crashed", f"the sandboxed process sent an invalid value: {exc}") from None
            self.last_result, self.has_result = value, True
            return value
        if "exc" in answer:
            raise _candidate_exception(str(answer["exc"]), str(answer.get("message", "")))
        exc = CandidateError(f"{name}() returned a value that cannot leave the sandbox: "
                             f"{str(answer.get('unsendable', ''))}")
        exc.rlscale_candidate = _detail(str(exc))
        raise exc


def _candidate_exception(name: str, message: str) -> Exception:
    """A genuine judge-side exception for one the candidate raised: its builtin type when
    there is one (tests may expect a ValueError), else CandidateError. Tagged, so the
    verdict can tell a failing candidate from a failing check."""
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
        try:
            exc = kind(message)
        except Exception:  # noqa: BLE001 - e.g. UnicodeDecodeError needs five arguments
            exc = CandidateError(f"{name}: {message}")
    else:
        exc = CandidateError(f"{name}: {message}")
    exc.rlscale_candidate = f"{name}: {message}"[:DETAIL_CHARS]
    return exc


def _detail(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 3] + "..."


def _run_tests(job: dict, channel: _Channel) -> dict:
    """Setup, then every test; returns the verdict body. Only the judge decides."""
    tests, labels = job["tests"], job["labels"]
    namespace = {"__name__": "rlscale_tests", "_rlscale_same": same}
    try:
        exec(compile(job["setup"], "<test setup>", "exec"), namespace)
        compiled = [compile(test, f"<test {i}>", "exec") for i, test in enumerate(tests)]
    except Exception as exc:  # noqa: BLE001 - a broken dataset row, not the candidate's fault
        return {"status": "test_setup_error", "passed": 0, "failures": [],
                "message": _detail(f"{type(exc).__name__}: {exc}")}
    for name in job["entry_points"]:
        namespace[name] = RemoteFunction(name, channel)
    passed, failures, abort = 0, [], None
    for i, code in enumerate(compiled):
        channel.has_result = False
        failure = None
        try:
            exec(code, namespace)
        except _Abort as stop:
            abort, failure = stop, {"kind": stop.status, "detail": stop.message}
        except AssertionError:
            returned = f"returned {_detail(repr(channel.last_result))}" if channel.has_result else ""
            failure = {"kind": "wrong_answer", "detail": returned}
        except Exception as exc:  # noqa: BLE001
            if hasattr(exc, "rlscale_candidate"):
                failure = {"kind": "exception", "detail": exc.rlscale_candidate}
            elif hasattr(exc, "rlscale_harness"):
                failure = {"kind": "untestable", "detail": exc.rlscale_harness}
            else:  # e.g. comparing a str result with a number; the message could hold expected values
                failure = {"kind": "wrong_answer", "detail": f"checking the result raised {type(exc).__name__}"}
        if failure is None:
            passed += 1
        else:
            failures.append({"test": i, "label": labels[i] if i < len(labels) else f"test {i}", **failure})
        if abort is not None:
            break
    if abort is not None:
        return {"status": abort.status, "passed": passed, "failures": failures, "message": abort.message}
    return {"status": "passed" if passed == len(tests) else "failed", "passed": passed,
            "failures": failures, "message": ""}


def _read_head(file, limit: int) -> str:
    file.seek(0)
    return file.read(limit).decode("utf-8", errors="replace")


def _worker_sources() -> dict[str, str]:
    here = os.path.dirname(os.path.abspath(__file__))
    sources = {}
    for name in ("wire", "worker"):
        with open(os.path.join(here, f"{name}.py"), encoding="utf-8") as f:
            sources[name] = f.read()
    return sources


def _sandbox_argv(backend: Backend, extra: list[str]) -> list[str]:
    return [backend.python, "-I", "-S", "-B", *extra]


def _exit_signal(proc: subprocess.Popen) -> int | None:
    """The signal that ended the sandboxed worker, if it has ended: bwrap exits with
    128+N for a child killed by signal N, the fallback's unshare re-raises it."""
    try:
        code = proc.wait(timeout=0.2) if proc.poll() is None else proc.returncode
    except subprocess.TimeoutExpired:
        return None
    if code is None:
        return None
    if code < 0:
        return -code
    return code - 128 if code > 128 else None


def judge_tests(job: dict, backend: Backend, limits: SandboxLimits) -> dict:
    """Verdict for one candidate; a worker killed by a limit is named as such."""
    holder: dict = {}
    verdict = _judge_tests(job, backend, limits, holder)
    if verdict["status"] == "crashed" and holder.get("signal") in _LIMIT_SIGNALS:
        status, message = _LIMIT_SIGNALS[holder["signal"]]
        verdict["status"], verdict["message"] = status, message.format(limits=limits)
        for failure in verdict["failures"]:
            if failure["kind"] == "crashed":
                failure.update(kind=status, detail=verdict["message"])
    return verdict


_LIMIT_SIGNALS = {
    signal.SIGXCPU: ("timeout", "exceeded the {limits.cpu_s}s CPU-time limit"),
    signal.SIGXFSZ: ("crashed", "wrote a file larger than the {limits.file_size_bytes}-byte limit"),
}


def _judge_tests(job: dict, backend: Backend, limits: SandboxLimits, holder: dict) -> dict:
    from . import worker

    deadline = time.monotonic() + limits.wall_s
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    os.set_blocking(request_w, False)
    argv = _sandbox_argv(backend, ["-c", worker.BOOTSTRAP, str(limits.max_processes), str(request_r), str(answer_w)])
    with tempfile.TemporaryFile() as errors:
        try:
            proc = launch(backend, argv, limits, job["uid"], job["host_tmp"], pass_fds=(request_r, answer_w),
                          stderr=errors)
        finally:
            os.close(request_r)
            os.close(answer_w)
        channel = _Channel(request_w, answer_r, deadline, limits)
        try:
            try:
                channel.send(_worker_sources())  # the bootstrap's raw frame
                channel.send({"source": job["source"], "names": list(job["entry_points"])})
                loaded = channel.receive()
            except _Abort as stop:
                started = _read_head(errors, 2000)
                if stop.status == "crashed" and proc.poll() not in (None, 0) and "bwrap:" in started:
                    return {"status": "sandbox_error", "passed": 0, "failures": [], "message": _detail(started)}
                return {"status": stop.status, "passed": 0, "failures": [], "message": stop.message}
            if type(loaded) is not dict or not loaded.get("ok"):
                what = loaded if type(loaded) is dict else {}
                return {"status": "load_error", "passed": 0, "failures": [],
                        "message": _detail(f"{what.get('error', 'error')}: {what.get('message', '')}")}
            defined = loaded.get("defined") if type(loaded.get("defined")) is list else []
            missing = [n for n in job["entry_points"] if n not in defined]
            if missing:
                return {"status": "missing_function", "passed": 0, "failures": [],
                        "message": f"the program does not define {', '.join(missing)}"}
            return _run_tests(job, channel)
        finally:
            holder["signal"] = _exit_signal(proc) if channel.crashed else None
            # EOF first: a worker still listening exits, and its pid namespace is torn
            # down and reaped inside the sandbox before bwrap returns. A busy or hung
            # one gets SIGKILL at once.
            os.close(request_w)
            if not channel.timed_out:
                try:
                    proc.wait(timeout=EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
            kill_tree(proc)
            os.close(answer_r)


def judge_program(job: dict, backend: Backend, limits: SandboxLimits) -> dict:
    """Run a whole program (stdin given) and return its exit code and output."""
    from .worker import PROGRAM_BOOTSTRAP

    argv = _sandbox_argv(backend, ["-c", PROGRAM_BOOTSTRAP])
    started = time.monotonic()
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # The interpreter reads the program from stdin; the program itself then sees EOF.
        stdin.write(job["source"].encode())
        stdin.seek(0)
        proc = launch(backend, argv, limits, job["uid"], job["host_tmp"], stdin=stdin, stdout=out, stderr=err)
        timed_out = False
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_tree(proc)
        return {"status": "timeout" if timed_out else "ran", "returncode": proc.returncode,
                "stdout": _read_head(out, limits.output_bytes), "stderr": _read_head(err, limits.output_bytes),
                "seconds": time.monotonic() - started}


def _judge_one(job: dict) -> dict:
    limits = SandboxLimits(**job["limits"])
    backend = Backend(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["backend"].items()})
    started = time.monotonic()
    if job["kind"] == "tests":
        verdict = judge_tests(job, backend, limits)
        verdict["total"] = len(job["tests"])
    else:
        verdict = judge_program(job, backend, limits)
    verdict["seconds"] = round(time.monotonic() - started, 4)
    return verdict


def judge_main() -> None:
    """Serve jobs, one JSON line each on stdin, until EOF. The judge is long-lived (one
    per pool thread) so a sample pays for the sandbox's start, not the judge's; every
    sample still gets a fresh sandbox and a fresh test namespace."""
    resource.setrlimit(resource.RLIMIT_AS, (JUDGE_MEMORY_BYTES, JUDGE_MEMORY_BYTES))
    for line in sys.stdin.buffer:
        job = json.loads(line)
        try:
            verdict = _judge_one(job)
        except Exception as exc:  # noqa: BLE001 - one broken job must not end the judge
            verdict = {"status": "sandbox_error", "passed": 0, "failures": [],
                       "message": _detail(f"judge error {type(exc).__name__}: {exc}")}
        sys.stdout.write(f"{VERDICT_PREFIX} {job['token']} {json.dumps(verdict)}\n")
        sys.stdout.flush()
