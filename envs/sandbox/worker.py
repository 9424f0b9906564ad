"""The process inside the sandbox: loads the candidate's program, then answers calls.

Trust: none. Once the candidate's code has run, it owns this process and may rewrite
anything here, so nothing here decides a verdict. The judge (outside the sandbox) sends
"call NAME with these arguments" and decodes the answer as plain data; it never sees
the expected values leave its own memory.

Started as ``python -I -S -c BOOTSTRAP MAX_PROCESSES REQUEST_FD ANSWER_FD``. The
bootstrap reads this file's source and ``wire.py``'s from the request pipe (there are no
files of ours in the sandbox) and calls ``main``.
"""

try:
    from . import wire  # imported as part of rlscale_envs.sandbox (judge side, tests)
except ImportError:  # inside the sandbox: the bootstrap registered `wire` top-level
    import wire

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # the judge is trusted; this only bounds mistakes

# First lines of every program started in the sandbox.
# - The fallback's `unshare --fork` hands down a blocked signal mask; a blocked SIGXCPU
#   would let a busy loop run on to the hard limit's SIGKILL.
# - As pid 1 of a pid namespace (the fallback's `unshare --pid`) the kernel shields a
#   process from default-action signals such as SIGXCPU, so the program carries on in a
#   child while pid 1 only reaps, then exits with the child's status (128+N for signal
#   N, as bubblewrap does), which tears the namespace down.
PREAMBLE = """\
import os, signal
signal.pthread_sigmask(signal.SIG_SETMASK, ())
signal.signal(signal.SIGXCPU, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
if os.getpid() == 1:
    _child = os.fork()
    if _child:
        os.closerange(3, 1 << 16)  # the judge must see EOF as soon as the child dies
        while True:
            try:
                _pid, _status = os.wait()
            except ChildProcessError:
                os._exit(1)
            if _pid == _child:
                _code = os.waitstatus_to_exitcode(_status)
                os._exit(128 - _code if _code < 0 else _code)
"""

# Runs first in the sandbox. Reads a frame of {module name: source} from the request
# pipe, loads them as top-level modules and hands over to worker.main.
BOOTSTRAP = PREAMBLE + """\
import json, os, struct, sys, types
def _read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(int(sys.argv[2]), n - len(data))
        if not chunk:
            os._exit(3)
        data += chunk
    return data
_modules = json.loads(_read(struct.unpack(">I", _read(4))[0]))
for _name in ("wire", "worker"):
    _module = types.ModuleType(_name)
    sys.modules[_name] = _module
    exec(compile(_modules[_name], _name + ".py", "exec"), _module.__dict__)
sys.modules["worker"].main(*map(int, sys.argv[1:4]))
"""

# Whole programs (SandboxPool.run_programs): the source arrives on stdin.
PROGRAM_BOOTSTRAP = PREAMBLE + """\
import sys
exec(compile(sys.stdin.read(), "<program>", "exec"), {"__name__": "__main__"})
"""


def _describe(exc: BaseException) -> tuple[str, str]:
    """(type name, message) of a candidate exception; its __str__ may itself misbehave."""
    name = type(exc).__name__
    try:
        message = str(exc)[:300]
    except BaseException:  # noqa: BLE001 - hostile __str__
        message = "<unprintable>"
    return (name if isinstance(name, str) else "Exception"), message


def _quiet_output() -> None:
    """Candidate prints go nowhere: only the answer pipe carries data to the judge."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(max_processes: int, request_fd: int, answer_fd: int) -> None:
    import os
    import resource
    import sys

    # Inside a user namespace the kernel counts processes per namespace, so this bounds
    # this sample alone (forks, threads, fork bombs), whoever started the sandbox.
    resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
    _quiet_output()
    sys.setrecursionlimit(3000)

    request = wire.recv(request_fd, MAX_REQUEST_BYTES)
    namespace = {"__name__": "candidate", "__builtins__": __builtins__}
    try:
        exec(compile(request["source"], "<candidate>", "exec"), namespace)
        loaded = {"ok": True, "defined": [n for n in request["names"] if callable(namespace.get(n))]}
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, anything
        name, message = _describe(exc)
        loaded = {"ok": False, "error": name, "message": message}
    wire.send(answer_fd, loaded)

    while True:
        try:
            call = wire.recv(request_fd, MAX_REQUEST_BYTES)
        except wire.WireClosed:
            os._exit(0)
        if call is None:
            os._exit(0)
        try:
            function = namespace[call["name"]]
            args = wire.decode(call["args"])
            kwargs = wire.decode(call["kwargs"])
            result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - a candidate's exit is just a failed call
            name, message = _describe(exc)
            answer = {"id": call["id"], "exc": name, "message": message}
        else:
            try:
                answer = {"id": call["id"], "ok": wire.encode(result)}
            except BaseException as exc:  # noqa: BLE001 - unserialisable or hostile result
                answer = {"id": call["id"], "unsendable": _describe(exc)[1]}
        wire.send(answer_fd, answer)
