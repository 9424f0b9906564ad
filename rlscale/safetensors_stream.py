"""A safetensors file written one tensor at a time: the header first (every tensor's
name, dtype, shape and byte range, known before any data), then each tensor's bytes as it
arrives. A sharded learner gathers one parameter at a time into it, so the full state is
never held in memory beside the file (safetensors' save_file needs the whole dict).

Format (huggingface/safetensors): 8-byte little-endian header length, a JSON header padded
with spaces to a multiple of 8, then the tensors' bytes back to back, row-major.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def write_streamed(path: str | Path, specs: list[tuple[str, torch.dtype, tuple[int, ...]]],
                   tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """specs: (name, dtype, shape) of each tensor, in the order `tensors` yields them.
    Written to path + '.tmp' and renamed: the file is whole, or not there."""
    header, offset = {}, 0
    for name, dtype, shape in specs:
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = Path(f"{path}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for (name, tensor), (spec_name, dtype, shape) in zip(tensors, specs, strict=True):
                if name != spec_name or tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                    raise ValueError(f"tensor {name} {tensor.dtype} {tuple(tensor.shape)} does not match its "
                                     f"header entry {spec_name} {dtype} {tuple(shape)}")
                f.write(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
