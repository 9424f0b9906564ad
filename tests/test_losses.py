"""Shared per-token primitives and the learner's batch layout. The recipe losses and
estimators are checked against their papers in test_algos_*.py."""

import numpy as np
import pytest
import torch

from rlscale.algos.primitives import gather_logprobs, kl_k3, masked_mean, token_entropy
from rlscale.learner import pad_batch, scatter_completion


def test_token_entropy_matches_closed_forms():
    V = 7
    uniform = torch.zeros(1, 1, V)
    assert token_entropy(uniform).item() == pytest.approx(np.log(V), rel=1e-6)
    peaked = torch.full((1, 1, V), -1e9)
    peaked[..., 3] = 0
    assert token_entropy(peaked).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(2, 3, V)
    p = torch.softmax(logits, -1)
    np.testing.assert_allclose(token_entropy(logits), -(p * p.log()).sum(-1), rtol=1e-5)


def test_gather_logprobs_and_k3():
    logits = torch.randn(2, 4, 5)
    tokens = torch.randint(0, 5, (2, 4))
    lp = gather_logprobs(logits, tokens)
    ref = torch.log_softmax(logits, -1)[torch.arange(2)[:, None], torch.arange(4)[None], tokens]
    torch.testing.assert_close(lp, ref)
    assert torch.all(kl_k3(lp, lp) == 0)
    assert torch.all(kl_k3(lp, lp - 0.3) > 0)
    # k3 is an unbiased estimator of KL(p||q) for samples from p.
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.5, 0.3])
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = kl_k3(p.log()[x], q.log()[x]).mean().item()
    assert est == pytest.approx((p * (p / q).log()).sum().item(), rel=0.03)


def test_masked_mean_is_token_level():
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert masked_mean(x, m).item() == pytest.approx(9 / 5)  # not (1 + 5) / 2


def test_pad_batch_marks_exactly_the_completion_predictions():
    ids, attn, targets, mask = pad_batch([[1, 7, 8], [1, 9]], [[4, 2], [5, 6, 2]], pad_id=0)
    assert ids.tolist() == [[1, 7, 8, 4, 2], [1, 9, 5, 6, 2]]
    for b in range(2):
        assert targets[b][mask[b].bool()].tolist() == [[4, 2], [5, 6, 2]][b]
    grid = scatter_completion([[-0.1, -0.2], [-0.3, -0.4, -0.5]], [3, 2], mask.shape)
    assert grid[0][mask[0].bool()].tolist() == pytest.approx([-0.1, -0.2])
    assert grid[1][mask[1].bool()].tolist() == pytest.approx([-0.3, -0.4, -0.5])
