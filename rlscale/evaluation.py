"""Validation metrics over k samples per problem."""

from __future__ import annotations

from math import comb

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, Eq. 1):
    1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def standard_error(per_problem: np.ndarray) -> float:
    """SE of a mean over problems. The k samples of one problem are correlated (an easy
    problem is solved by all of them), so the problem, not the sample, is the unit: the
    SE is the spread of per-problem scores over sqrt(number of problems)."""
    if len(per_problem) < 2:
        return float("nan")
    return float(per_problem.std(ddof=1) / np.sqrt(len(per_problem)))


def summarize_eval(rewards: list[list[float]], k: int) -> dict[str, float]:
    """rewards [n_problems][n_samples] in {0, 1}: mean@n (average accuracy over all
    samples) and pass@k averaged over problems, each with its standard error."""
    r = np.asarray(rewards, dtype=np.float64)
    n = r.shape[1]
    correct = (r > 0.5).sum(axis=1)
    mean_per_problem = r.mean(axis=1)
    pass_per_problem = np.array([pass_at_k(n, int(c), k) for c in correct])
    return {
        "val_mean_at_k": float(mean_per_problem.mean()),
        "val_mean_at_k_se": standard_error(mean_per_problem),
        "val_pass_at_k": float(pass_per_problem.mean()),
        "val_pass_at_k_se": standard_error(pass_per_problem),
    }
