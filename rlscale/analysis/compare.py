"""Per-run compute curves, the extrapolation check, and the comparison of runs.

The extrapolation check is how a user learns whether to trust a law: fit on the first
fraction F of a run's compute, predict the final evaluation, and compare with what the
run actually measured there.

The comparison follows ScaleRL (Khatri et al. 2025, Sec. 3): a method's asymptote A is
compared first; the efficiency B (and C_mid) only between runs whose A intervals agree,
because with different ceilings a faster approach says little.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .fitcore import Fit, FitRefused
from .rl_laws import fit_sigmoid


def curve_points(run: pd.DataFrame, metric: str, compute: str) -> tuple[np.ndarray, np.ndarray]:
    """(compute, metric) at the steps where the metric was measured."""
    rows = run[run[metric].notna() & run[compute].notna()]
    return rows[compute].to_numpy(float), rows[metric].to_numpy(float)


def eval_standard_error(run: pd.DataFrame, value: float) -> float | None:
    """Binomial standard error of an accuracy over eval.n_problems problems (the k samples per
    problem are correlated, so the problem count, not problems x k, is the sample size)."""
    n = run["eval.n_problems"].iloc[0] if "eval.n_problems" in run else None
    if n is None or not np.isfinite(value) or pd.isna(n):
        return None
    return math.sqrt(max(value * (1 - value), 0.0) / float(n))


def fit_run(run: pd.DataFrame, metric: str, compute: str, drop_early: float = 0.0, n_boot: int = 1000,
            seed: int = 0) -> Fit:
    """ScaleRL sigmoid for one run; drop_early is a fraction of the run's final compute."""
    C, R = curve_points(run, metric, compute)
    return fit_sigmoid(C, R, drop_below=drop_early * C.max() if len(C) else 0.0, n_boot=n_boot, seed=seed)


def fit_setting(runs: pd.DataFrame, metric: str, compute: str, drop_early: float = 0.0, n_boot: int = 1000,
                seed: int = 0) -> Fit:
    """One sigmoid through several seeds of one setting, bootstrapped over the seeds."""
    C, R, groups = [], [], []
    for name, run in runs.groupby("run", sort=False):
        c, r = curve_points(run, metric, compute)
        C.append(c), R.append(r), groups.append(np.full(len(c), name, dtype=object))
    C, R = np.concatenate(C), np.concatenate(R)
    return fit_sigmoid(C, R, groups=np.concatenate(groups), drop_below=drop_early * C.max(),
                       n_boot=n_boot, seed=seed)


def extrapolation_check(run: pd.DataFrame, fit_until: float, metric: str, compute: str,
                        drop_early: float = 0.0, n_boot: int = 1000, seed: int = 0) -> dict:
    """Fit on compute <= fit_until * final compute; compare the prediction at the final
    evaluation with the measurement. On a refused fit the dict carries `refused` instead."""
    if not 0 < fit_until < 1:
        raise ValueError(f"--fit-until must be a fraction in (0, 1), got {fit_until}")
    C, R = curve_points(run, metric, compute)
    out = {"run": run["run"].iloc[0], "fit_until": fit_until, "metric": metric, "compute": compute}
    if len(C) == 0:
        return out | {"refused": f"no {metric} values logged"}
    c_final, observed = float(C[-1]), float(R[-1])
    cut = fit_until * c_final
    out |= {"c_cut": cut, "c_final": c_final, "observed": observed,
            "observed_se": eval_standard_error(run, observed), "n_fit_points": int(((C > 0) & (C <= cut)).sum()),
            "n_held_out": int((C > cut).sum())}
    try:
        fit = fit_sigmoid(C[C <= cut], R[C <= cut], drop_below=drop_early * cut, n_boot=n_boot, seed=seed)
    except FitRefused as e:
        return out | {"refused": str(e)}
    predicted = float(fit.predict([c_final])[0])
    lo, hi = (float(v[0]) for v in fit.band([c_final]))
    se = out["observed_se"] or 0.0
    out |= {"fit": fit, "predicted": predicted, "band95": [lo, hi], "error": predicted - observed,
            "abs_error": abs(predicted - observed),
            # the prediction holds if its band overlaps the measurement's own 2-SE noise
            "consistent": bool(lo - 2 * se <= observed <= hi + 2 * se)}
    return out


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def compare_fits(fits: dict[str, Fit]) -> list[dict]:
    """Pairwise verdicts on A, then B and C_mid where the A intervals agree. Interval overlap
    is the (conservative) criterion for "within noise"."""
    out = []
    labels = list(fits)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            ca, cb = fits[a].ci(), fits[b].ci()
            pa, pb = fits[a].params, fits[b].params
            row = {"a": a, "b": b}
            if _overlap(ca["A"], cb["A"]):
                row["A"] = f"A within noise ({pa['A']:.3f} vs {pb['A']:.3f}, intervals overlap)"
                for name in ("B", "C_mid"):
                    if _overlap(ca[name], cb[name]):
                        row[name] = f"{name} within noise ({pa[name]:.3g} vs {pb[name]:.3g})"
                    elif name == "B":
                        steeper = a if pa["B"] > pb["B"] else b
                        row[name] = f"B differs ({pa['B']:.3g} vs {pb['B']:.3g}): {steeper} is more compute-efficient"
                    else:
                        sooner = a if pa["C_mid"] < pb["C_mid"] else b
                        row[name] = (f"C_mid differs ({pa['C_mid']:.3g} vs {pb['C_mid']:.3g}): "
                                     f"{sooner} reaches half its gain with less compute")
            else:
                higher = a if pa["A"] > pb["A"] else b
                row["A"] = (f"A differs ({pa['A']:.3f} vs {pb['A']:.3f}, intervals apart): {higher} has the "
                            "higher ceiling")
                row["B"] = "B and C_mid not compared: the ceilings differ (ScaleRL compares B only at equal A)"
                row["C_mid"] = None
            out.append(row)
    return out
