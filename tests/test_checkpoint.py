"""Checkpoints: written whole or not at all, pruned to `keep`, and a learner restored from
one continues exactly. (A real run's checkpoints: tests/test_resume.py.)"""

from pathlib import Path

import pytest

from rlscale.checkpoint import LoopState, complete_checkpoints, latest_checkpoint, read_loop_state, write_checkpoint


def _state(step: int) -> LoopState:
    return LoopState(step=step, policy_version=step, totals={"flops": 1}, sampler_rng={}, sampler_ahead=0,
                     retired_prompts=None, evals=[], metrics_bytes=0, samples_bytes=0)


def _fake_learner(path: str) -> str:
    """Stands in for Learner.save_checkpoint in the file-handling tests: it writes files."""
    (Path(path) / "policy").mkdir(parents=True)
    (Path(path) / "policy" / "model.safetensors").write_bytes(b"weights")
    return "hash"


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "tokenizer.json").write_text("{}")
    run = tmp_path / "run"
    (run / "checkpoints" / ".tmp-step-000003").mkdir(parents=True)  # a write killed half-way
    (run / "checkpoints" / "step-000009").mkdir()  # no loop_state.json: not a complete checkpoint
    for step in (2, 4, 6):
        write_checkpoint(run, _state(step), _fake_learner, str(base), keep=2)
    assert [p.name for p in complete_checkpoints(run)] == ["step-000004", "step-000006"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    latest = latest_checkpoint(run)
    assert (latest / "policy" / "tokenizer.json").is_file()  # loadable as model.path
    assert read_loop_state(latest).step == 6 and read_loop_state(latest).learner_state_hash == "hash"


@pytest.mark.parametrize("loss", ["grpo", "ppo"])
def test_a_learner_restored_from_a_checkpoint_continues_exactly(tiny_model, tmp_path, loss):
    """Learner-side exactness (no Ray): the restored learner's state hash equals the saved
    one, and one more update gives both the same state, bit for bit."""
    from rlscale.learner import Learner
    from test_recipes_learner import batch

    algo = {"lr": 0.05, "minibatches": 2, "loss": loss}
    first = Learner(tiny_model, algo, seed=3, use_gpu=False, dtype="float32")
    for _ in range(2):
        first.update(batch())
    saved = first.save_checkpoint(str(tmp_path / "ckpt"))
    restored = Learner(tiny_model, algo, seed=3, use_gpu=False, dtype="float32")
    assert restored.state_hash() != saved
    assert restored.load_checkpoint(str(tmp_path / "ckpt")) == saved == first.state_hash()
    a, b = first.update(batch()), restored.update(batch())
    assert (a.loss, a.grad_norm, a.policy_version) == (b.loss, b.grad_norm, b.policy_version)
    assert first.state_hash() == restored.state_hash()
