"""Temp dirs of rollout workers, and the sweep of those a dead worker left behind.

A worker writes each synced policy (GB-scale for real models) under /dev/shm or the temp
dir, and vLLM's in-process engine leaves a rendezvous file; a killed actor's exit
handlers do not run. Every such dir is named after its owner's pid, so a later worker or
driver removes exactly those whose owner is provably dead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

WEIGHTS_PREFIX = "rlscale-weights-"


def weights_parent(model_path: str) -> str | None:
    """Where synced weights are written for the engine to reload: shared memory
    (/dev/shm, a tmpfs) when it has room for two copies of the model's weights, so a
    sync never touches a disk; else the temp dir. (A learner on another host sends the
    weights through Ray; the engine's host writes them locally either way.)"""
    shm = Path("/dev/shm")
    need = 2 * sum(f.stat().st_size for f in Path(model_path).glob("*.safetensors"))
    if shm.is_dir() and os.access(shm, os.W_OK) and need and shutil.disk_usage(shm).free > need:
        return str(shm)
    return None


TEMP_PREFIX = "rlscale-tmp-"


def remove_orphaned(parent: str | None, prefix: str = WEIGHTS_PREFIX) -> None:
    """Delete `prefix<pid>-*` dirs left by rollout workers that died without cleaning up
    (a killed actor, a crashed run): in /dev/shm they would hold memory until reboot. A dir
    is named after its worker's pid and is removed only when no process has that pid; a
    name without a pid is never touched."""
    for d in Path(parent or tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = d.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        if not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def remove_orphaned_weights(parent: str | None) -> None:
    remove_orphaned(parent, WEIGHTS_PREFIX)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def sweep_stale_dirs(model_path: str | None = None, wait_for: list[int] = (), wait_s: float = 5.0) -> None:
    """Everything a dead rollout worker can leave on this host: its synced weights (in
    /dev/shm or the temp dir) and its private temp dir (vLLM's vllm_dist_* rendezvous file
    among its contents). wait_for: pids of workers just killed (a kill takes a moment), waited
    for up to wait_s; a process still alive then keeps its dirs, for a later sweep. Errors are
    swallowed: cleanup must not mask a run's own error."""
    pids = [p for p in wait_for if isinstance(p, int)]
    deadline = time.time() + wait_s
    while pids and time.time() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.1)
    system_tmp = tempfile.gettempdir()
    for parent in {"/dev/shm", system_tmp} | ({weights_parent(model_path) or system_tmp} if model_path else set()):
        try:
            if Path(parent).is_dir():
                remove_orphaned(parent, WEIGHTS_PREFIX)
                remove_orphaned(parent, TEMP_PREFIX)
        except OSError:
            pass


def private_tempdir() -> Path:
    """A temp dir for this actor process alone, named by its pid, made the process's
    default temp dir. vLLM's in-process engine leaves a torch FileStore file,
    /tmp/vllm_dist_<uuid>, that nothing removes when the actor is killed and whose name
    says nothing of its owner; inside this dir it goes with the dir: at exit, or, after a
    kill, in the sweep of the next worker or driver (remove_orphaned)."""
    d = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
    tempfile.tempdir = str(d)
    atexit.register(shutil.rmtree, d, True)
    return d
