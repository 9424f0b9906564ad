"""Sandbox for generated code: one process per sample, resource limits, no network, read-only host.

Standard library only (the judge process loads this package without site-packages).
See docs/envs-code.md for the design and what the fallback lacks.
"""

from .limits import SandboxLimits
from .pool import ProgramResult, SandboxPool, TestJob, TestVerdict
from .runner import Backend, detect_backend

__all__ = ["Backend", "ProgramResult", "SandboxLimits", "SandboxPool", "TestJob", "TestVerdict", "detect_backend"]
