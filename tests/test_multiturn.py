"""Multi-turn plumbing: episode bookkeeping, the loss mask through learner and losses,
compute accounting, and a short real run (Ray + vLLM) on multi-turn arithmetic."""

from __future__ import annotations

import json
import re

import pytest
import torch

from rlscale import compute
from rlscale.config import AlgoConfig, ConfigError, load_config
from rlscale.episodes import FEEDBACK_LOGPROB, Episode, collate
from rlscale.algos.objective import policy_objective
from rlscale.algos.primitives import masked_mean, token_entropy
from rlscale.batch import TrainBatch
from rlscale.learner import Learner, loss_inputs, pad_batch
from rlscale.steprow import reward_by_env

FEEDBACK_RE = re.compile(r"^\nThat is not correct \([a-z_]+\)\. Try again\.\nA: $")


def two_turn_episode() -> Episode:
    e = Episode(problem=None, prompt="Q", prompt_ids=[1, 2, 3])
    e.add_turn([10, 11], [-0.1, -0.2], "ab", truncated=False)
    e.add_feedback([20, 21, 22], "FB!")
    e.add_turn([12, 13, 14], [-0.3, -0.4, -0.5], "cde", truncated=True)
    return e


def test_episode_interleaves_policy_and_feedback_tokens():
    e = two_turn_episode()
    assert e.completion_ids == [10, 11, 20, 21, 22, 12, 13, 14]
    assert e.loss_mask == [1, 1, 0, 0, 0, 1, 1, 1]
    assert e.sampling_logprobs == [-0.1, -0.2] + [FEEDBACK_LOGPROB] * 3 + [-0.3, -0.4, -0.5]
    assert e.context_ids == [1, 2, 3] + e.completion_ids
    assert e.turn_lens == [(3, 2), (8, 3)]  # the second turn's prompt is everything before it
    assert (e.turns, e.transcript, e.last_answer, e.truncated) == (2, "abFB!cde", "cde", True)
    # Next-turn cap: the per-turn cap, the episode budget left, the engine context left.
    assert e.next_turn_max_tokens(4, None, 100) == 4
    assert e.next_turn_max_tokens(4, 10, 100) == 2
    assert e.next_turn_max_tokens(4, None, 13) == 2
    assert e.room(None, 100) == 100 - 11 and e.room(10, 100) == 2  # feedback is not capped by max_tokens
    batch = collate([e])
    assert batch.loss_mask == [e.loss_mask] and batch.turns == [2] and batch.env_names == [None]
    with pytest.raises(ValueError, match="2 tokens but 1 logprobs"):
        e.add_turn([1, 2], [0.0], "x", False)


def test_pad_batch_masks_feedback_positions():
    e = two_turn_episode()
    ids, _, targets, mask = pad_batch([e.prompt_ids, [1]], [e.completion_ids, [5, 6]], 0, [e.loss_mask, [1, 1]])
    assert targets[0][mask[0].bool()].tolist() == [10, 11, 12, 13, 14]  # feedback 20-22 never a target
    assert targets[1][mask[1].bool()].tolist() == [5, 6]
    assert mask.sum().item() == sum(e.loss_mask) + 2
    _, _, _, all_ones = pad_batch([e.prompt_ids], [e.completion_ids], 0)
    assert all_ones.sum().item() == len(e.completion_ids)  # no loss_mask: every completion token
    with pytest.raises(ValueError, match="loss_mask has 1 entries for 2 completion tokens"):
        pad_batch([[1]], [[5, 6]], 0, [[1]])


def test_feedback_logits_do_not_change_loss_entropy_or_kl():
    """Numerically: perturbing the policy's logits where it predicts feedback tokens leaves
    the loss (with KL term), its gradient elsewhere, entropy and KL exactly unchanged;
    perturbing a policy-token position changes them."""
    torch.manual_seed(0)
    e = two_turn_episode()
    _, _, targets, mask = pad_batch([e.prompt_ids] * 2, [e.completion_ids] * 2, 0, [e.loss_mask] * 2)
    B, T, V = targets.shape[0], targets.shape[1], 32
    logits = torch.randn(B, T, V)
    old = torch.log_softmax(torch.randn(B, T, V), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ref = old - 0.3 * torch.rand(B, T)
    adv = torch.tensor([1.0, -0.5])
    cfg = AlgoConfig(kl_coef=0.1)

    def objective(lg):
        lg = lg.clone().requires_grad_(True)
        inp = loss_inputs(lg, targets, mask, old, old, adv[:, None] * mask, torch.arange(B), ref_logp=ref)
        loss, terms = policy_objective(inp, cfg, torch.Generator().manual_seed(0))
        loss.backward()
        return loss.item(), terms["kl_old_new"], masked_mean(token_entropy(lg.detach()), mask).item(), lg.grad

    feedback_pos = (mask == 0) & (torch.arange(T) >= len(e.prompt_ids) - 1)  # inside the completion
    assert feedback_pos.sum() == 2 * 3
    base = objective(logits)
    noisy = logits + 50 * torch.randn(B, T, V) * feedback_pos.unsqueeze(-1)
    moved = objective(noisy)
    assert moved[:3] == base[:3]
    assert torch.all(moved[3][feedback_pos] == 0) and torch.equal(moved[3][~feedback_pos], base[3][~feedback_pos])
    policy_pos = mask.bool()
    touched = objective(logits + 5 * torch.randn(B, T, V) * policy_pos.unsqueeze(-1))
    assert all(t != b for t, b in zip(touched[:3], base[:3]))


def test_learner_trains_and_measures_policy_tokens_only(tiny_model):
    """tokens_trained counts policy tokens; the engine-vs-learner gap ignores the
    placeholder logprobs of feedback tokens (here set absurdly to -50 vs 0)."""
    e = two_turn_episode()
    algo = {"lr": 1e-3, "minibatches": 1, "log_kl_ref": True}
    stats = []
    for placeholder in (FEEDBACK_LOGPROB, -50.0):
        logprobs = [lp if m else placeholder for lp, m in zip(e.sampling_logprobs, e.loss_mask)]
        learner = Learner(tiny_model, algo, seed=0, use_gpu=False, dtype="float32")
        stats.append(learner.update(TrainBatch(
            prompt_ids=[e.prompt_ids] * 2, completion_ids=[e.completion_ids] * 2, behaviour_logprobs=[logprobs] * 2,
            loss_mask=[e.loss_mask] * 2, rewards=[1.0, 0.0], policy_versions=[0, 0], group_size=2)))
    assert stats[0].tokens_trained == 2 * sum(e.loss_mask)
    for key in ("logprob_diff", "loss", "entropy", "kl_ref", "grad_norm"):
        assert getattr(stats[0], key) == getattr(stats[1], key), key


def test_rollout_flops_count_each_turns_prefill_and_decode():
    s = compute.ModelShape(n_params=1000, n_layers=2, d_attn=8, n_params_total=1200)
    assert compute.rollout_flops(s, [[(5, 3)], [(4, 7)]]) == compute.forward_flops(s, 5, 3) + compute.forward_flops(s, 4, 7)
    e = two_turn_episode()
    assert compute.rollout_flops(s, [e.turn_lens]) == compute.forward_flops(s, 3, 2) + compute.forward_flops(s, 8, 3)


def test_reward_by_env_per_tagged_sub_env_else_the_env_id():
    assert reward_by_env([1.0, 0.0], [None, None], "rlscale/Arith-v0") == {"rlscale/Arith-v0": 0.5}
    assert reward_by_env([1.0, 0.0, 1.0], ["b", "a", "b"], "rlscale/Mix-v0") == {"a": 0.0, "b": 1.0}


def test_episode_budget_and_env_config_are_checked_early():
    with pytest.raises(ConfigError, match="max_episode_tokens=40 must be >= rollout.max_tokens=48"):
        load_config("configs/arith_multiturn.yaml", ["rollout.max_episode_tokens=40"])
    with pytest.raises(ConfigError, match=r"env.kwargs: rlscale/Arith-v0 .* max_turns must be an integer >= 1"):
        load_config("configs/arith_multiturn.yaml", ["env.kwargs.max_turns=0"])
    with pytest.raises(ConfigError, match=r"env.kwargs: rlscale/Mix-v0 .* envs\[1\]\.weight must be a finite"):
        load_config("configs/mix.yaml", ["env.kwargs.envs=[{id: rlscale/Arith-v0}, {id: rlscale/Arith-v0, weight: 0}]"])


# --- a short real run ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def multiturn_run(tmp_path_factory):
    import ray

    from rlscale.orchestrator import Orchestrator

    root = tmp_path_factory.mktemp("mt")
    cfg = load_config("configs/arith_multiturn.yaml", [
        f"run_dir={root / 'run'}", f"pretrain.cache_dir={root / 'cache'}", "pretrain.steps=40",
        "pretrain.eval_problems=20", "steps=3", "eval.every=3", "eval.n_problems=16", "eval.k=2",
        "rollout.prompts_per_step=8", "rollout.group_size=4", "rollout.max_tokens=32",
        "rollout.max_episode_tokens=120", "algo.minibatches=2", "progress=false",
    ])
    orch = Orchestrator(cfg)
    run_dir = orch.run(keep_actors=True)  # a test below samples from the run's engine
    yield orch, run_dir
    ray.shutdown()


@pytest.mark.integration
def test_multiturn_run_trains_on_policy_tokens_only(multiturn_run):
    _, run_dir = multiturn_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for r in rows[1:]:
        assert 1.0 <= r["turns_mean"] <= 2.0 and r["policy_version"] == r["step"]
        assert r["tokens_trained"] == r["tokens_sampled"]  # feedback tokens are neither sampled nor trained
        assert r["logprob_diff"] < 0.05  # 0.0 placeholders at feedback tokens would make this large
        assert r["reward_by_env"] == {"rlscale/Arith-v0": pytest.approx(r["reward_mean"])}
    assert max(r["turns_mean"] for r in rows[1:]) > 1.0  # a 40-step base model gets answers wrong
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(s["turns"] in (1, 2) for s in samples)


@pytest.mark.integration
def test_second_turn_continues_from_the_exact_token_ids(multiturn_run):
    import ray
    from transformers import AutoTokenizer

    from rlscale.orchestrator import draw_problems
    from rlscale_envs import make_text_env

    orch, run_dir = multiturn_run
    tok = AutoTokenizer.from_pretrained(json.loads((run_dir / "run.json").read_text())["model_path"])
    problems = draw_problems(make_text_env("rlscale/Arith-v0", {"max_operand": 9, "max_turns": 2}, "train"),
                             12, seed=5, distinct=True)
    batch = ray.get(orch.workers[0].generate.remote(problems, 2, orch.collector.prompt_ids(problems)))
    two_turn = [i for i, t in enumerate(batch.turns) if t == 2]
    assert two_turn
    assert batch.policy_versions == [3] * len(batch)  # every turn sampled by the policy of the last sync (3 steps)
    for i in range(len(batch.turns)):
        ids, mask, lps = batch.completion_ids[i], batch.loss_mask[i], batch.sampling_logprobs[i]
        turn_lens = batch.turn_lens[i]
        assert len(ids) == len(mask) == len(lps) and sum(g for _, g in turn_lens) == sum(mask)
        assert turn_lens[0][0] == len(batch.prompt_ids[i])
        if batch.turns[i] == 2:
            (ctx0, gen0), (ctx1, gen1) = turn_lens
            feedback = ids[gen0:ctx1 - ctx0]
            assert mask == [1] * gen0 + [0] * len(feedback) + [1] * gen1
            assert FEEDBACK_RE.match(tok.decode(feedback)), tok.decode(feedback)
            assert ctx1 + gen1 <= len(batch.prompt_ids[i]) + 120  # max_episode_tokens
            assert all(lp == FEEDBACK_LOGPROB for lp in lps[gen0:gen0 + len(feedback)])
