"""The extrapolation check: how a user learns whether to trust a law's prediction.

Fit the sigmoid on the first fraction F of a run's compute, predict every later
evaluation, and score the prediction two ways:
- does its interval hold the measurements? Each held-out point's prediction interval
  combines the fit's uncertainty (bootstrap spread of the curve there) with the
  measurement's own noise (binomial, times the fit's overdispersion). The intervals are
  simultaneous: Bonferroni over the m held-out points, so a run with many late evaluations
  is not failed by one 1-in-20 draw.
- does it beat persistence? The baseline predicts that nothing changes after the fit window:
  every later evaluation equals the fitted curve's value at the last fitted point. A law
  earns its keep only by predicting the change persistence misses.

Verdicts:
- fail: a held-out point lies outside the prediction's interval, or the fit predicts the
  held-out points no better than persistence (unless both are within evaluation noise of
  them, when the check cannot tell them apart: untested).
- untested: the interval holds, but the held-out points are within noise of the persistence
  value, so a flat line would pass as well (typical when the fit window already reaches the
  plateau). The errors are still reported; the check could not have told the law from "no
  change".
- pass: the interval holds every held-out point, the points moved, and the fit's RMSE is
  below persistence's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .compare import curve_points, eval_sizes, fit_setting
from .fitcore import FitRefused
from .sigmoid import binomial_sd, fit_sigmoid

LEVEL = 0.95


def extrapolation_check(run: pd.DataFrame, fit_until: float, metric: str, compute: str,
                        drop_early: float = 0.0, n_boot: int = 1000, seed: int = 0) -> dict:
    """Fit on compute <= fit_until * final compute and score the prediction on every later
    evaluation (module docstring). On a refused fit the dict carries `refused` instead."""
    if not 0 < fit_until < 1:
        raise ValueError(f"--fit-until must be a fraction in (0, 1), got {fit_until}")
    C, R = curve_points(run, metric, compute)
    n = eval_sizes(run, metric, compute)
    out = {"run": run["run"].iloc[0], "fit_until": fit_until, "metric": metric, "compute": compute}
    if len(C) == 0:
        return out | {"refused": f"no {metric} values logged"}
    c_final = float(C[-1])
    cut = fit_until * c_final
    inside, held = C <= cut, C > cut
    out |= {"c_cut": cut, "c_final": c_final, "observed": float(R[-1]),
            "n_fit_points": int((inside & (C > 0)).sum()), "n_held_out": int(held.sum())}
    if not held.any():
        return out | {"refused": "no evaluation after the fit window; lower --fit-until"}
    try:
        fit = fit_sigmoid(C[inside], R[inside], n_problems=None if n is None else n[inside],
                          drop_below=drop_early * cut, n_boot=n_boot, seed=seed)
    except FitRefused as e:
        return out | {"refused": str(e)}
    return out | {"fit": fit} | score(fit, C[held], R[held], None if n is None else n[held],
                                      float(C[inside].max()))


def measurement_sd(fit, pred: np.ndarray, n_problems) -> np.ndarray:
    """One evaluation's noise at each predicted value: binomial over its problems (the fit's
    residual scale when their count is not logged), times the fit's overdispersion."""
    phi = fit.fixed.get("overdispersion", 1.0)
    if n_problems is not None:
        return np.sqrt(phi) * binomial_sd(pred, np.asarray(n_problems))
    return np.full_like(pred, fit.rmse * np.sqrt(phi))


def score(fit, C_held, R_held, n_held, c_last_fitted: float) -> dict:
    """Prediction and persistence errors on the held-out points, and the verdict."""
    pred = fit.predict(C_held)
    boot = fit.boot_ok
    curve_sd = np.std(np.stack([fit.model(p, C_held) for p in boot]), axis=0) if len(boot) else np.zeros_like(pred)
    meas_sd = measurement_sd(fit, pred, n_held)
    m = len(C_held)
    z_crit = float(stats.norm.ppf(1 - (1 - LEVEL) / (2 * m)))  # simultaneous over the m points
    total_sd = np.sqrt(curve_sd ** 2 + meas_sd ** 2)
    lo, hi = pred - z_crit * total_sd, pred + z_crit * total_sd
    inside = (R_held >= lo) & (R_held <= hi)
    persistence = float(fit.predict([c_last_fitted])[0])
    rmse_fit = float(np.sqrt(np.mean((pred - R_held) ** 2)))
    rmse_persist = float(np.sqrt(np.mean((persistence - R_held) ** 2)))
    # Do the held-out points differ from persistence / from the prediction by more than
    # evaluation noise? (chi^2 of the standardized differences over the m points)
    p_flat = float(stats.chi2.sf(np.sum(((R_held - persistence) / meas_sd) ** 2), m))
    p_pred = float(stats.chi2.sf(np.sum(((R_held - pred) / meas_sd) ** 2), m))
    both_within_noise = p_flat > 1 - LEVEL and p_pred > 1 - LEVEL
    reasons = []
    if not inside.all():
        worst = int(np.argmax(np.abs(R_held - pred) / total_sd))
        reasons.append(f"{int((~inside).sum())} of {m} held-out point(s) outside the prediction's simultaneous "
                       f"{LEVEL:.0%} interval (worst at C = {C_held[worst]:.3g}: predicted {pred[worst]:.3f} "
                       f"[{lo[worst]:.3f}, {hi[worst]:.3f}], measured {R_held[worst]:.3f})")
        verdict = "fail"
    elif rmse_fit >= rmse_persist and not both_within_noise:
        verdict = "fail"
        reasons.append(f"no better than persistence: RMSE {rmse_fit:.4f} against {rmse_persist:.4f} for "
                       f"\"no change after the fit window\" (the measurements depart from the prediction by more "
                       f"than noise, chi2 p = {p_pred:.2g})")
    elif p_flat > 1 - LEVEL:
        verdict = "untested"
        reasons.append(f"the held-out points stay within noise of the last fitted value {persistence:.3f} "
                       f"(chi2 p = {p_flat:.2f}): a flat line predicts them as well, so this check could not "
                       "have failed the law. Fit on less (lower --fit-until) or train longer.")
    else:
        verdict = "pass"
    return {"verdict": verdict, "reasons": reasons, "held_out": {
                "C": C_held.tolist(), "measured": R_held.tolist(), "predicted": pred.tolist(),
                "lo": lo.tolist(), "hi": hi.tolist(), "inside": inside.tolist()},
            "predicted": float(pred[-1]), "band95": [float(lo[-1]), float(hi[-1])],
            "error": float(pred[-1] - R_held[-1]),
            "rmse_fit": rmse_fit, "rmse_persistence": rmse_persist, "persistence": persistence,
            "p_flat": p_flat, "p_prediction": p_pred, "z_crit": z_crit}


def setting_extrapolation(runs: pd.DataFrame, fit_until: float, metric: str, compute: str,
                          drop_early: float = 0.0, n_boot: int = 1000, seed: int = 0) -> dict:
    """The check for a setting's seeds together: one sigmoid fitted to every seed's points up
    to fit_until x the seeds' median final compute (bootstrapped over whole runs), its
    prediction of the seeds' mean final measurement, and that mean. Averaging k seeds takes
    the final measurement's own noise down by sqrt(k), so the error says more about the law
    than one run's (whose last evaluation alone has an SE of 0.01-0.02 at 200 problems).
    The interval combines the pooled curve's bootstrap spread at the seeds' final compute
    with the binomial noise of the mean (times the fit's overdispersion)."""
    finals = []
    for _, run in runs.groupby("run", sort=False):
        C, R = curve_points(run, metric, compute)
        n = eval_sizes(run, metric, compute)
        if len(C):
            finals.append((C[-1], R[-1], None if n is None else n[-1]))
    C_fin, R_fin = np.array([f[0] for f in finals]), np.array([f[1] for f in finals])
    cut = fit_until * float(np.median(C_fin))
    out = {"members": runs["run"].nunique(), "fit_until": fit_until, "c_cut": cut, "observed": float(R_fin.mean())}
    try:
        fit = fit_setting(runs[runs[compute] <= cut], metric, compute, drop_early, n_boot, seed)
    except FitRefused as e:
        return out | {"refused": str(e)}
    pred = float(fit.predict(C_fin).mean())
    boot = fit.boot_ok
    curve_sd = float(np.std([fit.model(p, C_fin).mean() for p in boot])) if len(boot) else 0.0
    n_fin = [f[2] for f in finals]
    # The mean of k independent final evaluations: sqrt(sum of their variances) / k.
    each_sd = measurement_sd(fit, np.full(len(n_fin), pred), n_fin if all(n is not None for n in n_fin) else None)
    meas_sd = float(np.sqrt(np.sum(each_sd ** 2)) / len(n_fin))
    half = float(stats.norm.ppf(1 - (1 - LEVEL) / 2)) * np.hypot(curve_sd, meas_sd)
    return out | {"fit": fit, "predicted": pred, "band95": [pred - half, pred + half], "error": pred - out["observed"],
                  "inside": bool(abs(pred - out["observed"]) <= half), "c_final": float(np.median(C_fin))}
