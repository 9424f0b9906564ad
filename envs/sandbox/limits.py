"""Resource limits for one sandboxed sample.

Every number is per sample. Memory and CPU are per process (rlimits), so a sample's
worst case is ``max_processes * memory_bytes`` of address space; the defaults keep that
at 4 GiB. Environments take these as a plain dict from the config (``limits: {...}``),
so ``from_dict`` names unknown keys instead of failing with a bare TypeError.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

MIB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0  # whole sample: interpreter start, loading the code, every test
    cpu_s: int = 5  # RLIMIT_CPU per process (SIGXCPU, then SIGKILL one second later)
    memory_bytes: int = 512 * MIB  # RLIMIT_AS per process
    max_processes: int = 8  # processes (and threads) in the sandbox, the worker included
    file_size_bytes: int = 1 * MIB  # RLIMIT_FSIZE: the largest file a sample may write
    tmp_bytes: int = 16 * MIB  # size of the private /tmp (bubblewrap tmpfs)
    open_files: int = 64  # RLIMIT_NOFILE
    message_bytes: int = 4 * MIB  # largest value a sample may send back per call
    output_bytes: int = 64 * 1024  # stdout/stderr kept by run_program

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"sandbox limit {f.name} must be a number > 0, got {value!r}")
        if self.max_processes < 2:
            # The worker is one process; bubblewrap's reaper inside the pid namespace another.
            raise ValueError(f"sandbox limit max_processes must be >= 2, got {self.max_processes}")
        if self.memory_bytes < 64 * MIB:
            raise ValueError(
                f"sandbox limit memory_bytes={self.memory_bytes} is below 64 MiB; "
                "the Python interpreter alone needs about 30 MiB of address space"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | "SandboxLimits" | None) -> "SandboxLimits":
        if values is None:
            return cls()
        if isinstance(values, SandboxLimits):
            return values
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sandbox limit(s) {unknown}; known limits are {sorted(known)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
