"""Per-run and per-setting compute curves, and the comparison of settings.

The comparison follows ScaleRL (Khatri et al. 2025, Sec. 3): the asymptote A is compared
first; the efficiency B (and C_mid) only between settings whose A do not differ, because
with different ceilings a faster approach says little. "Differ" is decided by a paired
bootstrap of the difference: both fits are refitted on resamples that draw the same seeds
(row i of each bootstrap), and the difference is called real when its 95% interval
excludes zero. (Checking whether two separate intervals overlap is a much weaker test: it
misses differences about 1.4x smaller than the intervals, and ignores the pairing.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .fitcore import CI_LEVEL, Fit
from .sigmoid import fit_sigmoid


def curve_points(run: pd.DataFrame, metric: str, compute: str) -> tuple[np.ndarray, np.ndarray]:
    """(compute, metric) at the steps where the metric was measured."""
    rows = run[run[metric].notna() & run[compute].notna()]
    return rows[compute].to_numpy(float), rows[metric].to_numpy(float)


def eval_sizes(run: pd.DataFrame, metric: str, compute: str) -> np.ndarray | None:
    """Problems behind each evaluation point of curve_points (the binomial n of its noise):
    the row's val_n_problems where logged, else the run's eval.n_problems. None when the
    metric is not a validation accuracy (its noise level is then estimated from the fit)."""
    if not metric.startswith("val_"):
        return None
    rows = run[run[metric].notna() & run[compute].notna()]
    n = pd.Series(np.nan, index=rows.index)
    if "val_n_problems" in rows:
        n = rows["val_n_problems"].astype(float)
    if "eval.n_problems" in rows:
        n = n.fillna(rows["eval.n_problems"].astype(float))
    n = n.to_numpy(float)
    return n if np.isfinite(n).all() and len(n) else None


def fit_run(run: pd.DataFrame, metric: str, compute: str, drop_early: float = 0.0, n_boot: int = 1000,
            seed: int = 0) -> Fit:
    """ScaleRL sigmoid for one run; drop_early is a fraction of the run's final compute."""
    C, R = curve_points(run, metric, compute)
    return fit_sigmoid(C, R, n_problems=eval_sizes(run, metric, compute),
                       drop_below=drop_early * C.max() if len(C) else 0.0, n_boot=n_boot, seed=seed)


def seed_order(runs: pd.DataFrame) -> list[str]:
    """A setting's runs sorted by seed, so two settings' bootstraps draw the same seeds."""
    first = runs.drop_duplicates("run")
    key = first["seed"] if "seed" in first else pd.Series(range(len(first)), index=first.index)
    return list(first.assign(_k=key).sort_values(["_k", "run"], kind="stable")["run"])


def fit_setting(runs: pd.DataFrame, metric: str, compute: str, drop_early: float = 0.0, n_boot: int = 1000,
                seed: int = 0) -> Fit:
    """One sigmoid through several seeds of one setting, bootstrapped over the seeds."""
    C, R, N, groups = [], [], [], []
    for name in seed_order(runs):
        run = runs[runs["run"] == name]
        c, r = curve_points(run, metric, compute)
        n = eval_sizes(run, metric, compute)
        C.append(c), R.append(r), groups.append(np.full(len(c), name, dtype=object))
        N.append(n if n is not None else np.full(len(c), np.nan))
    C, R, N = np.concatenate(C), np.concatenate(R), np.concatenate(N)
    return fit_sigmoid(C, R, n_problems=N if np.isfinite(N).all() else None, groups=np.concatenate(groups),
                       drop_below=drop_early * C.max(), n_boot=n_boot, seed=seed)


def paired_difference(a: Fit, b: Fit, name: str, level: float = CI_LEVEL) -> dict:
    """a - b for one parameter (a log ratio for C_mid, which lives on a log scale), with the
    percentile interval over the bootstrap rows both fits share."""
    j, k = a.names.index(name), b.names.index(name)
    if len(a.boot) == 0 or len(b.boot) == 0:
        return {"diff": float("nan"), "ci95": [float("nan")] * 2, "n_pairs": 0, "differs": None}
    m = min(len(a.boot), len(b.boot))
    transform = np.log if name == "C_mid" else (lambda v: v)
    d = transform(a.boot[:m, j]) - transform(b.boot[:m, k])
    d = d[np.isfinite(d)]
    point = float(transform(a.values[j]) - transform(b.values[k]))
    if len(d) < 20:
        return {"diff": point, "ci95": [float("nan")] * 2, "n_pairs": int(len(d)), "differs": None}
    lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
    return {"diff": point, "ci95": [float(lo), float(hi)], "n_pairs": int(len(d)),
            "differs": bool(lo > 0 or hi < 0), "scale": "ln ratio" if name == "C_mid" else "difference"}


def compare_fits(fits: dict[str, Fit]) -> list[dict]:
    """Pairwise verdicts, A first, then B and C_mid where A does not differ (module docstring)."""
    out = []
    labels = list(fits)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            fa, fb = fits[a], fits[b]
            pa, pb = fa.params, fb.params
            row = {"a": a, "b": b, "paired": {n: paired_difference(fa, fb, n) for n in ("A", "B", "C_mid")}}
            dA = row["paired"]["A"]
            interval = f"A_a - A_b = {dA['diff']:+.3f} [{dA['ci95'][0]:+.3f}, {dA['ci95'][1]:+.3f}]"
            if dA["differs"] is None:
                row["A"] = f"A not compared: too few bootstrap resamples ({dA['n_pairs']})"
                row["B"] = row["C_mid"] = None
            elif dA["differs"]:
                higher = a if pa["A"] > pb["A"] else b
                row["A"] = f"A differs ({pa['A']:.3f} vs {pb['A']:.3f}; {interval}): {higher} has the higher ceiling"
                row["B"] = "B and C_mid not compared: the ceilings differ (ScaleRL compares B only at equal A)"
                row["C_mid"] = None
            else:
                row["A"] = f"A within noise ({pa['A']:.3f} vs {pb['A']:.3f}; {interval} holds 0)"
                row["B"] = _verdict_b(row["paired"]["B"], a, b, pa["B"], pb["B"])
                row["C_mid"] = _verdict_c_mid(row["paired"]["C_mid"], a, b, pa["C_mid"], pb["C_mid"])
            out.append(row)
    return out


def _verdict_b(d: dict, a: str, b: str, va: float, vb: float) -> str:
    interval = f"B_a - B_b = {d['diff']:+.3g} [{d['ci95'][0]:+.3g}, {d['ci95'][1]:+.3g}]"
    if not d["differs"]:
        return f"B within noise ({va:.3g} vs {vb:.3g}; {interval})"
    steeper = a if va > vb else b
    return f"B differs ({va:.3g} vs {vb:.3g}; {interval}): {steeper} is more compute-efficient"


def _verdict_c_mid(d: dict, a: str, b: str, va: float, vb: float) -> str:
    interval = f"ln(C_mid_a / C_mid_b) = {d['diff']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
    if not d["differs"]:
        return f"C_mid within noise ({va:.3g} vs {vb:.3g}; {interval})"
    sooner = a if va < vb else b
    return f"C_mid differs ({va:.3g} vs {vb:.3g}; {interval}): {sooner} reaches half its gain with less compute"
