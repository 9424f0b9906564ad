"""Every recipe axis through the real Learner (torch, a tiny random Llama), no Ray:
each variant trains, moves the policy the right way, reports its own stats, and the
learner's FLOPs follow the passes it ran."""

from __future__ import annotations

import math

import pytest
import torch

from rlscale import compute
from rlscale.batch import TrainBatch
from rlscale.learner import Learner


def batch(rewards=(1.0, 0.0, 0.0, 1.0), versions=None) -> TrainBatch:
    """Two prompt groups of two answers; answer lengths differ so aggregations differ."""
    prompts = [[1, 5, 6], [1, 5, 6], [1, 7, 8, 9], [1, 7, 8, 9]]
    completions = [[10, 11, 12], [13, 14], [15, 16, 17, 18], [19, 20]]
    return TrainBatch(prompt_ids=prompts, completion_ids=completions,
                      behaviour_logprobs=[[-3.0] * len(c) for c in completions],
                      loss_mask=[[1] * len(c) for c in completions], rewards=list(rewards),
                      policy_versions=versions or [0] * 4, group_size=2)


def sequence_logp(learner: Learner, b: TrainBatch, i: int) -> float:
    ids = b.prompt_ids[i] + b.completion_ids[i]
    lp = learner.probe_logprobs(ids)
    return sum(lp[len(b.prompt_ids[i]) - 1:])


def train_once(model, algo: dict, b: TrainBatch | None = None, dtype="float32"):
    learner = Learner(model, {"lr": 0.05, "minibatches": 1, **algo}, seed=0, use_gpu=False, dtype=dtype)
    b = b or batch()
    before = [sequence_logp(learner, b, i) for i in range(4)]
    result = learner.update(b)
    after = [sequence_logp(learner, b, i) for i in range(4)]
    return learner, result, before, after


LOSSES = {"grpo": {"clip_frac", "ratio_mean"}, "dapo": {"clip_frac", "ratio_mean"},
          "dr_grpo": {"clip_frac", "ratio_mean"}, "cispo": {"is_truncated_frac", "ratio_mean"},
          "gspo": {"clip_frac", "ratio_mean"}, "ppo": {"clip_frac", "value_loss", "value_clip_frac"}}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_each_loss_raises_rewarded_answers_and_reports_its_stats(tiny_model, loss):
    algo = {"loss": loss} | ({"aggregation": {"name": "seq_mean_token_sum_norm", "length": 8}}
                             if loss == "dr_grpo" else {})
    _, result, before, after = train_once(tiny_model, algo)
    assert result.policy_version == 1 and math.isfinite(result.loss) and result.grad_norm > 0
    assert LOSSES[loss] | {"kl_old_new", "policy_loss"} <= set(result.algo_stats)
    # rewards (1, 0 | 0, 1): the rewarded answer of each group gains against its partner
    assert after[0] - before[0] > after[1] - before[1]
    assert after[3] - before[3] > after[2] - before[2]
    assert result.advantages[0] > 0 > result.advantages[1]


@pytest.mark.parametrize("advantage", ["group_norm", "group_mean", "rloo", "reinforce_pp"])
@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm",
                                         "prompt_mean"])
def test_outcome_estimators_and_aggregations_train(tiny_model, advantage, aggregation):
    extra = {"length": 8} if aggregation == "seq_mean_token_sum_norm" else {}
    _, result, before, after = train_once(tiny_model, {"loss": "grpo", "advantage": advantage,
                                                       "aggregation": {"name": aggregation, **extra}})
    assert result.grad_norm > 0 and after[0] - before[0] > after[1] - before[1]


@pytest.mark.parametrize("control, stats", [
    ("entropy_bonus", set()), ("clip_cov", {"cov_clipped_frac"}), ("kl_cov", {"kl_cov_frac"}),
    ("high_entropy_only", {"entropy_threshold", "high_entropy_frac"})])
def test_entropy_controls_train_and_report(tiny_model, control, stats):
    _, result, _, _ = train_once(tiny_model, {"entropy_control": control})
    assert math.isfinite(result.loss) and result.grad_norm > 0 and stats <= set(result.algo_stats)


def test_truncated_is_uses_each_samples_behaviour_logprobs(tiny_model):
    """The engine's logprobs (-3 per token) are far below the learner's (random init over
    a 64-token vocabulary: about -ln 64 = -4.2 ... so ratios vary); with a cap of 1.5 at
    sequence level every weight is min(prod pi_old/pi_beh, 1.5)."""
    for level in ("token", "sequence"):
        _, result, _, _ = train_once(tiny_model, {"off_policy": {"is_level": level, "is_cap": 1.5}})
        assert 0 < result.algo_stats["is_weight_mean"] <= 1.5
        assert 0 <= result.algo_stats["is_capped_frac"] <= 1
    # behaviour logprobs as pi_old: the ratio at the first minibatch is pi_theta / pi_behaviour
    _, result, _, _ = train_once(tiny_model, {"off_policy": {"old_logp": "behaviour"}})
    assert abs(result.algo_stats["ratio_mean"] - 1) > 1e-3


def test_policy_lag_is_measured_from_each_samples_version(tiny_model):
    learner = Learner(tiny_model, {"minibatches": 1}, seed=0, use_gpu=False, dtype="float32")
    learner.update(batch())
    learner.update(batch())
    result = learner.update(batch(versions=[2, 2, 1, 0]))
    assert result.policy_lag_mean == pytest.approx((0 + 0 + 1 + 2) / 4) and result.policy_lag_max == 2


def test_fp32_lm_head_computes_logprobs_in_fp32_for_a_bf16_policy(tiny_model):
    plain = Learner(tiny_model, {}, seed=0, use_gpu=False, dtype="bfloat16")
    fp32 = Learner(tiny_model, {"fp32_lm_head": True}, seed=0, use_gpu=False, dtype="bfloat16")
    ids = torch.tensor([[1, 5, 6, 10, 11, 12]])
    logits_plain, _ = plain._forward(plain.policy, ids, torch.ones_like(ids))
    logits_fp32, _ = fp32._forward(fp32.policy, ids, torch.ones_like(ids))
    assert logits_plain.dtype == torch.bfloat16 and logits_fp32.dtype == torch.float32
    # Same weights, same hidden states: the fp32 projection agrees to bf16 rounding.
    torch.testing.assert_close(logits_fp32, logits_plain.float(), atol=0.05, rtol=0.02)
    result = fp32.update(batch())
    assert math.isfinite(result.loss) and result.grad_norm > 0


def test_reference_model_and_flops_follow_what_ran(tiny_model):
    b = batch()
    seqs = [len(p) + len(c) for p, c in zip(b.prompt_ids, b.completion_ids)]
    no_ref, r0, _, _ = train_once(tiny_model, {})
    assert no_ref.ref is None and r0.kl_ref is None
    # one no-grad pass + one forward+backward (3 forwards) over each sequence
    assert r0.flops == 4 * compute.inference_flops(no_ref.shape, seqs)
    with_ref, r1, _, _ = train_once(tiny_model, {"log_kl_ref": True})
    assert with_ref.ref is not None and r1.kl_ref >= 0
    assert r1.flops == 5 * compute.inference_flops(with_ref.shape, seqs)
    two_epochs, r2, _, _ = train_once(tiny_model, {"epochs": 2, "kl_coef": 0.1})
    assert r2.flops == (1 + 1 + 2 * 3) * compute.inference_flops(two_epochs.shape, seqs)
    ppo, r3, _, _ = train_once(tiny_model, {"loss": "ppo"})
    head = ppo.shape.with_extra_params(ppo.policy.config.hidden_size)
    assert r3.flops == 4 * compute.inference_flops(head, seqs)


def token_logps(learner: Learner, b: TrainBatch) -> list[list[float]]:
    """The learner's current logprob of every completion token, per sample."""
    return [learner.probe_logprobs(b.prompt_ids[i] + b.completion_ids[i])[len(b.prompt_ids[i]) - 1:]
            for i in range(len(b.rewards))]


def test_async_is_weights_use_each_samples_own_behaviour_logprobs(tiny_model):
    """Samples sampled by two older policy versions (lags 2 and 1) in one batch: the TIS
    weight of every token is min(pi_learner / pi_behaviour, cap) against that sample's
    own behaviour logprobs, recorded when it was sampled (Yao et al. 2025, Eq. 3; the
    decoupled objective of AReaL, Fu et al. 2025, with the learner's pass as proximal)."""
    algo = {"lr": 0.05, "minibatches": 1, "off_policy": {"is_level": "token", "is_cap": 1e6}}
    learner = Learner(tiny_model, algo, seed=0, use_gpu=False, dtype="float32")
    b = batch()
    by_version = {0: token_logps(learner, b)}  # what an engine at version 0 would record
    learner.update(batch(rewards=(1.0, 0.0, 1.0, 0.0)))
    by_version[1] = token_logps(learner, b)
    learner.update(batch(rewards=(0.0, 1.0, 0.0, 1.0)))
    assert learner.version == 2
    # Group 0 was sampled by version 0 (lag 2), group 1 by version 1 (lag 1).
    versions = [0, 0, 1, 1]
    stale = TrainBatch(b.prompt_ids, b.completion_ids, [by_version[v][i] for i, v in enumerate(versions)],
                       b.loss_mask, b.rewards, versions, b.group_size)
    now = token_logps(learner, b)
    version_2 = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    ratios = [math.exp(lp - beh) for i in range(4) for lp, beh in zip(now[i], stale.behaviour_logprobs[i])]
    assert max(abs(math.log(r)) for r in ratios) > 1e-3  # the policy really moved between versions
    result = learner.update(stale)
    assert result.policy_lag_mean == pytest.approx(1.5) and result.policy_lag_max == 2
    assert result.algo_stats["is_weight_mean"] == pytest.approx(sum(ratios) / len(ratios), rel=1e-4)
    # Judged against one version's logprobs for all samples, the weights would differ.
    wrong = [math.exp(lp - beh) for i in range(4) for lp, beh in zip(now[i], by_version[0][i])]
    assert abs(sum(wrong) / len(wrong) - sum(ratios) / len(ratios)) > 1e-4
    # And the cap truncates exactly the tokens whose ratio exceeds it.
    capped = Learner(tiny_model, algo | {"off_policy": {"is_level": "token", "is_cap": 1.0}}, seed=0,
                     use_gpu=False, dtype="float32")
    capped.policy.load_state_dict(version_2)
    capped.version = 2
    res = capped.update(stale)
    assert res.algo_stats["is_capped_frac"] == pytest.approx(sum(r >= 1.0 for r in ratios) / len(ratios))
    assert res.algo_stats["is_weight_mean"] == pytest.approx(sum(min(r, 1.0) for r in ratios) / len(ratios),
                                                             rel=1e-4)
