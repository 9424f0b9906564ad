"""Checkpoints: <run_dir>/checkpoints/step-NNNNNN/, each written whole or not at all.

A checkpoint holds what a run needs to continue from its step:
- policy/: the policy in HF format with the base model's tokenizer files beside it, so a
  later run can start from it (`model.path=<run_dir>/checkpoints/step-NNNNNN/policy`);
- learner_state.pt: the optimizer, the PPO value head, the policy version and torch's RNG
  (Learner.save_checkpoint);
- loop_state.json: the driver's side (LoopState): step, policy version, cumulative totals,
  the prompt sampler's RNG state, the retired prompts, the evaluations so far, and the byte
  length of metrics.jsonl and samples.jsonl at this step, so a resume can cut the logs back
  to exactly this step.

It is written into checkpoints/.tmp-step-NNNNNN and renamed into place once complete (a
rename within one directory is atomic on POSIX), so a run killed mid-write leaves no half
checkpoint under a step's name; the next write removes the leftover .tmp directory. The
learner actor writes its part itself: on a multi-node cluster the run directory must be on
a filesystem the learner's node shares (as for `rlscale sweep --ray-address`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

# What a tokenizer may consist of; whichever of these the base model has are copied.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "tokenizer.model", "added_tokens.json", "chat_template.jinja", "generation_config.json")


@dataclass
class LoopState:
    """The driver's part of a checkpoint (loop_state.json)."""

    step: int
    policy_version: int
    totals: dict
    sampler_rng: dict  # numpy Generator.bit_generator.state before step+1's prompts are drawn
    # Batches whose draws had begun beyond `step` when the state was taken: 0 in sync mode; in
    # async mode up to k. sampler_rng is the state before them, so a resume draws them again.
    # (Checkpoints written before 2026-11-30 hold the state after them: those prompts are skipped.)
    sampler_ahead: int
    retired_prompts: list[str] | None
    evals: list[dict]  # every evaluation row so far (step, policy_version, val_*)
    metrics_bytes: int
    samples_bytes: int
    cumulative_s: float = 0.0  # the loop's seconds so far (a resumed run's cumulative_s goes on from it)
    learner_state_hash: str = ""
    written_unix: float = 0.0


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (a .tmp directory is not one)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "loop_state.json").is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def read_loop_state(ckpt: Path) -> LoopState:
    return LoopState(**json.loads((Path(ckpt) / "loop_state.json").read_text()))


def write_checkpoint(run_dir: Path, state: LoopState, save_learner: Callable[[str], str], base_model: str,
                     keep: int) -> Path:
    """Write the checkpoint of `state.step` (see the module docstring) and prune all but the
    newest `keep`. save_learner(path) writes the learner's part and returns its state hash."""
    run_dir = Path(run_dir).resolve()
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".tmp-*"):  # a write killed half-way
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = root / f".tmp-step-{state.step:06d}"
    state.learner_state_hash = save_learner(str(tmp))
    for name in TOKENIZER_FILES:
        src = Path(base_model) / name
        if src.is_file() and not (tmp / "policy" / name).exists():
            shutil.copy2(src, tmp / "policy" / name)
    state.written_unix = time.time()
    (tmp / "loop_state.json").write_text(json.dumps(asdict(state)))
    final = checkpoint_dir(run_dir, state.step)
    if final.exists():  # the same step written again: the newer one wins
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable (a crash right after it must not undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
