"""The learner's weights as the rollout engines get them (weight_transfer.py): the whole
state dict (object_store), or a safetensors file streamed tensor by tensor (shared_file).
A mixin of Learner; a sharded rank (learner_rank.py) gathers each tensor in turn."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .safetensors_stream import write_streamed
from .tempdirs import WEIGHTS_PREFIX


class LearnerWeights:
    policy: torch.nn.Module  # set by Learner.__init__

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights for the rollout engine, on CPU, under HF checkpoint names (the value
        head is not part of the policy and stays here)."""
        return {k: v.contiguous() for k, v in self.weight_tensors()}

    def weight_specs(self) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        """(name, dtype, shape) of each weight state_dict() holds (a sharded one's full shape)."""
        return [(k, v.dtype, tuple(v.shape)) for k, v in self.policy.state_dict().items()]

    def weight_tensors(self):
        """The weights as (name, CPU tensor), one at a time, in weight_specs' order."""
        for name, value in self.policy.state_dict().items():
            yield name, value.detach().to("cpu")

    def writes_weights(self) -> bool:
        return True  # a sharded learner: rank 0 only

    def write_weights(self, weight_dir: str | None, version: int) -> str:
        """shared_file weight transfer (weight_transfer.py): the policy as safetensors under
        <weight_dir or /dev/shm>/rlscale-weights-<pid>-learner/v<version>/, which every engine
        reloads from. Streamed tensor by tensor into the file (safetensors_stream.py): the
        full state is never held beside it. The newest three versions stay: an engine may
        still be installing the one before. Returns the directory ("" on a rank that does
        not write)."""
        tensors = self.weight_tensors()  # a sharded learner gathers them one at a time (collective)
        if not self.writes_weights():
            for _ in tensors:  # every rank takes part in each gather
                pass
            return ""
        if getattr(self, "_weights_root", None) is None:
            parent = weight_dir or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
            self._weights_root = Path(tempfile.mkdtemp(prefix=f"{WEIGHTS_PREFIX}{os.getpid()}-learner-", dir=parent))
            atexit.register(shutil.rmtree, self._weights_root, True)
        path = self._weights_root / f"v{version}"
        path.mkdir(exist_ok=True)
        write_streamed(path / "model.safetensors", self.weight_specs(), tensors)  # whole, or not there
        for old in self._weights_root.glob("v*"):
            if int(old.name[1:]) < version - 2:
                shutil.rmtree(old, ignore_errors=True)
        return str(path)

    def delete_weight_files(self) -> None:
        if getattr(self, "_weights_root", None) is not None:
            shutil.rmtree(self._weights_root, ignore_errors=True)
            self._weights_root = None

