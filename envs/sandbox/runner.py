"""How one sandboxed process is started: bubblewrap where it works, else a fallback.

bubblewrap (``bwrap``) gives each sample new user, pid, network, ipc, uts and cgroup
namespaces; a read-only view of the system directories the interpreter needs (/usr
and the /bin, /lib links; nothing of /work, /root, /home, site-packages or the
datasets); a private size-capped tmpfs as /tmp; fresh /proc and /dev; an empty
environment apart from PATH, HOME, LANG and TMPDIR; and ``--die-with-parent``, so the
whole pid namespace dies with the judge that started it.

The fallback (bwrap missing or unusable, or ``backend="fallback"``) keeps the rlimits,
the minimal environment and, where the ``unshare`` tool may create them, network, pid,
ipc and uts namespaces. It has no filesystem isolation; ``detect_backend`` warns once
per process naming what is missing.

Rlimits are applied in the judge's ``preexec_fn`` (the judge is single-threaded, where
preexec_fn is safe), so they bind from the sandbox's first instruction.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass

from .limits import SandboxLimits

log = logging.getLogger(__name__)

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
BACKENDS = ("auto", "bwrap", "fallback")
PROBE_TIMEOUT_S = 60.0  # first start of an interpreter on a busy machine
_PR_SET_PDEATHSIG = 1


def sandbox_env(home: str) -> dict[str, str]:
    """The whole environment a sample sees: nothing inherited, so no secrets."""
    return {"PATH": SANDBOX_PATH, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Backend:
    name: str  # "bwrap" or "fallback"
    python: str  # interpreter run inside the sandbox (stdlib only: -I -S)
    unshare_flags: tuple[str, ...] = ()  # fallback: namespaces `unshare` may create here
    missing: tuple[str, ...] = ()  # protections this backend lacks (empty for bwrap)

    @property
    def needs_host_tmp(self) -> bool:
        """bwrap makes its own tmpfs; the fallback works in a host temp dir."""
        return self.name != "bwrap"

    def command(self, argv: list[str], limits: SandboxLimits, uid: int | None, host_tmp: str | None) -> list[str]:
        """Full argv that runs ``argv`` (starting with self.python) in the sandbox."""
        if self.name == "bwrap":
            return _bwrap_prefix(self.python, limits) + ["--"] + argv
        prefix = ["unshare", *self.unshare_flags] if self.unshare_flags else []
        if prefix and uid is not None:
            prefix += ["--setgid", str(uid), "--setuid", str(uid)]  # root runs unshare, then drops
        return prefix + (["--"] if prefix else []) + argv

    def launch_user(self, uid: int | None) -> int | None:
        """Uid Popen switches to before exec: bwrap runs unprivileged as the slot uid;
        the fallback's `unshare` needs root and drops to the slot uid itself."""
        if uid is None or (self.name == "fallback" and self.unshare_flags):
            return None
        return uid


def _bwrap_prefix(python: str, limits: SandboxLimits) -> list[str]:
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr"]
    for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
    if not (prefix + "/").startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]  # an interpreter outside /usr (e.g. /opt/python)
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp",
             "--clearenv"]
    for key, value in sandbox_env("/tmp").items():
        args += ["--setenv", key, value]
    return args


# ---- starting and stopping (judge side) ----------------------------------------------
def _limit_self(limits: SandboxLimits, nproc: int | None) -> None:
    """preexec_fn: runs in the forked child, after the switch to the slot uid."""
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if nproc is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    # If the judge dies, so does the sandbox (bwrap passes this on with --die-with-parent).
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def launch(backend: Backend, argv: list[str], limits: SandboxLimits, uid: int | None, host_tmp: str | None,
           pass_fds: tuple[int, ...] = (), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """Start ``argv`` in the sandbox. Only from a single-threaded process (the judge)."""
    # Leave room for bubblewrap's own two processes (outer monitor, pid-namespace reaper)
    # at the uid level; the worker tightens RLIMIT_NPROC to max_processes itself.
    nproc = limits.max_processes + 2 if uid is not None else None
    return subprocess.Popen(
        backend.command(argv, limits, uid, host_tmp),
        stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=pass_fds,
        cwd=host_tmp or "/", env=sandbox_env(host_tmp or "/tmp"),
        user=backend.launch_user(uid), group=backend.launch_user(uid),
        extra_groups=[] if backend.launch_user(uid) is not None else None,
        start_new_session=True,
        preexec_fn=lambda: _limit_self(limits, nproc),
    )


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's session and reap the launcher. With bwrap (and the
    fallback's pid namespace) the kernel then kills everything inside."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()


# ---- choosing a backend (pool side; may be a threaded process: no preexec_fn) ---------
_detected: dict[str, Backend] = {}
_detect_lock = threading.Lock()
_warned_fallback = False


def _python_candidates(python: str | None) -> list[str]:
    """The interpreter needs only the stdlib; the trainer's own may live where the
    sandbox uid cannot read it (e.g. root's pyenv), so the system python3 is next."""
    if python:
        return [python]
    found = []
    for path in (getattr(sys, "_base_executable", None), sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if path and os.path.exists(path) and os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))
    return found


def _probe(backend: Backend, uid: int | None) -> tuple[bool, str]:
    """Run a trivial program through the real launch path; (works, why not)."""
    cmd = backend.command([backend.python, "-I", "-S", "-c", "import sys; print(sys.version_info >= (3, 8))"],
                          SandboxLimits(), uid, None)
    try:
        run = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, cwd="/",
                             env=sandbox_env("/tmp"), user=backend.launch_user(uid),
                             group=backend.launch_user(uid),
                             extra_groups=[] if backend.launch_user(uid) is not None else None,
                             start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if run.returncode == 0 and run.stdout.strip() == b"True":
        return True, ""
    return False, (run.stderr or run.stdout).decode(errors="replace").strip()[-300:] or f"exit {run.returncode}"


def _fallback_flags(python: str, uid: int | None) -> tuple[str, ...]:
    """The strongest set of namespaces `unshare` can create here (root or user ns)."""
    if shutil.which("unshare") is None:
        return ()
    base = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts")
    variants = [base] if os.geteuid() == 0 else [("--user",) + base, ("--user", "--net")]
    for flags in variants:
        if _probe(Backend("fallback", python, flags), uid)[0]:
            return flags
    return ()


def _missing(flags: tuple[str, ...], uid: int | None) -> tuple[str, ...]:
    missing = ["no read-only view of the host filesystem and no private /tmp: a sample can read every "
               "file its user can read (dataset files included, e.g. HumanEval's tests in site-packages) "
               "and write wherever that user may write"]
    if "--net" not in flags:
        missing.append("no network isolation")
    if "--pid" not in flags:
        missing.append("no pid namespace: a process that leaves the sample's session can outlive it")
    if uid is None:
        missing.append("samples run as your own user: they can signal your other processes, the trainer "
                       "included, and RLIMIT_NPROC counts all your processes")
    return tuple(missing)


def detect_backend(preference: str = "auto", python: str | None = None, uid: int | None = None) -> Backend:
    """The backend to use, probed once per process (and per preference/python).

    ``auto``: bwrap if a trial run works, else the fallback with a one-time warning.
    ``bwrap``: bwrap or a RuntimeError saying why not. ``fallback``: force the fallback.
    ``uid``: the slot uid the probe runs as (root trainers), None otherwise.
    """
    global _warned_fallback
    if preference not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {preference!r}; expected one of {BACKENDS}")
    key = f"{preference}|{python}"
    with _detect_lock:
        if key in _detected:
            return _detected[key]
        pythons = _python_candidates(python)
        if not pythons:
            raise RuntimeError("no python3 interpreter found for the sandbox; install python3 or pass python=...")
        why_not = "backend='fallback' was requested"
        backend = None
        if preference != "fallback":
            if shutil.which("bwrap") is None:
                why_not = "bwrap is not installed (apt-get install bubblewrap)"
            else:
                reasons = []
                for candidate in pythons:
                    ok, reason = _probe(Backend("bwrap", candidate), uid)
                    if ok:
                        backend = Backend("bwrap", candidate)
                        break
                    reasons.append(f"{candidate}: {reason}")
                why_not = "bwrap trial run failed (" + "; ".join(reasons) + ")"
            if backend is None and preference == "bwrap":
                raise RuntimeError(f"sandbox backend 'bwrap' requested but unusable: {why_not}")
        if backend is None:
            for candidate in pythons:
                flags = _fallback_flags(candidate, uid)
                if flags or _probe(Backend("fallback", candidate), uid)[0]:
                    backend = Backend("fallback", candidate, flags, _missing(flags, uid))
                    break
            else:
                raise RuntimeError(f"the sandbox cannot start any of {pythons} as uid {uid}; {why_not}")
            if not _warned_fallback:
                _warned_fallback = True
                message = (f"rlscale sandbox: using the weaker fallback (rlimits + unshare {' '.join(flags) or 'none'}) "
                           f"because {why_not}. Missing: " + "; ".join(backend.missing) + ".")
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                log.warning(message)
        _detected[key] = backend
        return backend


def _reset_detection_for_tests() -> None:
    global _warned_fallback
    with _detect_lock:
        _detected.clear()
        _warned_fallback = False
