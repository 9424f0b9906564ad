"""Advantage estimators and sample filtering (rlscale/algos) against hand values.

Every expected number is worked out by hand from the paper's equation, in plain Python
(`math`) next to the assertion; the library's own helpers are never used to build one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlscale.algos.advantages import ADVANTAGE_ESTIMATORS, AdvantageInputs
from rlscale.algos.filtering import PromptRetirement, informative_groups
from rlscale.algos.settings import (
    GAEAdvantage,
    GroupMeanAdvantage,
    GroupNormAdvantage,
    ReinforcePPAdvantage,
    RLOOAdvantage,
)

F64 = torch.float64
EPS = 1e-6  # the estimators' std guard; tolerances below absorb it


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def close(actual, expected, tol=1e-9):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64),
                               rtol=tol, atol=tol)


def run(cfg, rewards, group_size, mask, values=None):
    inp = AdvantageInputs(rewards=t(rewards), group_size=group_size, mask=t(mask),
                          values=None if values is None else t(values))
    return ADVANTAGE_ESTIMATORS[cfg.name](inp, cfg)


# two groups of G = 3: group 0 rewards 1, 0, 0; group 1 all equal (2, 2, 2).
REWARDS = [1.0, 0.0, 0.0, 2.0, 2.0, 2.0]
MASK = [[1.0, 1.0, 0.0],
        [1.0, 0.0, 0.0],
        [1.0, 1.0, 1.0],
        [1.0, 1.0, 0.0],
        [1.0, 0.0, 0.0],
        [1.0, 1.0, 1.0]]


def spread(per_sample, mask=MASK):
    """One number per sample onto its policy tokens (0 elsewhere)."""
    return [[a * m for m in row] for a, row in zip(per_sample, mask)]


def test_group_norm_group_std():
    """GRPO (Shao et al. 2024, Sec. 4.1.2): A_i = (r_i - mean_g) / std_g, population std."""
    adv, returns = run(GroupNormAdvantage(), REWARDS, 3, MASK)
    assert returns is None
    # group 0: mean 1/3, std = sqrt(((2/3)^2 + 2 (1/3)^2) / 3) = sqrt(2)/3
    # A = (2/3)/(sqrt2/3) = sqrt2, (-1/3)/(sqrt2/3) = -1/sqrt2; group 1 all equal -> 0
    per_sample = [math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2), 0.0, 0.0, 0.0]
    close(adv, spread(per_sample), tol=1e-5)


def test_group_norm_batch_std():
    """ScaleRL batch-level norm: A_i = (r_i - mean_g) / std(all batch rewards), population std."""
    adv, _ = run(GroupNormAdvantage(std_level="batch"), REWARDS, 3, MASK)
    # batch mean 7/6; var = ((1/6)^2 + 2 (7/6)^2 + 3 (5/6)^2) / 6 = (1 + 98 + 75) / 216 = 29/36; std = sqrt29/6
    std = math.sqrt(29) / 6
    per_sample = [(2 / 3) / std, (-1 / 3) / std, (-1 / 3) / std, 0.0, 0.0, 0.0]   # = 4/sqrt29, -2/sqrt29, ...
    close(adv, spread(per_sample), tol=1e-5)


def test_group_mean():
    """Dr.GRPO (Liu et al. 2025, Eq. 2): A_i = r_i - mean_g, no std."""
    adv, _ = run(GroupMeanAdvantage(), REWARDS, 3, MASK)
    close(adv, spread([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0]))


def test_rloo():
    """RLOO (Ahmadian et al. 2024, Eq. 4): A_i = r_i - 1/(G-1) sum_{j != i} r_j."""
    adv, _ = run(RLOOAdvantage(), [1.0, 0.0, 0.0, 3.0, 1.0, 2.0], 3, MASK)
    # group 0: 1 - 0 = 1, 0 - 1/2, 0 - 1/2; group 1: 3 - 3/2, 1 - 5/2, 2 - 4/2
    close(adv, spread([1.0, -0.5, -0.5, 1.5, -1.5, 0.0]))


@pytest.mark.parametrize("cfg", [GroupNormAdvantage(), GroupNormAdvantage(std_level="batch"), GroupMeanAdvantage(),
                                 RLOOAdvantage(), ReinforcePPAdvantage(baseline="group")])
def test_all_equal_group_gets_zero_advantage(cfg):
    """GRPO / Dr.GRPO / RLOO / REINFORCE++-baseline: a group with equal rewards carries no signal (A = 0)."""
    adv, _ = run(cfg, [0.7, 0.7, 0.7, 0.7], 4, [[1.0, 1.0]] * 4)
    if cfg.name == "reinforce_pp":
        close(adv, [[0.0, 0.0]] * 4, tol=1e-6)
    else:
        close(adv, [[0.0, 0.0]] * 4)


# REINFORCE++: B = 4, G = 2, token counts 2, 1, 3, 1 (7 policy tokens)
RPP_REWARDS = [1.0, 0.0, 1.0, 1.0]
RPP_MASK = [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]


def test_reinforce_pp_global_token_normalisation():
    """REINFORCE++ (Hu 2025, Eq. 7): token advantage r_i, normalised by mean/std over all policy tokens."""
    adv, _ = run(ReinforcePPAdvantage(), RPP_REWARDS, 2, RPP_MASK)
    # tokens 1,1 | 0 | 1,1,1 | 1: mean 6/7, var = (6 (1/7)^2 + (6/7)^2) / 7 = 6/49, std = sqrt6/7
    # 1 -> (1/7)/(sqrt6/7) = 1/sqrt6; 0 -> (-6/7)/(sqrt6/7) = -sqrt6
    hi, lo = 1 / math.sqrt(6), -math.sqrt(6)
    close(adv, [[hi, hi, 0.0], [lo, 0.0, 0.0], [hi, hi, hi], [hi, 0.0, 0.0]], tol=1e-5)


def test_reinforce_pp_group_baseline():
    """REINFORCE++-baseline (Hu 2025): r_i - mean_g on each token, then batch token mean/std normalisation."""
    adv, _ = run(ReinforcePPAdvantage(baseline="group"), RPP_REWARDS, 2, RPP_MASK)
    # group 0 (1, 0) -> 0.5, -0.5; group 1 (1, 1) -> 0, 0. Tokens: 0.5, 0.5 | -0.5 | 0, 0, 0 | 0
    tokens = [0.5, 0.5, -0.5, 0.0, 0.0, 0.0, 0.0]
    mu = sum(tokens) / 7                                       # 1/14
    sd = math.sqrt(sum((x - mu) ** 2 for x in tokens) / 7)
    a, b, z = (0.5 - mu) / sd, (-0.5 - mu) / sd, (0.0 - mu) / sd
    close(adv, [[a, a, 0.0], [b, 0.0, 0.0], [z, z, z], [z, 0.0, 0.0]], tol=1e-5)


# GAE: row 0 has policy tokens at t = 0, 1, 3 (t = 2 is env feedback inside the sequence, t = 4 padding);
# row 1 has policy tokens at t = 0..4. Values at mask-0 positions are junk and must be ignored.
GAE_MASK = [[1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
GAE_VALUES = [[0.2, 0.5, 9.0, 0.4, 7.0], [0.1, 0.3, 0.6, 0.2, 0.5]]
GAE_REWARDS = [1.0, 0.0]
GAMMA, LAM = 0.9, 0.8


def gae_by_hand():
    """delta_t = r_t + gamma V_{t+1} - V_t over the row's policy tokens only; A_t = delta_t + gamma lam A_{t+1}."""
    adv = [[0.0] * 5 for _ in range(2)]
    for b in range(2):
        steps = [i for i in range(5) if GAE_MASK[b][i]]
        a_next, v_next = 0.0, 0.0            # after the last token: A = 0, V = 0
        for k, i in enumerate(reversed(steps)):
            r = GAE_REWARDS[b] if k == 0 else 0.0   # the outcome reward is paid at the last policy token
            delta = r + GAMMA * v_next - GAE_VALUES[b][i]
            a_next = delta + GAMMA * LAM * a_next
            v_next = GAE_VALUES[b][i]
            adv[b][i] = a_next
    return adv


def test_gae_hand_values_and_returns():
    """GAE (Schulman et al. 2016, Eq. 16), whiten=False: A as by hand, returns R_t = A_t + V_t on policy tokens."""
    adv, returns = run(GAEAdvantage(gamma=GAMMA, lam=LAM, whiten=False), GAE_REWARDS, 1, GAE_MASK, GAE_VALUES)
    # row 0 written out: A3 = 1 - 0.4 = 0.6
    #   A1 = (0.9*0.4 - 0.5) + 0.72*0.6 = -0.14 + 0.432 = 0.292  (skips t = 2)
    #   A0 = (0.9*0.5 - 0.2) + 0.72*0.292 = 0.25 + 0.21024 = 0.46024
    hand = gae_by_hand()
    assert hand[0] == pytest.approx([0.46024, 0.292, 0.0, 0.6, 0.0])
    close(adv, hand)
    expected_returns = [[(hand[b][i] + GAE_VALUES[b][i]) * GAE_MASK[b][i] for i in range(5)] for b in range(2)]
    close(returns, expected_returns)


def test_gae_lambda_one_gamma_one_is_monte_carlo():
    """GAE Eq. 16 with gamma = lam = 1: A_t = R - V_t (Monte-Carlo return minus baseline)."""
    adv, returns = run(GAEAdvantage(gamma=1.0, lam=1.0, whiten=False), GAE_REWARDS, 1, GAE_MASK, GAE_VALUES)
    close(adv, [[1 - 0.2, 1 - 0.5, 0.0, 1 - 0.4, 0.0], [-0.1, -0.3, -0.6, -0.2, -0.5]])
    close(returns, [[1.0, 1.0, 0.0, 1.0, 0.0], [0.0] * 5])


def test_gae_whiten():
    """GAE whiten=True: advantages over policy tokens have mean 0 and population std 1; returns are unwhitened."""
    adv, returns = run(GAEAdvantage(gamma=GAMMA, lam=LAM, whiten=True), GAE_REWARDS, 1, GAE_MASK, GAE_VALUES)
    hand = gae_by_hand()
    flat = [hand[b][i] for b in range(2) for i in range(5) if GAE_MASK[b][i]]
    mu = sum(flat) / len(flat)
    sd = math.sqrt(sum((x - mu) ** 2 for x in flat) / len(flat))
    close(adv, [[(hand[b][i] - mu) / sd * GAE_MASK[b][i] for i in range(5)] for b in range(2)], tol=1e-5)
    sel = torch.tensor(GAE_MASK).bool()
    vals = adv[sel]
    assert vals.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert vals.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert (adv[~sel] == 0).all()
    close(returns, [[(hand[b][i] + GAE_VALUES[b][i]) * GAE_MASK[b][i] for i in range(5)] for b in range(2)])


def test_gae_needs_values():
    """GAE is defined over the critic's values: none given is an error."""
    with pytest.raises(ValueError):
        run(GAEAdvantage(), [1.0], 1, [[1.0]])


# ---- 8. filtering ----------------------------------------------------------------------

def test_informative_groups():
    """DAPO Eq. 11 (dynamic sampling): keep a group only if 0 < #correct < G, i.e. its rewards differ."""
    rewards = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.2, 0.3, 0.3]])
    np.testing.assert_array_equal(informative_groups(rewards), [False, True, False, False, True])


def test_prompt_retirement():
    """ScaleRL no-positive-resampling: retire a prompt for good once its group pass rate >= threshold."""
    pr = PromptRetirement(threshold=0.6)
    # pass rates 2/3, 1/3, 1, 0.5 -> a and c reach 0.6
    n = pr.update(["a", "b", "c", "d"], np.array([[1, 1, 0], [0, 0, 1], [1, 1, 1], [1, 0, 0.5]]))
    assert n == 2
    assert pr.is_retired("a") and pr.is_retired("c")
    assert not pr.is_retired("b") and not pr.is_retired("d")
    # a again (already retired) and b now at 2/3 -> one new; a bad step never un-retires
    n = pr.update(["a", "b", "c"], np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]]))
    assert n == 1
    assert pr.retired == {"a", "b", "c"}
    # exactly at the threshold counts (>=)
    pr = PromptRetirement(threshold=0.5)
    assert pr.update(["x"], np.array([[1, 0]])) == 1
