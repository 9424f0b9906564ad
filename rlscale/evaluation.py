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


def summarize_eval(rewards: list[list[float]], k: int) -> dict[str, float]:
    """rewards [n_problems][n_samples] in {0, 1}: mean@n (average accuracy over all
    samples) and pass@k averaged over problems."""
    r = np.asarray(rewards, dtype=np.float64)
    n = r.shape[1]
    correct = (r > 0.5).sum(axis=1)
    return {
        "val_mean_at_k": float(r.mean()),
        "val_pass_at_k": float(np.mean([pass_at_k(n, int(c), k) for c in correct])),
    }
