"""Unprivileged user ids for sandboxed samples, one per running sample.

Why: the kernel ignores RLIMIT_NPROC for root, and a user namespace that root creates
still counts as root, so a sample started by a root trainer could fork without bound.
Run as root, the pool therefore starts every sample as its own unused uid
(``base .. base+count-1``): RLIMIT_NPROC then holds, the sample cannot touch root's
files or processes, and once it ends every process of that uid can be killed without
hitting anyone else's (``sweep``).

Slots are claimed with ``flock`` on one file per uid, so several processes (rollout
workers, the trainer's train and validation environments) share the range safely; a
lock dies with its holder, so a crashed trainer leaks no slot.

Not root: samples run as the caller's own uid; ``SlotAllocator`` is not used.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from dataclasses import dataclass

DEFAULT_UID_BASE = 64000  # Debian leaves 60000-64999 to dynamic/global allocation; we use the top
DEFAULT_UID_COUNT = 512
# /run is root's and memory-backed; a container without it uses the temp dir instead.
LOCK_DIR = "/run/rlscale-sandbox-slots" if os.access("/run", os.W_OK) else "/tmp/rlscale-sandbox-slots-root"


@dataclass
class Slot:
    uid: int
    _fd: int

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1


class SlotAllocator:
    def __init__(self, base: int = DEFAULT_UID_BASE, count: int = DEFAULT_UID_COUNT, lock_dir: str = LOCK_DIR):
        if os.geteuid() != 0:
            raise RuntimeError("SlotAllocator is for a root trainer only (it switches samples to other uids)")
        self.base, self.count, self.lock_dir = int(base), int(count), lock_dir
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        info = os.stat(lock_dir)
        if info.st_uid != 0 or info.st_mode & 0o022:
            raise RuntimeError(
                f"{lock_dir} must be owned by root and not writable by others (uid {info.st_uid}, "
                f"mode {oct(info.st_mode & 0o777)}); remove it and retry"
            )
        self._next = os.getpid() % self.count  # spread processes over the range
        self._swept: set[int] = set()

    def acquire(self, timeout_s: float = 60.0) -> Slot:
        """A free uid; waits while every uid is busy (more samples than the range)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i in range(self.count):
                index = (self._next + i) % self.count
                uid = self.base + index
                fd = os.open(os.path.join(self.lock_dir, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._next = (index + 1) % self.count
                if uid not in self._swept:
                    # A holder that was SIGKILLed may have left processes; ours sweep on release.
                    sweep(uid)
                    self._swept.add(uid)
                return Slot(uid, fd)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"all {self.count} sandbox uids ({self.base}..{self.base + self.count - 1}) stayed busy "
                    f"for {timeout_s:.0f}s; lower the number of concurrent samples"
                )
            time.sleep(0.05)


def _pids_of_uid(uid: int) -> list[int]:
    """Live processes whose real, effective, saved or filesystem uid is ``uid``. Zombies
    are left out: they are dead already, and init reaps them."""
    pids, wanted = [], str(uid).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue  # exited meanwhile
        state = uid_line = b""
        for line in status.splitlines():
            if line.startswith(b"State:"):
                state = line
            elif line.startswith(b"Uid:"):
                uid_line = line
                break
        if wanted in uid_line.split()[1:] and b"(zombie)" not in state and b"(dead)" not in state:
            pids.append(int(entry))
    return pids


def sweep(uid: int, rounds: int = 50) -> int:
    """SIGKILL every process running as ``uid``; repeats while a fork race adds more.
    Returns how many were killed. Only for uids this process holds a slot for."""
    killed = 0
    for _ in range(rounds):
        pids = _pids_of_uid(uid)
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return killed
