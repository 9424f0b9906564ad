"""Policy losses, aggregation, TIS and entropy controls (rlscale/algos) against hand values.

Every expected number is worked out by hand from the paper's equation, in plain Python
(`math`) next to the assertion; the library's own helpers are never used to build one.
Tensors are float64 and tiny, so exact comparisons are meaningful.
"""

from __future__ import annotations

import math

import pytest
import torch

from rlscale.algos.entropy import ENTROPY_CONTROLS
from rlscale.algos.losses import POLICY_LOSSES, LossInputs
from rlscale.algos.objective import policy_objective, truncated_is_weight
from rlscale.algos.primitives import aggregate
from rlscale.algos.settings import (
    CISPOLoss,
    ClipCov,
    DAPOLoss,
    DrGRPOLoss,
    EntropyBonus,
    GRPOLoss,
    GSPOLoss,
    HighEntropyOnly,
    KLCov,
    PPOLoss,
    PromptMean,
    SeqMeanTokenMean,
    SeqMeanTokenSumNorm,
    TokenMean,
)
from rlscale.config import AlgoConfig

F64 = torch.float64


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def make_inputs(old_logp, ratios, adv, mask, group_ids=None, **extra) -> LossInputs:
    """logp = old_logp + log(ratio) (a leaf with grad), so the ratio pi/pi_old is exactly `ratios`."""
    old = t(old_logp)
    logp = (old + torch.log(t(ratios))).detach().requires_grad_(True)
    m = t(mask)
    if group_ids is None:
        group_ids = list(range(m.shape[0]))
    return LossInputs(logp=logp, old_logp=old, behaviour_logp=old.clone(), advantages=t(adv), mask=m,
                      group_ids=torch.tensor(group_ids), **extra)


def grad_of(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, x)
    return g


def close(actual, expected, tol=1e-9):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64),
                               rtol=tol, atol=tol)


# ---- 1. loss values --------------------------------------------------------------------

# (ratio, advantage) pairs covering every branch of min(rA, clip(r) A) for eps = 0.2
GRPO_CASES = [
    (1.5, 1.0),    # r > 1+eps, A > 0: clipped branch is the min -> -(1.2 * 1)
    (0.5, -1.0),   # r < 1-eps, A < 0: clipped -> -(0.8 * -1)
    (1.1, -2.0),   # inside the clip range -> -(1.1 * -2)
    (0.9, 0.5),    # inside -> -(0.9 * 0.5)
    (1.5, -1.0),   # r > 1+eps but A < 0: the pessimistic min keeps the unclipped rA = -1.5
    (0.5, 1.0),    # r < 1-eps but A > 0: min keeps rA = 0.5
]
GRPO_EXPECTED = [-1.2, 0.8, 2.2, -0.45, 1.5, -0.5]


@pytest.mark.parametrize("name,cfg", [("grpo", GRPOLoss(clip_eps=0.2)), ("dr_grpo", DrGRPOLoss(clip_eps=0.2)),
                                      ("ppo", PPOLoss(clip_eps=0.2))])
def test_clipped_surrogate_value(name, cfg):
    """PPO Eq. 7 (Schulman 2017), GRPO Eq. 3, Dr.GRPO Eq. 2: L = -min(rA, clip(r, 1-e, 1+e) A) per token."""
    ratios = [[r for r, _ in GRPO_CASES]]
    adv = [[a for _, a in GRPO_CASES]]
    n = len(GRPO_CASES)
    extra = {}
    if name == "ppo":
        extra = dict(values=t([[0.0] * n]), old_values=t([[0.0] * n]), returns=t([[0.0] * n]))
    inp = make_inputs([[-1.0, -2.0, -0.5, -1.5, -0.7, -3.0]], ratios, adv, [[1.0] * n], **extra)
    out = POLICY_LOSSES[name](inp, cfg)
    # hand: -min(r*A, clip(r, 0.8, 1.2)*A)
    hand = [-min(r * a, min(max(r, 0.8), 1.2) * a) for r, a in GRPO_CASES]
    assert hand == pytest.approx(GRPO_EXPECTED)
    close(out.policy, [GRPO_EXPECTED])


def test_dapo_asymmetric_clip_value():
    """DAPO Eq. 10 (Yu et al. 2025): L = -min(rA, clip(r, 1-eps_low, 1+eps_high) A), eps_low=0.2, eps_high=0.28."""
    cases = [
        (1.25, 1.0),   # below 1+0.28: unclipped (GRPO with eps=0.2 would clip to 1.2) -> -1.25
        (1.5, 1.0),    # above 1.28: -> -1.28
        (0.7, -1.0),   # below 1-0.2: clipped to 0.8 -> -(0.8 * -1) = 0.8
        (0.75, 1.0),   # below 0.8 but A > 0: min keeps rA -> -0.75
    ]
    expected = [-1.25, -1.28, 0.8, -0.75]
    inp = make_inputs([[-1.0, -1.0, -1.0, -1.0]], [[r for r, _ in cases]], [[a for _, a in cases]], [[1.0] * 4])
    out = POLICY_LOSSES["dapo"](inp, DAPOLoss(clip_low=0.2, clip_high=0.28))
    close(out.policy, [expected])


def test_cispo_value():
    """CISPO Eq. 4 (MiniMax-M1 2025): L = -sg(min(r, eps_max)) * A * log pi, eps_max = 4."""
    old = [[-1.0, -2.0, -0.5]]
    ratios = [[5.0, 0.5, 2.0]]
    adv = [[1.0, -1.0, 0.5]]
    inp = make_inputs(old, ratios, adv, [[1.0, 1.0, 1.0]])
    out = POLICY_LOSSES["cispo"](inp, CISPOLoss(eps_max=4.0))
    logp = [-1.0 + math.log(5.0), -2.0 + math.log(0.5), -0.5 + math.log(2.0)]
    expected = [-4.0 * 1.0 * logp[0],     # r = 5 truncated at 4
                -0.5 * -1.0 * logp[1],
                -2.0 * 0.5 * logp[2]]
    close(out.policy, [expected])


def gspo_inputs():
    # seq 0: two policy tokens (third is padding), log-ratios 0.1, 0.3 -> s0 = exp(0.2), A = +1
    # seq 1: three policy tokens, log-ratios -0.2, 0.05, 0.03 -> s1 = exp(-0.04), A = -1
    ratios = [[math.exp(0.1), math.exp(0.3), math.exp(5.0)],
              [math.exp(-0.2), math.exp(0.05), math.exp(0.03)]]
    return make_inputs([[-1.0, -2.0, -0.3], [-0.4, -1.1, -2.5]], ratios, [[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]],
                       [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])


def test_gspo_value():
    """GSPO Eq. 5-7 (Zheng et al. 2025): s_i = exp(mean_t log r), L_i = -min(s A, clip(s, 1-el, 1+eh) A) on each token."""
    inp = gspo_inputs()
    out = POLICY_LOSSES["gspo"](inp, GSPOLoss(clip_low=0.1, clip_high=0.15))
    s0 = math.exp((0.1 + 0.3) / 2)             # 1.2214 > 1.15: clipped
    s1 = math.exp((-0.2 + 0.05 + 0.03) / 3)    # 0.9608 inside [0.9, 1.15]
    l0 = -min(s0 * 1.0, 1.15 * 1.0)            # = -1.15
    l1 = -min(s1 * -1.0, s1 * -1.0)            # = s1
    assert l0 == pytest.approx(-1.15)
    pol = out.policy
    close(pol[0, :2], [l0, l0])
    close(pol[1], [l1, l1, l1])
    # seq_mean_token_mean then gives the paper's mean over sequences
    close(aggregate(pol, inp.mask, SeqMeanTokenMean(), inp.group_ids), (l0 + l1) / 2)


def test_ppo_value_loss():
    """PPO Eq. 9 value term: vf_coef * 0.5 * max((V-R)^2, (V_old + clip(V-V_old, -c, c) - R)^2)."""
    V = [0.5, 1.0, 0.9]
    V_old = [0.4, 0.5, 0.0]
    R = [1.0, 0.0, 1.0]
    inp = make_inputs([[-1.0] * 3], [[1.0] * 3], [[0.0] * 3], [[1.0] * 3],
                      values=t([V]), old_values=t([V_old]), returns=t([R]))
    # t0: (0.5-1)^2 = 0.25; clipped V = 0.4 + 0.1 = 0.5 -> 0.25; max 0.25
    # t1: (1-0)^2 = 1; clipped V = 0.5 + 0.2 = 0.7 -> 0.49; max 1
    # t2: (0.9-1)^2 = 0.01; clipped V = 0.0 + 0.2 = 0.2 -> 0.64; max 0.64 (clipped branch wins)
    expected = [0.1 * 0.5 * 0.25, 0.1 * 0.5 * 1.0, 0.1 * 0.5 * 0.64]
    out = POLICY_LOSSES["ppo"](inp, PPOLoss(clip_eps=0.2, vf_coef=0.1, value_clip=0.2))
    close(out.value, [expected])
    # value_clip = None: plain 0.5 (V-R)^2
    out = POLICY_LOSSES["ppo"](inp, PPOLoss(vf_coef=0.1, value_clip=None))
    close(out.value, [[0.1 * 0.5 * 0.25, 0.1 * 0.5 * 1.0, 0.1 * 0.5 * 0.01]])


# ---- 2. gradients ----------------------------------------------------------------------

ALL_LOSSES = [("grpo", GRPOLoss()), ("dapo", DAPOLoss()), ("dr_grpo", DrGRPOLoss()), ("cispo", CISPOLoss()),
              ("gspo", GSPOLoss()), ("ppo", PPOLoss())]


@pytest.mark.parametrize("name,cfg", ALL_LOSSES)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_advantage_sign_moves_logprob(name, cfg, sign):
    """Policy gradient theorem: at r = 1, dL/dlogp = -A (x aggregation weight), so A > 0 raises log pi."""
    old = [[-1.0, -2.0, -0.5]]
    extra = {}
    if name == "ppo":
        extra = dict(values=t([[0.0] * 3]), old_values=t([[0.0] * 3]), returns=t([[0.0] * 3]))
    inp = make_inputs(old, [[1.0] * 3], [[sign] * 3], [[1.0] * 3], **extra)
    out = POLICY_LOSSES[name](inp, cfg)
    g = grad_of(aggregate(out.policy, inp.mask, TokenMean(), inp.group_ids), inp.logp)
    # token_mean over N = 3 tokens. Clipped surrogates and CISPO: dL_t/dlogp_t = -r A = -A, so -A/3.
    # GSPO: L = -s A on all 3 tokens, mean = -s A, ds/dlogp_t = s/|y| = 1/3, so -A/3 as well.
    close(g, [[-sign / 3] * 3])
    if sign > 0:
        assert (g < 0).all()
    else:
        assert (g > 0).all()


@pytest.mark.parametrize("name,cfg", [("grpo", GRPOLoss(clip_eps=0.2)), ("dapo", DAPOLoss(clip_low=0.2, clip_high=0.28)),
                                      ("dr_grpo", DrGRPOLoss(clip_eps=0.2)), ("ppo", PPOLoss(clip_eps=0.2))])
def test_clip_active_tokens_get_zero_gradient(name, cfg):
    """PPO Eq. 7: where clip(r) A is the min (r > 1+eh with A>0, r < 1-el with A<0) the gradient is exactly 0."""
    ratios = [[1.5, 0.5, 1.1, 1.5, 0.5]]
    adv = [[1.0, -1.0, 2.0, -1.0, 1.0]]
    extra = {}
    if name == "ppo":
        extra = dict(values=t([[0.0] * 5]), old_values=t([[0.0] * 5]), returns=t([[0.0] * 5]))
    inp = make_inputs([[-1.0, -2.0, -0.5, -1.0, -1.5]], ratios, adv, [[1.0] * 5], **extra)
    g = grad_of(POLICY_LOSSES[name](inp, cfg).policy.sum(), inp.logp)
    assert g[0, 0].item() == 0.0 and g[0, 1].item() == 0.0
    # unclipped tokens: d(-rA)/dlogp = -rA
    close(g[0, 2:], [-1.1 * 2.0, -1.5 * -1.0, -0.5 * 1.0])


def test_cispo_keeps_gradient_on_tokens_ppo_clips():
    """CISPO Eq. 4: dL/dlogp = -min(r, eps_max) A on every token, incl. those PPO clips; x 1/N for token_mean."""
    ratios = [[1.5, 0.5, 6.0, 1.0]]
    adv = [[1.0, -1.0, 2.0, -0.5]]
    inp = make_inputs([[-1.0, -2.0, -0.5, -1.5]], ratios, adv, [[1.0] * 4])
    loss, _ = policy_objective(inp, AlgoConfig(loss="cispo", aggregation="token_mean"), torch.Generator())
    g = grad_of(loss, inp.logp)
    N = 4
    close(g, [[-1.5 * 1.0 / N, -0.5 * -1.0 / N, -4.0 * 2.0 / N, -1.0 * -0.5 / N]])
    assert (g != 0).all()


def test_cispo_gradient_with_prompt_mean_weight():
    """CISPO Eq. 4 under ScaleRL prompt_mean: dL/dlogp = -min(r, eps_max) A / (P * tokens of the prompt)."""
    # group 0: rows 0,1 with 2 + 1 tokens; group 1: row 2 with 2 tokens; P = 2
    ratios = [[1.5, 0.5], [6.0, 1.0], [1.0, 2.0]]
    adv = [[1.0, 1.0], [-1.0, 0.0], [0.5, 0.5]]
    mask = [[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    inp = make_inputs([[-1.0, -2.0], [-0.5, -1.0], [-1.5, -0.3]], ratios, adv, mask, group_ids=[0, 0, 1])
    loss, _ = policy_objective(inp, AlgoConfig(loss="cispo", aggregation="prompt_mean"), torch.Generator())
    g = grad_of(loss, inp.logp)
    w0, w1 = 1 / (2 * 3), 1 / (2 * 2)
    close(g, [[-1.5 * 1.0 * w0, -0.5 * 1.0 * w0], [-4.0 * -1.0 * w0, 0.0], [-1.0 * 0.5 * w1, -2.0 * 0.5 * w1]])


def test_gspo_clipped_sequence_gets_zero_gradient():
    """GSPO Eq. 7: a clipped sequence gets 0 on all its tokens; else dL/dlogp_t = -s A / |y| (x 1/B for seq mean)."""
    inp = gspo_inputs()
    loss, _ = policy_objective(inp, AlgoConfig(loss={"name": "gspo", "clip_low": 0.1, "clip_high": 0.15},
                                               aggregation="seq_mean_token_mean"), torch.Generator())
    g = grad_of(loss, inp.logp)
    assert (g[0] == 0).all()
    s1 = math.exp((-0.2 + 0.05 + 0.03) / 3)
    B = 2
    close(g[1], [-s1 * -1.0 / 3 / B] * 3)


# ---- 3. equivalences -------------------------------------------------------------------

def test_grpo_at_ratio_one_equals_reinforce_with_group_baseline():
    """GRPO Eq. 3 at pi = pi_old: grad of -mean min(rA, clip(r)A) == grad of -sum_t A_t logp_t / N (REINFORCE)."""
    logp0 = t([[-1.0, -2.0, -0.5], [-0.3, -1.2, -4.0]])
    adv = t([[0.7, 0.7, 0.7], [-0.7, -0.7, 0.0]])
    mask = t([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    logp = logp0.clone().requires_grad_(True)
    inp = LossInputs(logp=logp, old_logp=logp0.clone(), behaviour_logp=logp0.clone(), advantages=adv, mask=mask,
                     group_ids=torch.tensor([0, 0]))
    loss, _ = policy_objective(inp, AlgoConfig(loss="grpo", aggregation="token_mean"), torch.Generator())
    g_grpo = grad_of(loss, logp)

    logp_r = logp0.clone().requires_grad_(True)
    reinforce = -(adv * logp_r * mask).sum() / mask.sum()
    g_reinforce = grad_of(reinforce, logp_r)
    close(g_grpo, g_reinforce)
    N = 5
    close(g_grpo, [[-0.7 / N] * 3, [0.7 / N, 0.7 / N, 0.0]])


def test_gspo_on_length_one_sequences_equals_grpo():
    """GSPO Eq. 5-7 with |y| = 1 reduces to GRPO Eq. 3 (s = r): same value and gradient, eps_low = eps_high."""
    ratios = [[1.1, 3.0], [5.0, 0.7], [1.5, 1.0], [0.95, 0.2]]
    adv = [[1.0, 9.0], [-1.0, -1.0], [-1.0, -1.0], [2.0, 2.0]]
    mask = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    old = [[-1.0, -2.0], [-0.5, -1.5], [-0.7, -3.0], [-1.2, -0.1]]
    grpo_inp = make_inputs(old, ratios, adv, mask, group_ids=[0, 0, 1, 1])
    gspo_inp = make_inputs(old, ratios, adv, mask, group_ids=[0, 0, 1, 1])
    gen = torch.Generator()
    l_grpo, _ = policy_objective(grpo_inp, AlgoConfig(loss={"name": "grpo", "clip_eps": 0.2},
                                                      aggregation="token_mean"), gen)
    l_gspo, _ = policy_objective(gspo_inp, AlgoConfig(loss={"name": "gspo", "clip_low": 0.2, "clip_high": 0.2},
                                                      aggregation="seq_mean_token_mean"), gen)
    # hand: policy tokens (r, A) = (1.1, 1), (0.7, -1), (1.5, -1), (0.95, 2)
    hand = [-min(1.1 * 1, 1.1 * 1), -min(0.7 * -1, 0.8 * -1), -min(1.5 * -1, 1.2 * -1), -min(0.95 * 2, 0.95 * 2)]
    close(l_grpo, sum(hand) / 4)
    close(l_gspo, l_grpo)
    close(grad_of(l_gspo, gspo_inp.logp), grad_of(l_grpo, grpo_inp.logp))


# ---- 4. aggregation --------------------------------------------------------------------

AGG_X = [[1.0, 2.0, 3.0, 100.0],
         [4.0, 100.0, 100.0, 100.0],
         [5.0, 6.0, 100.0, 100.0],
         [100.0, 100.0, 100.0, 100.0]]  # masked entries hold 100 (and a row with no tokens)
AGG_MASK = [[1.0, 1.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0]]
AGG_GROUPS = [7, 7, 3, 3]  # two prompts: {rows 0,1} with 4 tokens, {rows 2,3} with 2 tokens


@pytest.mark.parametrize("cfg,expected", [
    (TokenMean(), (1 + 2 + 3 + 4 + 5 + 6) / 6),                       # DAPO Eq. 12: 21 / 6 = 3.5
    (SeqMeanTokenMean(), ((1 + 2 + 3) / 3 + 4 / 1 + (5 + 6) / 2) / 3),  # GRPO Eq. 3: rows with tokens only
    (SeqMeanTokenSumNorm(length=4), (6 + 4 + 11 + 0) / (4 * 4)),     # Dr.GRPO Eq. 2: all B rows / constant L
    (PromptMean(), ((1 + 2 + 3 + 4) / 4 + (5 + 6) / 2) / 2),           # ScaleRL: mean over prompts of token mean
])
def test_aggregation_modes(cfg, expected):
    """Aggregations of DAPO Eq. 12, GRPO Eq. 3, Dr.GRPO Eq. 2, ScaleRL prompt mean on an uneven batch."""
    out = aggregate(t(AGG_X), t(AGG_MASK), cfg, torch.tensor(AGG_GROUPS))
    close(out, expected)


def test_aggregation_ignores_inf_at_masked_positions():
    """token_mean = sum over policy tokens / count: an inf outside the mask must not reach the result."""
    x = t(AGG_X)
    x[0, 3] = float("inf")
    x[3, 0] = float("-inf")
    for cfg, expected in [(TokenMean(), 3.5), (PromptMean(), (2.5 + 5.5) / 2)]:
        close(aggregate(x, t(AGG_MASK), cfg, torch.tensor(AGG_GROUPS)), expected)


# ---- 6. truncated importance sampling --------------------------------------------------

def test_truncated_is_weight_token_and_sequence():
    """TIS (Yao et al. 2025, Eq. 3): w = min(pi_old / pi_beh, cap) per token, or min(prod_t ratio, cap) per sequence."""
    old = t([[-1.0, -2.0, -0.5], [-0.2, -0.1, -0.3]])
    beh = t([[-1.5, -1.0, -0.7], [-1.0, -0.5, -9.0]])
    mask = t([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w_tok = truncated_is_weight(old, beh, mask, "token", 1.5)
    # row 0: exp(0.5) = 1.6487 -> capped 1.5; exp(-1.0) = 0.3679; masked position: exp(0) = 1 (unused)
    # row 1: exp(0.8) = 2.2255 -> 1.5; exp(0.4) = 1.4918; exp(8.7) -> 1.5
    close(w_tok[0, :2], [1.5, math.exp(-1.0)])
    close(w_tok[1], [1.5, math.exp(0.4), 1.5])
    w_seq = truncated_is_weight(old, beh, mask, "sequence", 1.5)
    # row 0: exp(0.5 - 1.0) = exp(-0.5) on every token (masked 0.2 excluded); row 1: exp(0.8+0.4+8.7) -> 1.5
    close(w_seq[0, :2], [math.exp(-0.5)] * 2)
    close(w_seq[1], [1.5] * 3)


def test_policy_objective_with_token_tis():
    """TIS x GRPO: loss = mean_t min(exp(old - beh), 2) * -min(rA, clip(r)A); the weight carries no gradient."""
    old = t([[-1.0, -2.0, -0.5]])
    beh = t([[-1.5, -3.0, -0.4]])    # old - beh = 0.5, 1.0, -0.1 -> w = 1.6487, 2.0 (cap; e = 2.718), 0.9048
    ratios = [1.1, 1.5, 0.9]
    adv = [1.0, 1.0, -2.0]
    logp = (old + torch.log(t([ratios]))).detach().requires_grad_(True)
    inp = LossInputs(logp=logp, old_logp=old, behaviour_logp=beh, advantages=t([adv]), mask=t([[1.0, 1.0, 1.0]]),
                     group_ids=torch.tensor([0]))
    algo = AlgoConfig(loss="grpo", aggregation="token_mean", off_policy={"is_level": "token", "is_cap": 2.0})
    loss, stats = policy_objective(inp, algo, torch.Generator())
    w = [math.exp(0.5), 2.0, math.exp(-0.1)]
    per_tok = [-min(1.1 * 1.0, 1.1 * 1.0), -min(1.5 * 1.0, 1.2 * 1.0), -min(0.9 * -2.0, 0.9 * -2.0)]
    close(loss, sum(wi * li for wi, li in zip(w, per_tok)) / 3)
    # gradient: w * d(-rA)/dlogp / N on unclipped tokens, 0 on the clipped one
    close(grad_of(loss, logp), [[-w[0] * 1.1 * 1.0 / 3, 0.0, -w[2] * 0.9 * -2.0 / 3]])
    close(stats["is_capped_frac"], 1 / 3)


def test_policy_objective_adds_value_and_kl_terms():
    """PPO Eq. 9 + GRPO Eq. 4: total = agg(-min(rA, clip)) + agg(c1 * value loss) + beta * agg(k3(ref, logp))."""
    old = t([[-1.0, -2.0]])
    logp = old.clone().requires_grad_(True)   # r = 1
    ref = t([[-1.5, -1.0]])
    values = t([[0.5, 1.0]]).requires_grad_(True)
    inp = LossInputs(logp=logp, old_logp=old, behaviour_logp=old, advantages=t([[1.0, -0.5]]),
                     mask=t([[1.0, 1.0]]), group_ids=torch.tensor([0]), ref_logp=ref, values=values,
                     old_values=t([[0.5, 1.0]]), returns=t([[1.0, 0.0]]))
    algo = AlgoConfig(loss={"name": "ppo", "vf_coef": 0.1}, advantage="gae", aggregation="token_mean", kl_coef=0.05)
    loss, _ = policy_objective(inp, algo, torch.Generator())
    policy = (-1.0 + 0.5) / 2
    value = 0.1 * 0.5 * ((0.5 - 1.0) ** 2 + (1.0 - 0.0) ** 2) / 2   # V == V_old, so the clip is inactive
    d = [-1.5 - -1.0, -1.0 - -2.0]                                  # ref - logp
    kl = sum(math.exp(x) - x - 1 for x in d) / 2
    close(loss, policy + value + 0.05 * kl)


# ---- 7. entropy controls (Cui et al. 2025) ---------------------------------------------

def cov_inputs():
    # policy tokens: logp = -1, -2, -0.5 | -3, -1.5 (last of row 1 is padding); A = 1,1,1 | -1,-1
    # mean logp = -8/5 = -1.6, mean A = (3 - 2)/5 = 0.2
    # Cov = (logp + 1.6)(A - 0.2): 0.6*0.8 = 0.48, -0.4*0.8 = -0.32, 1.1*0.8 = 0.88 | -1.4*-1.2 = 1.68, 0.1*-1.2 = -0.12
    logp = t([[-1.0, -2.0, -0.5], [-3.0, -1.5, 7.0]]).requires_grad_(True)
    old = t([[-1.2, -1.9, -0.8], [-2.5, -1.5, 0.0]])  # |logp - old| = 0.2, 0.1, 0.3 | 0.5, 0.0
    return LossInputs(logp=logp, old_logp=old, behaviour_logp=old, advantages=t([[1.0, 1.0, 1.0], [-1.0, -1.0, 5.0]]),
                      mask=t([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]), group_ids=torch.tensor([0, 0]))


def test_kl_cov_penalises_top_k_covariance_tokens():
    """KL-Cov Eq. 12: L_t + coef * |logp - old| on the top k = max(1, int(ratio * N)) tokens by Cov_t."""
    inp = cov_inputs()
    policy = t([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    out, _ = ENTROPY_CONTROLS["kl_cov"](policy, inp, KLCov(ratio=0.5, coef=2.0), torch.Generator())
    # k = int(0.5 * 5) = 2: the two largest covariances are 1.68 (row 1, t0) and 0.88 (row 0, t2)
    close(out.detach(), [[0.1, 0.2, 0.3 + 2.0 * 0.3], [0.4 + 2.0 * 0.5, 0.5, 0.6]])
    # tiny ratio still selects one token: the top one, 1.68
    out, _ = ENTROPY_CONTROLS["kl_cov"](policy, inp, KLCov(ratio=1e-3, coef=1.0), torch.Generator())
    close(out.detach(), [[0.1, 0.2, 0.3], [0.4 + 0.5, 0.5, 0.6]])


def test_kl_cov_gradient_on_selected_token():
    """KL-Cov Eq. 12: d(coef |logp - old|)/dlogp = coef * sign(logp - old) on the penalised tokens only."""
    inp = cov_inputs()
    out, _ = ENTROPY_CONTROLS["kl_cov"](torch.zeros(2, 3, dtype=F64), inp, KLCov(ratio=0.5, coef=2.0),
                                        torch.Generator())
    g = grad_of(out.sum(), inp.logp)
    # row 0 t2: logp - old = -0.5 + 0.8 = +0.3 -> +2; row 1 t0: -3 + 2.5 = -0.5 -> -2
    close(g, [[0.0, 0.0, 2.0], [-2.0, 0.0, 0.0]])


def test_clip_cov_zeroes_selected_token_value_and_gradient():
    """Clip-Cov Eq. 11: a token with Cov in [low, high] is taken out of the loss: value and gradient 0."""
    inp = cov_inputs()
    policy = -inp.advantages * inp.logp   # a loss with gradient -A on every token
    out, _ = ENTROPY_CONTROLS["clip_cov"](policy, inp, ClipCov(ratio=0.3, low=1.0, high=5.0), torch.Generator())
    # only Cov = 1.68 (row 1, t0) lies in [1, 5]; k = max(1, int(0.3 * 5)) = 1
    lp = [[-1.0, -2.0, -0.5], [-3.0, -1.5, 7.0]]
    A = [[1.0, 1.0, 1.0], [-1.0, -1.0, 5.0]]
    expected = [[-A[i][j] * lp[i][j] for j in range(3)] for i in range(2)]
    expected[1][0] = 0.0
    close(out.detach(), expected)
    g = grad_of(out.sum(), inp.logp)
    close(g, [[-1.0, -1.0, -1.0], [0.0, 1.0, -5.0]])


def test_clip_cov_picks_only_among_candidates():
    """Clip-Cov Eq. 11: with low = 0.4 the candidates are Cov 0.48, 0.88, 1.68; k = 1 of them is zeroed."""
    inp = cov_inputs()
    policy = torch.ones(2, 3, dtype=F64)
    candidates = {(0, 0), (0, 2), (1, 0)}
    for seed in range(6):
        out, _ = ENTROPY_CONTROLS["clip_cov"](policy, inp, ClipCov(ratio=0.3, low=0.4, high=5.0),
                                              torch.Generator().manual_seed(seed))
        zeroed = {(i, j) for i in range(2) for j in range(3) if out[i, j] == 0}
        assert len(zeroed) == 1 and zeroed <= candidates


def test_high_entropy_only_keeps_top_quantile():
    """Wang et al. 2025 Eq. 5: keep tokens with H >= the (1 - top_frac) quantile of policy-token entropies."""
    H = [[0.1, 0.5, 0.9], [1.3, 2.0, 10.0]]   # 10.0 is padding and must not shift the quantile
    inp = cov_inputs()
    inp.entropy = t(H)
    policy = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out, stats = ENTROPY_CONTROLS["high_entropy_only"](policy, inp, HighEntropyOnly(top_frac=0.4), torch.Generator())
    # sorted policy entropies 0.1, 0.5, 0.9, 1.3, 2.0; 0.6 quantile at position 0.6 * 4 = 2.4:
    # 0.9 + 0.4 * (1.3 - 0.9) = 1.06 -> keep 1.3 and 2.0
    close(stats["entropy_threshold"], 0.9 + 0.4 * (1.3 - 0.9), tol=1e-6)  # quantile is taken in float32
    close(out[0], [0.0, 0.0, 0.0])
    close(out[1, :2], [4.0, 5.0])


def test_entropy_bonus_subtracts_coef_times_entropy():
    """Entropy bonus (Williams & Peng 1991): L_t - coef * H_t, so dL/dH = -coef."""
    inp = cov_inputs()
    H = t([[0.1, 0.5, 0.9], [1.3, 2.0, 10.0]]).requires_grad_(True)
    inp.entropy = H
    policy = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out, _ = ENTROPY_CONTROLS["entropy_bonus"](policy, inp, EntropyBonus(coef=0.01), torch.Generator())
    close(out.detach(), [[1.0 - 0.001, 2.0 - 0.005, 3.0 - 0.009], [4.0 - 0.013, 5.0 - 0.02, 6.0 - 0.1]])
    close(grad_of(out.sum(), H), [[-0.01] * 3] * 2)
