"""Synced-weight directories: orphans of dead rollout workers are removed, nothing else."""

import os
import subprocess
import sys

from rlscale.tempdirs import WEIGHTS_PREFIX, remove_orphaned_weights


def test_only_dirs_of_dead_workers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now (reuse within this test is vanishingly unlikely)
    names = {"dead": f"{WEIGHTS_PREFIX}{dead.pid}-abc", "alive": f"{WEIGHTS_PREFIX}{os.getpid()}-def",
             "old_style": f"{WEIGHTS_PREFIX}xyz12345", "other": "someone-elses-dir"}
    for name in names.values():
        (tmp_path / name / "v3").mkdir(parents=True)
        (tmp_path / name / "v3" / "model.safetensors").write_bytes(b"x")
    remove_orphaned_weights(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["alive"], names["old_style"], names["other"]])


def test_a_streamed_safetensors_file_is_what_save_file_would_write(tmp_path):
    """shared_file's writer (safetensors_stream.py) takes one tensor at a time; safetensors
    reads the result back exactly, and a tensor that does not match its header entry leaves
    no file behind."""
    import pytest
    import torch
    from safetensors.torch import load_file

    from rlscale.safetensors_stream import write_streamed

    tensors = {"embed": torch.randn(5, 3, dtype=torch.bfloat16), "norm": torch.randn(3),
               "count": torch.arange(6).reshape(2, 3), "scalar": torch.tensor(2.5, dtype=torch.float16)}
    specs = [(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()]
    write_streamed(tmp_path / "model.safetensors", specs, iter(tensors.items()))
    back = load_file(tmp_path / "model.safetensors")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], v) for k, v in tensors.items())
    wrong = dict(tensors, norm=torch.randn(4))
    with pytest.raises(ValueError, match="norm"):
        write_streamed(tmp_path / "bad.safetensors", specs, iter(wrong.items()))
    assert not list(tmp_path.glob("bad.safetensors*"))
