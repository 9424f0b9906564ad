"""Async training through local Ray, the vLLM engine, the math env and the learner.

1. An async run with a slowed learner (3 epochs per step) and max_staleness 2: the
   engine runs ahead until every batch is exactly 2 versions old, never more, nothing
   is dropped, and validation accuracy still improves.
2. In-flight weight updates between the turns of multi-turn episodes: new weights sent
   while a generate call runs are installed before its next turn, each turn records the
   version that sampled it, and the engine's sampling logprobs of every turn match that
   version's weights (recomputed with transformers), not the other's.
"""

import json
import time

import numpy as np
import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from rlscale.collect import draw_problems
from rlscale.config import load_config
from rlscale.orchestrator import Orchestrator
from rlscale.rollout import RolloutWorker
from rlscale_envs import make_text_env

pytestmark = pytest.mark.integration

# The quickstart's own base model (its pre-training is what makes a dozen RL steps show a
# gain: shorter pre-training leaves a model that RL at this scale cannot lift), half its batch.
SHORT = ["pretrain.eval_problems=20", "steps=12", "eval.every=12", "eval.n_problems=64", "eval.k=4",
         "rollout.prompts_per_step=16", "progress=false"]
K = 2


@pytest.fixture(scope="module")
def async_run(tmp_path_factory, quickstart_cache):
    root = tmp_path_factory.mktemp("async")
    cfg = load_config("configs/quickstart_async.yaml", [
        f"run_dir={root / 'run'}", f"pretrain.cache_dir={quickstart_cache}", *SHORT,
        f"algo.max_staleness={K}", "algo.epochs=3"])
    orch = Orchestrator(cfg)
    run_dir = orch.run()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    yield orch, run_dir, rows
    ray.shutdown()


def test_async_never_trains_on_samples_older_than_k(async_run):
    _, run_dir, rows = async_run
    steps = rows[1:]
    assert [r["step"] for r in steps] == list(range(1, 13)) and all(r["policy_version"] == r["step"] for r in steps)
    for r in steps:
        hist = {int(lag): n for lag, n in r["policy_lag_hist"].items()}
        assert sum(hist.values()) == 16 * 8 and max(hist) <= K and r["policy_lag_max"] <= K
        assert r["stale_dropped"] == 0  # the pipeline's gate keeps every sample within the bound
        assert r["is_weight_mean"] > 0  # the TIS correction ran
    # A slowed learner lets the engine run ahead: the bound is reached, and held.
    assert max(r["policy_lag_max"] for r in steps) == K
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(0 <= (s["step"] - 1) - s["sample_policy_version"] <= K for s in samples)


def test_async_run_improves_validation_accuracy(async_run):
    _, run_dir, rows = async_run
    summary = json.loads((run_dir / "summary.json").read_text())
    base, final = summary["base_val_mean_at_k"], summary["final_val_mean_at_k"]
    assert rows[-1]["val_mean_at_k"] == final and rows[0]["val_mean_at_k"] == base
    # 64 problems x 4 samples: a binomial SE of at most 0.03 each; demand two of them.
    assert final > base + 0.06, (base, final)


def test_idle_seconds_are_measured(async_run):
    _, _, rows = async_run
    for r in rows[1:]:
        assert 0 <= r["engine_idle_s"] <= r["step_s"] + 1.0 and 0 <= r["learner_idle_s"] <= r["step_s"]


def engine_turn_logprobs(model, prompt_ids, completion_ids, turn_lens):
    """transformers' logprob of each sampled token, per turn."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    out = []
    for ctx, gen in turn_lens:
        positions = range(ctx - 1, ctx - 1 + gen)
        out.append([logp[p, ids[0, p + 1]].item() for p in positions])
    return out


def test_weights_arriving_mid_episode_are_used_from_the_next_turn(async_run):
    orch, run_dir, _ = async_run
    model_path = json.loads((run_dir / "run.json").read_text())["model_path"]
    env_cfg = {"id": "rlscale/Arith-v0", "kwargs": {"max_operand": 9, "max_turns": 3}}
    worker = ray.remote(RolloutWorker).options(max_concurrency=4, num_cpus=0).remote(
        model_path, orch.cfg.rollout.model_dump(), env_cfg, 0, False, "float32")
    base = AutoModelForCausalLM.from_pretrained(model_path).eval()
    moved = AutoModelForCausalLM.from_pretrained(model_path).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.3 * p.std() * torch.randn(p.shape, generator=gen))
    state = {k: v.contiguous() for k, v in moved.state_dict().items()}

    problems = draw_problems(make_text_env("rlscale/Arith-v0", env_cfg["kwargs"], "train"), 96, seed=11,
                             distinct=True)
    ids = orch.collector.prompt_ids(problems)
    running = worker.generate.remote(problems, 4, ids)
    time.sleep(0.3)  # the first turn's engine call (384 answers, two engine waves) is under way
    ray.get(worker.load_weights.remote(state, 7))  # returns once installed: right after that call
    batch = ray.get(running)

    assert all(v == sorted(v) and set(v) <= {0, 7} for v in batch.turn_versions)
    assert batch.policy_versions == [min(v) for v in batch.turn_versions]
    assert all(v[0] == 0 for v in batch.turn_versions)  # the first turn began before the weights came
    mixed = [v for v in batch.turn_versions if set(v) == {0, 7}]
    assert mixed, "no episode had a turn after the weights arrived"
    gaps = {0: [], 7: []}
    wrong = []
    for i in range(len(batch)):
        own = {0: engine_turn_logprobs(base, batch.prompt_ids[i], batch.completion_ids[i], batch.turn_lens[i]),
               7: engine_turn_logprobs(moved, batch.prompt_ids[i], batch.completion_ids[i], batch.turn_lens[i])}
        for t, ((ctx, g), version) in enumerate(zip(batch.turn_lens[i], batch.turn_versions[i])):
            start = ctx - len(batch.prompt_ids[i])
            engine = batch.sampling_logprobs[i][start:start + g]
            gaps[version].append(np.abs(np.array(engine) - own[version][t]).mean())
            wrong.append(np.abs(np.array(engine) - own[7 - version][t]).mean())
    assert max(gaps[0]) < 1e-3 and max(gaps[7]) < 1e-3  # each turn sampled by the version it records
    assert np.mean(wrong) > 100 * max(max(gaps[0]), max(gaps[7]))  # and not by the other one
    ray.get(worker.delete_weight_files.remote())
    ray.kill(worker)
