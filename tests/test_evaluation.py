"""Validation metrics: mean@k, pass@k and their standard errors."""

import pytest

from rlscale.evaluation import summarize_eval


def test_eval_standard_error_takes_the_problem_as_the_unit():
    # 4 problems x 4 samples: two always solved, two never. The 16 samples look like
    # 16 coin flips at p=0.5 (SE 0.125), but only 4 problems were measured.
    rewards = [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    out = summarize_eval(rewards, k=2)
    assert out["val_mean_at_k"] == 0.5 and out["val_pass_at_k"] == 0.5
    assert out["val_mean_at_k_se"] == pytest.approx(0.57735 / 2, rel=1e-4)  # std(ddof=1) of (1,1,0,0) / sqrt(4)
    mixed = summarize_eval([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]], k=2)
    assert mixed["val_mean_at_k"] == 0.5 and mixed["val_mean_at_k_se"] == 0.0  # every problem scores 0.5
    assert mixed["val_pass_at_k"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
