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
