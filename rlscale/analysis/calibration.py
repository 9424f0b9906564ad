"""Do the intervals hold? Coverage of the sigmoid fit's 95% intervals over many synthetic
datasets drawn from a known curve with binomial evaluation noise.

Used by tests/test_fit_coverage.py (few datasets, few resamples) and
scripts/fit_coverage.py (the figures quoted in docs/analysis.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fitcore import FitRefused
from .sigmoid import fit_sigmoid, sigmoid_curve

# A realistic RL curve: from 0.3 to 0.8, half the gain at a quarter of the budget.
TRUTH = {"A": 0.8, "B": 1.5, "C_mid": 0.25, "R0": 0.3}


def sigmoid_dataset(rng: np.random.Generator, spacing: str = "even", n_evals: int = 16, n_problems: int = 200,
                    seeds: int = 1, seed_jitter: float = 0.0, truth: dict = TRUTH, c_max: float = 1.0):
    """(C, R, run labels) for `seeds` runs of one setting: a step-0 evaluation at C = 0 and
    n_evals more, evenly spaced in compute (every eval.every steps: the usual run) or
    log-spaced over two decades. Each evaluation is Binomial(n_problems, p) / n_problems.
    seed_jitter: each run's accuracy after step 0 is shifted by N(0, seed_jitter), the
    run-to-run variation that a setting's seeds show on top of evaluation noise."""
    if spacing == "even":
        C = np.linspace(c_max / n_evals, c_max, n_evals)
    elif spacing == "log":
        C = np.geomspace(c_max / 100, c_max, n_evals)
    else:
        raise ValueError(f"spacing must be 'even' or 'log', got {spacing!r}")
    C = np.r_[0.0, C]
    p = sigmoid_curve([truth["A"], truth["B"], truth["C_mid"]], C, truth["R0"])
    Cs, Rs, labels = [], [], []
    for s in range(seeds):
        shift = rng.normal(0, seed_jitter) * (C > 0) if seed_jitter else 0.0
        Cs.append(C)
        Rs.append(rng.binomial(n_problems, np.clip(p + shift, 0, 1)) / n_problems)
        labels.append(np.full(len(C), f"seed{s}", dtype=object))
    return np.concatenate(Cs), np.concatenate(Rs), np.concatenate(labels)


@dataclass
class Coverage:
    spacing: str
    seeds: int
    n_problems: int
    datasets: int
    fitted: int = 0
    held: dict = field(default_factory=lambda: {k: 0 for k in TRUTH})
    bounded: int = 0  # fits with at least one interval reported as bounded
    refusals: list = field(default_factory=list)

    hold_r0: bool = False

    def rate(self, name: str) -> float:
        if not self.fitted or (name == "R0" and self.hold_r0):
            return float("nan")
        return self.held[name] / self.fitted

    def row(self) -> dict:
        return {"spacing": self.spacing, "seeds": self.seeds, "n_problems": self.n_problems, "R0": "held" if
                self.hold_r0 else "fitted",
                "datasets": self.datasets, "fitted": self.fitted, "refused": len(self.refusals),
                "bounded": self.bounded, **{f"coverage_{k}": self.rate(k) for k in TRUTH}}


def sigmoid_coverage(datasets: int, spacing: str = "even", seeds: int = 1, n_problems: int = 200,
                     n_boot: int = 200, seed_jitter: float = 0.0, hold_r0: bool = False, seed: int = 0) -> Coverage:
    """Fit `datasets` synthetic datasets and count how often each 95% interval holds the truth.
    Refused fits are counted apart (a refusal is not a miss, but a high refusal rate is a
    fault of its own: callers check both). hold_r0 fixes R0 at the measured step-0 value,
    the old method this module shows to be miscalibrated."""
    rng = np.random.default_rng(seed)
    cov = Coverage(spacing, seeds, n_problems, datasets, hold_r0=hold_r0)
    for i in range(datasets):
        C, R, runs = sigmoid_dataset(rng, spacing, n_problems=n_problems, seeds=seeds, seed_jitter=seed_jitter)
        r0 = float(R[C == 0].mean()) if hold_r0 else None
        keep = C > 0 if hold_r0 else np.ones(len(C), bool)
        try:
            fit = fit_sigmoid(C[keep], R[keep], n_problems=n_problems, r0=r0,
                              groups=runs[keep] if seeds > 1 else None, n_boot=n_boot, seed=seed * 100_003 + i)
        except FitRefused as e:
            cov.refusals.append(str(e))
            continue
        cov.fitted += 1
        cov.bounded += bool(fit.bounded())
        for name, (lo, hi) in fit.ci().items():
            cov.held[name] += bool(lo <= TRUTH[name] <= hi)

    return cov
