"""Three contrasting recipes, a few real steps each, through local Ray, the vLLM engine,
the math env and the learner: ScaleRL's (CISPO with prompt-level aggregation and
batch-level advantage normalisation, on a bf16 policy with its FP32 LM head, in the learner
and in vLLM: hf_overrides head_dtype), PPO with a learned critic and GAE, and DAPO with
dynamic sampling. Each must train, keep its stats in metrics.jsonl and account for the
compute that really ran."""

import json

import pytest
import ray

from rlscale.config import load_config
from rlscale.orchestrator import Orchestrator

pytestmark = pytest.mark.integration

# On the quickstart's base model (conftest.quickstart_cache: pre-trained once per session).
SHORT = ["pretrain.eval_problems=20", "steps=3", "eval.every=3", "eval.n_problems=16",
         "eval.k=2", "rollout.prompts_per_step=8", "rollout.group_size=4", "rollout.max_tokens=32",
         "algo.minibatches=2", "algo.lr=0.01", "progress=false"]

RECIPES = {
    "cispo": ["algo.loss=cispo", "algo.aggregation=prompt_mean", "algo.advantage=group_norm",
              "algo.advantage.std_level=batch", "model.dtype=bfloat16", "algo.fp32_lm_head=true"],
    "ppo": ["algo.loss=ppo", "algo.log_kl_ref=true"],
    "dapo": ["algo.loss=dapo", "algo.filter=dynamic_sampling", "algo.filter.max_rounds=2"],
}
LOSS_OF = {"cispo": "cispo", "ppo": "ppo", "dapo": "dapo"}
BF16 = {"cispo"}


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory, quickstart_cache):
    root = tmp_path_factory.mktemp("recipes")
    runs = {}
    try:
        for name, overrides in RECIPES.items():
            cfg = load_config("configs/quickstart.yaml", [f"run_dir={root / name}",
                                                         f"pretrain.cache_dir={quickstart_cache}", *SHORT, *overrides])
            orch = Orchestrator(cfg)
            run_dir = orch.run()
            shape = orch.shape
            assert orch.learner is None and orch.workers == []  # stopped: their CPUs go to the next recipe
            rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            runs[name] = (rows, shape, run_dir)
        yield runs
    finally:
        ray.shutdown()


def test_every_recipe_trains_and_logs_its_own_stats(recipe_runs):
    own_stats = {"cispo": {"is_truncated_frac", "ratio_mean", "policy_loss"},
                 "ppo": {"clip_frac", "value_loss", "value_clip_frac"},
                 "dapo": {"clip_frac", "ds_rounds", "ds_groups_dropped", "ds_groups_short"}}
    for name, (rows, _, run_dir) in recipe_runs.items():
        assert [r["step"] for r in rows] == [0, 1, 2, 3], name
        for r in rows[1:]:
            assert own_stats[name] <= set(r), (name, own_stats[name] - set(r))
            assert r["policy_version"] == r["step"] and r["policy_lag_max"] == 0
            # fp32 policies agree to 1e-2 on the probe; bf16 trunks within rollout.stale_tolerance
            assert r["logprob_diff"] < 0.05 and r["sync_probe_diff"] < (0.05 if name in BF16 else 0.01)
        assert any(r["grad_norm"] > 0 for r in rows[1:]), f"{name} never produced a gradient"
        cfg = (run_dir / "config.yaml").read_text()
        assert f"name: {LOSS_OF[name]}" in cfg  # the resolved config names the loss ...
    assert "std_level: batch" in (recipe_runs["cispo"][2] / "config.yaml").read_text()
    assert "name: gae" in (recipe_runs["ppo"][2] / "config.yaml").read_text()  # ... and the axes it brought


def test_learner_flops_follow_the_passes_that_ran(recipe_runs):
    """Single-turn, no filter: the learner's sequences are exactly the sampled ones, and
    one forward over them costs what the rollout did (compute.py). CISPO without KL runs
    one no-grad pass and one training pass (3 forwards): 4x the rollout, exactly, with no
    reference pass. PPO with log_kl_ref adds a reference pass (5x) and the value head's
    d_model weights in its own passes (a little more)."""
    for r in recipe_runs["cispo"][0][1:]:
        assert r["kl_ref"] is None
        assert r["train_flops"] == 4 * r["rollout_flops"]
        assert r["step_flops"] == r["rollout_flops"] + r["train_flops"]
    for r in recipe_runs["ppo"][0][1:]:
        assert r["kl_ref"] is not None and r["kl_ref"] >= 0  # the reference is built on request
        assert 5 * r["rollout_flops"] < r["train_flops"] < 5.05 * r["rollout_flops"]
        assert r["value_loss"] >= 0


def test_dynamic_sampling_refills_with_informative_groups(recipe_runs):
    rows, _, run_dir = recipe_runs["dapo"]
    for r in rows[1:]:
        assert 1 <= r["ds_rounds"] <= 3 and 0 <= r["ds_groups_short"] <= 8
        if r["ds_groups_dropped"] > 0:  # a dropped group was refilled or left the batch short
            assert r["ds_rounds"] > 1 or r["ds_groups_short"] > 0
        # Everything generated counts for compute, trained or not.
        assert r["tokens_sampled"] >= r["tokens_trained"]
        assert r["train_flops"] <= 4 * r["rollout_flops"]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["sample_policy_version"] == s["policy_version"] - 1 for s in samples)


def test_fp32_head_on_a_bf16_policy_keeps_engine_and_learner_together(recipe_runs):
    """Both sides project through an fp32 head; the bf16 trunks still differ in their
    kernels, so the gap is small but not zero."""
    rows, _, run_dir = recipe_runs["cispo"]
    assert "fp32_lm_head: true" in (run_dir / "config.yaml").read_text()
    for r in rows[1:]:
        assert 0 < r["logprob_diff"] < 0.05 and r["sync_probe_diff"] < 0.05
