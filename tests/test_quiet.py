"""quiet.py: known-benign records are dropped by their exact message, nothing else is;
stale per-worker dirs are swept only when their pid is provably dead."""

import logging
import os
import subprocess
import sys
import warnings

import pytest

from rlscale import quiet
from rlscale.tempdirs import TEMP_PREFIX, WEIGHTS_PREFIX, sweep_stale_dirs

SET_NUM_THREADS = "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it."


@pytest.fixture
def captured(monkeypatch):
    """Install the filters (not verbose) and collect what the vLLM loggers still emit.
    The loggers' filters are put back afterwards, so other tests see them untouched."""
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    saved = {name: list(logging.getLogger(name).filters) for name in quiet.BENIGN}
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.name, record.getMessage()))

    handler = Keep()
    vllm = logging.getLogger("vllm")
    vllm.addHandler(handler)
    old_level = vllm.level
    vllm.setLevel(logging.DEBUG)
    with warnings.catch_warnings():
        quiet.install_filters()
        quiet.install_filters()  # idempotent: one filter per logger
        yield records
    vllm.removeHandler(handler)
    vllm.setLevel(old_level)
    for name, filters in saved.items():
        logging.getLogger(name).filters[:] = filters


def test_exact_messages_dropped_others_kept(captured):
    worker = logging.getLogger("vllm.v1.worker.cpu_worker")
    assert sum(isinstance(f, quiet.ExactMessageFilter) for f in worker.filters) == 1
    worker.warning("CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.")
    worker.warning("%s is not found in LD_PRELOAD. For best performance, please follow the section `set LD_PRELOAD` "
                   "in https://docs.vllm.ai/en/latest/getting_started/installation/cpu/ to setup required "
                   "pre-loaded libraries.", "libtcmalloc")
    logging.getLogger("vllm.engine.arg_utils").warning(
        "The global random seed is set to %d. Since VLLM_ENABLE_V1_MULTIPROCESSING is set to False, this may affect "
        "the random state of the Python process that launched vLLM.", 7)
    logging.getLogger("vllm.platforms.cpu").warning("Triton is not installed. triton-cpu is expected on x86 CPUs.")
    # The same logger's other messages, and near misses of a listed one, still show.
    worker.warning("Available memory on node 0 is less than desired")
    worker.warning(SET_NUM_THREADS + " (and more)")
    worker.error("prefix " + SET_NUM_THREADS)
    # A listed message from another logger is not the listed record: it shows.
    logging.getLogger("vllm.platforms.rocm").warning("Triton is not installed. triton-cpu is expected on x86 CPUs.")
    assert captured == [
        ("vllm.v1.worker.cpu_worker", "Available memory on node 0 is less than desired"),
        ("vllm.v1.worker.cpu_worker", SET_NUM_THREADS + " (and more)"),
        ("vllm.v1.worker.cpu_worker", "prefix " + SET_NUM_THREADS),
        ("vllm.platforms.rocm", "Triton is not installed. triton-cpu is expected on x86 CPUs."),
    ]


def test_python_warning_filtered_by_message_and_module(captured):
    msg = "`torch.distributed.reduce_op` is deprecated, please use `torch.distributed.ReduceOp` instead"
    with warnings.catch_warnings(record=True) as seen:
        quiet.install_filters()
        warnings.warn_explicit(msg, FutureWarning, "dispatcher.py", 138, module="vllm.triton_utils.dispatcher")
        warnings.warn_explicit(msg, FutureWarning, "mine.py", 1, module="rlscale.mine")  # elsewhere: shown
        warnings.warn_explicit(msg + " soon", FutureWarning, "dispatcher.py", 1, module="vllm.triton_utils.dispatcher")
    assert [(str(w.message), w.filename) for w in seen] == [(msg, "mine.py"), (msg + " soon", "dispatcher.py")]


def test_verbose_installs_nothing(monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    logger = logging.getLogger("vllm.config.vllm")
    before = list(logger.filters)
    quiet.install_filters()
    assert logger.filters == before


def test_forwarded_numa_line_dropped():
    numa = ("[W1130 18:43:10.396095151 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy for memory "
            "allocation on the NUMA nodes (0). Memory allocations will be strictly bound to these NUMA nodes. "
            "(function init_cpu_memory_env)")
    data = {"lines": [numa, "Traceback (most recent call last):", numa.replace("MEMBIND", "INTERLEAVE")]}
    quiet.drop_benign_lines(data)
    assert data["lines"] == ["Traceback (most recent call last):", numa.replace("MEMBIND", "INTERLEAVE")]


def test_stale_dirs_of_dead_pids_swept(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is free (reuse within this test is vanishingly unlikely)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the sweep looks in the temp dir (and /dev/shm)
    names = [f"{TEMP_PREFIX}{dead.pid}-a", f"{WEIGHTS_PREFIX}{dead.pid}-b",  # the dead worker's: removed
             f"{TEMP_PREFIX}{os.getpid()}-c", f"{WEIGHTS_PREFIX}{os.getpid()}-d",  # a live process's: kept
             f"{TEMP_PREFIX}nopid", "vllm_dist_0123abcd"]  # no provable owner: kept
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "vllm_dist_x").write_bytes(b"x")
    sweep_stale_dirs(wait_for=[dead.pid], wait_s=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
