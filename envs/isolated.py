"""Run a scoring function in a child interpreter, item by item, with a hard
wall-clock deadline per item, a memory limit and an audit hook. The one process
design behind both ``MathVerifier`` (``verify.py``) and the reasoning-gym scorer.

Why a child process: scorers can hang or eat memory on hostile answers (sympy on
``9^{9^{9^9}}``; reasoning-gym's ``score_answer`` runs sympy's ``parse_expr``, i.e.
``eval``, on the policy's answer for some tasks), and in-process timeouts such as
math-verify's use SIGALRM, which only works on the main thread (the trainer may call
us from a threaded Ray actor). In the child a hang costs one item
(``"scorer_timeout"``: the child is killed and replaced lazily), a crash costs one
item (``"scorer_crashed"``), an exception scores that item 0 (``"scorer_error"``),
and the audit hook refuses process creation, network access, file writes and
ctypes, so an answer cannot act on the host (``"scorer_error"``). The child gets a
minimal environment (no inherited tokens or keys) and no stdin/stdout.

The child is a fresh interpreter (fork+exec like multiprocessing's "spawn", so safe
from threaded parents) started with subprocess: "spawn" would re-run the parent's
``__main__`` script in the child (fatal without a ``__main__`` guard, and it drags
torch/ray imports into every restart). This module imports only the stdlib at top
level, so the child loads it by file path (not as part of its package, whose
``__init__`` would import gymnasium/numpy). Messages use multiprocessing's
Connection over two OS pipes; an orphan watchdog stops the child if the parent dies.

The child side is a *handler module* (a file path, stdlib-only top level) defining
``make_scorer(spec) -> callable(item) -> score | (score, reason)``; a bare score is
reported with reason ``"ok"``. ``spec`` and the items travel pickled.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection

START_TIMEOUT_S = 120.0  # interpreter + heavy imports on a busy 2-core box
MEMORY_LIMIT_BYTES = 2 * 1024**3

_BOOTSTRAP = """\
import importlib.util, json, sys
sys.path[:] = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("_rlscale_isolated", sys.argv[2])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module._child_main(*map(int, sys.argv[3:]))
"""

# Audit events refused in the child once the scorer is ready (prefix match).
_BLOCKED_EVENTS = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
    "subprocess.", "socket.", "ctypes.", "os.remove", "os.unlink", "os.rename", "os.rmdir",
    "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.symlink", "os.link", "os.utime",
    "shutil.", "pty.", "webbrowser.",
)


_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class BlockedBySandbox(PermissionError):
    """An OSError, so code that tolerates unwritable files (e.g. .pyc caching) still works."""


def _audit(event: str, args: tuple) -> None:
    if event.startswith(_BLOCKED_EVENTS):
        raise BlockedBySandbox(f"{event} is not allowed while scoring")
    # open(path, mode, flags) from both builtins.open and os.open: reading is fine.
    if event == "open" and len(args) > 2 and isinstance(args[2], int) and args[2] & _WRITE_FLAGS:
        raise BlockedBySandbox("writing files is not allowed while scoring")


def _exit_when_orphaned(parent_pid: int) -> None:
    """Child-side watchdog: if the parent dies without closing us, stop."""
    import time

    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _child_main(read_fd: int, write_fd: int, memory_limit_bytes: int, parent_pid: int) -> None:
    """Child: build the scorer, harden, then answer each batch item by item."""
    import importlib.util
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    requests = Connection(read_fd, writable=False)
    results = Connection(write_fd, readable=False)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    handler_file, spec = requests.recv()  # the first message says what to score with
    mod_spec = importlib.util.spec_from_file_location("_rlscale_isolated_handler", handler_file)
    handler = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(handler)
    score = handler.make_scorer(spec)  # imports and warm-up happen before the clock starts
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    sys.addaudithook(_audit)  # cannot be removed again from Python code
    results.send("ready")
    while True:
        try:
            batch = requests.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for item in batch:
            try:
                result = score(item)
                value, reason = result if isinstance(result, tuple) else (result, "ok")
                results.send((float(value), str(reason)))
            except MemoryError:
                results.send((None, "scorer_crashed"))
                return  # the heap may be broken; the parent starts a fresh child
            except BaseException as e:  # noqa: BLE001 - any failure of foreign code scores 0
                results.send((None, f"scorer_error: {type(e).__name__}"))


class _Child:
    """One child process and the parent's ends of its two pipes."""

    def __init__(self, handler_file: str, spec, memory_limit_bytes: int, start_timeout_s: float):
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOTSTRAP, json.dumps(sys.path), os.path.abspath(__file__),
                 str(request_read), str(result_write),
                 str(memory_limit_bytes), str(os.getpid())],
                # stdout: an answer may print(); keep it out of the trainer's log. stderr stays
                # so a failing start shows its traceback.
                pass_fds=(request_read, result_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if k in _KEPT_ENV},  # no inherited secrets
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
        try:
            self.requests.send((handler_file, spec))
        except OSError:
            pass  # the child died at once; reported as a failed start below
        ready = self.results.poll(start_timeout_s) and self._recv_or_none() == "ready"
        if not ready:
            self.stop()
            raise RuntimeError(f"isolated scorer for {os.path.basename(handler_file)} failed to start "
                               "(see the child's traceback above)")

    def _recv_or_none(self):
        try:
            return self.results.recv()
        except (EOFError, OSError):
            return None

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


def _stop_child_in(holder: list) -> None:
    """Finalizer shared by close(), __del__ and interpreter exit."""
    child, holder[0] = holder[0], None
    if child is not None:
        child.stop()


class IsolatedScorer:
    """``score_many(items) -> [(score | None, reason)]``; thread-safe; the child starts
    on first use and is stopped by ``close()``, garbage collection or interpreter exit."""

    def __init__(self, handler_file: str, spec, timeout_s: float = 5.0,
                 memory_limit_bytes: int = MEMORY_LIMIT_BYTES, start_timeout_s: float = START_TIMEOUT_S):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        pickle.dumps(spec)  # fail here, not in the child, if the spec cannot travel
        self.handler_file, self.spec = os.path.abspath(handler_file), spec
        self.timeout_s, self.memory_limit_bytes, self.start_timeout_s = timeout_s, memory_limit_bytes, start_timeout_s
        self._lock = threading.Lock()
        self._closed = False
        self._holder: list[_Child | None] = [None]  # mutable so restarts stay finalizable
        # Runs on close(), on garbage collection, or at interpreter exit, whichever first.
        self._finalizer = weakref.finalize(self, _stop_child_in, self._holder)

    @property
    def child_pid(self) -> int | None:
        child = self._holder[0]
        return child.process.pid if child is not None and child.alive() else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._finalizer()

    def __del__(self) -> None:
        # weakref.finalize also fires on collection; this covers odd GC orders.
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    def _live_child(self) -> _Child:
        child = self._holder[0]
        if child is not None and not child.alive():
            _stop_child_in(self._holder)
            child = None
        if child is None:
            child = _Child(self.handler_file, self.spec, self.memory_limit_bytes, self.start_timeout_s)
            self._holder[0] = child
        return child

    def score_many(self, items: list) -> list[tuple[float | None, str]]:
        """Each item gets its own deadline; after a timeout or crash the rest of the
        batch goes to a fresh child."""
        with self._lock:
            if self._closed:
                raise RuntimeError("IsolatedScorer is closed")
            out: list[tuple[float | None, str]] = []
            while len(out) < len(items):
                remaining = items[len(out):]
                child = self._live_child()
                try:
                    child.requests.send(remaining)
                except (OSError, ValueError):
                    _stop_child_in(self._holder)
                    out.append((None, "scorer_crashed"))  # ensures progress
                    continue
                for _ in remaining:
                    if not child.results.poll(self.timeout_s):
                        _stop_child_in(self._holder)  # hung: kill it; restarted lazily
                        out.append((None, "scorer_timeout"))
                        break
                    try:
                        score, reason = child.results.recv()
                    except (EOFError, OSError):
                        _stop_child_in(self._holder)
                        out.append((None, "scorer_crashed"))
                        break
                    out.append((score, reason))
                    if reason == "scorer_crashed":
                        # The child is exiting (MemoryError); the rest go to a fresh one.
                        _stop_child_in(self._holder)
                        break
            return out
