"""Checkpoints: written whole or not at all, pruned to `keep`, holding the learner's exact
state, the driver's loop state and the logs' lengths; the final one is the run's policy."""

import json
from pathlib import Path

import pytest
import ray
import torch

from rlscale.checkpoint import LoopState, complete_checkpoints, latest_checkpoint, read_loop_state, write_checkpoint
from rlscale.config import load_config
from rlscale.orchestrator import Orchestrator


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


@pytest.mark.integration
def test_a_run_checkpoints_its_learner_loop_and_logs(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = load_config("configs/quickstart.yaml", [
        f"run_dir={tmp_path / 'run'}", f"pretrain.cache_dir={tmp_path / 'cache'}", "pretrain.steps=40",
        "pretrain.eval_problems=20", "steps=4", "eval.every=2", "eval.n_problems=16", "eval.k=2",
        "rollout.prompts_per_step=8", "rollout.group_size=4", "rollout.max_tokens=32", "algo.minibatches=2",
        "progress=false", "checkpoint.every=2", "checkpoint.keep=2"])
    orch = Orchestrator(cfg)
    try:
        run_dir = orch.run(keep_actors=True)
        learner_hash = ray.get(orch.learner.state_hash.remote())
        learner_weights = ray.get(orch.learner.state_dict.remote())
    finally:
        orch.stop_actors()
        ray.shutdown()
    ckpts = complete_checkpoints(run_dir)
    assert [p.name for p in ckpts] == ["step-000002", "step-000004"]
    mid, last = (read_loop_state(p) for p in ckpts)
    # The final checkpoint holds the learner's state exactly (same hash as the live actor).
    assert last.learner_state_hash == learner_hash and mid.learner_state_hash != learner_hash
    assert (last.step, last.policy_version, mid.step, mid.policy_version) == (4, 4, 2, 2)
    # The logs' lengths cut them exactly after the checkpoint's step.
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    assert last.metrics_bytes == len(metrics)
    rows = [json.loads(line) for line in metrics[:mid.metrics_bytes].decode().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    samples = (run_dir / "samples.jsonl").read_bytes()[:mid.samples_bytes].decode().splitlines()
    assert {json.loads(line)["step"] for line in samples} == {1, 2}
    assert [e["step"] for e in mid.evals] == [0, 2] and mid.sampler_rng["bit_generator"] == "PCG64"
    assert mid.sampler_ahead == 0 and mid.totals["flops"] > 0
    # The final policy loads as a Hugging Face model with its tokenizer, equal to the learner's weights.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert Path(summary["final_policy"]) == ckpts[-1] / "policy"
    model = AutoModelForCausalLM.from_pretrained(summary["final_policy"])
    AutoTokenizer.from_pretrained(summary["final_policy"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, learner_weights[name]), name
    state = torch.load(ckpts[-1] / "learner_state.pt", weights_only=False)
    assert state["version"] == 4 and state["optimizer"]["state"]


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
