"""Prompts longer than the rollout engine's context must not stop a run: vLLM rejects a
whole batch for one over-long prompt, so the orchestrator skips those problems, counts
them, and trains on the rest. Real Ray, vLLM and a user JSONL dataset."""

import json

import pytest
import yaml

from rlscale.config import load_config

pytestmark = pytest.mark.integration

MAX_MODEL_LEN = 96


def _write_dataset(path) -> None:
    """Short questions the xs zoo model can read, and long ones (a 150-character preamble:
    the zoo tokenizer is character-level) that cannot fit MAX_MODEL_LEN tokens."""
    rows = []
    for a in range(1, 10):
        for b in range(1, 5):
            rows.append({"question": f"{a}+{b}", "answer": str(a + b)})
            rows.append({"question": "x" * 150 + f" {a}-{b}", "answer": str(a - b)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def mixed_length_run(tmp_path_factory):
    import ray

    from rlscale.orchestrator import Orchestrator

    root = tmp_path_factory.mktemp("fit")
    _write_dataset(root / "data.jsonl")
    cfg = yaml.safe_load(open("configs/quickstart.yaml"))
    cfg["env"] = {"id": "rlscale/MathJSONL-v0",
                  "kwargs": {"path": str(root / "data.jsonl"), "val_fraction": 0.3, "prompt_template": "Q: {question}\nA: "}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run_cfg = load_config(str(root / "cfg.yaml"), [
        f"run_dir={root / 'run'}", f"pretrain.cache_dir={root / 'cache'}", "pretrain.steps=40",
        "pretrain.eval_problems=20", "steps=2", "eval.every=2", "eval.n_problems=12", "eval.k=2",
        "rollout.prompts_per_step=8", "rollout.group_size=2", "rollout.max_tokens=24",
        f"rollout.max_model_len={MAX_MODEL_LEN}", "algo.minibatches=1", "progress=false",
    ])
    run_dir = Orchestrator(run_cfg).run()
    yield run_dir
    ray.shutdown()


def test_overlong_prompts_are_skipped_and_counted(mixed_length_run):
    rows = [json.loads(line) for line in (mixed_length_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    # Half the dataset is too long, so 8 draws per step all but surely hit some.
    assert sum(r["prompts_skipped"] for r in rows[1:]) > 0
    info = json.loads((mixed_length_run / "run.json").read_text())
    assert info["val_problems_too_long"] > 0 and info["val_problems_used"] > 0
    assert info["val_problems_used"] + info["val_problems_too_long"] == 12
    samples = [json.loads(line) for line in (mixed_length_run / "samples.jsonl").read_text().splitlines()]
    assert samples and all("x" * 150 not in s["prompt"] for s in samples)
