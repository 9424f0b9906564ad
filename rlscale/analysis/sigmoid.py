"""ScaleRL's sigmoid of validation reward against RL compute, fitted with a noise model.

Khatri et al. 2025, "The Art of Scaling Reinforcement Learning Compute for LLMs", Eq. 1:
    R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B)

What makes its intervals hold (coverage measured in tests/test_fit_coverage.py):
- R0 is a parameter, not a constant. The step-0 evaluation is a data point at C = 0 like
  any other, so its noise enters every interval. (Holding R0 at the step-0 value gave B
  and C_mid intervals that held the truth about half the time.)
- Points are weighted by their binomial variance p(1-p)/n at the fitted curve, n the
  number of problems evaluated (the problem, not the sample, is the unit), times the
  overdispersion chi2/dof when the points scatter more than that (never less: for one
  sample per problem the binomial is exact, for mean@k over k > 1 samples it is an upper
  bound, so the intervals err wide). Without n the noise level is estimated from the scatter.
- One run, or two: a parametric bootstrap draws every evaluation again from the fitted
  curve with that noise. Three runs or more (seeds of one setting): whole runs are
  resampled, each bringing its residuals about the pooled curve, scaled by sqrt(G/(G-1))
  (a variance over G runs is that much too small).
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.special import expit

from .fitcore import (Fit, FitRefused, fit_robust, refit, refuse_at_bounds, refuse_if_flat, refuse_if_unstable,
                      require_points, single_threaded_blas)

SIGMOID = "ScaleRL sigmoid R(C) = R0 + (A - R0) / (1 + (C_mid/C)^B)"
INTERNAL_NAMES = ["A", "B", "ln C_mid", "R0"]
# A and R0 live in the metric's range (a_bounds): an accuracy whose asymptote is 1, or a
# base model that solves nothing, is a real value at a real bound, reported as bounded.
# B and C_mid have search bounds only: a fit pinned there is refused.
AT_REAL_BOUND = ("A:lower", "A:upper", "R0:lower", "R0:upper")
WHY_AT_BOUND = {
    "A": "The curve has not begun to level off within the data (or never left its start): "
         "the asymptote is not determined. Train with more compute.",
    "B": "The curve barely changes or changes in one jump; its efficiency is not determined.",
    "ln C_mid": "The half-gain point lies far outside the measured compute range.",
    "R0": "The start of the curve is not determined: evaluate the base model (eval.at_start)."}


def sigmoid_curve(params, C, r0: float | None = None):
    """R(C) for params (A, B, C_mid[, R0]). Written as a logistic in log C, which is the same
    function: 1 / (1 + (C_mid/C)^B) = expit(B * (ln C - ln C_mid)); at C = 0 it is R0."""
    A, B, c_mid = params[:3]
    r0 = params[3] if r0 is None else r0
    with np.errstate(divide="ignore"):
        s = expit(B * (np.log(np.asarray(C, float)) - np.log(c_mid)))
    return r0 + (A - r0) * s


def binomial_sd(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """sqrt(p(1-p)/n), with p kept half a problem away from 0 and 1 (a curve at 1.0 still
    has evaluation noise: the next problem may fail)."""
    p = np.clip(p, 0.5 / n, 1 - 0.5 / n)
    return np.sqrt(p * (1 - p) / n)


class _Model:
    """Residuals and Jacobian in the internal parameters (A, B, m = ln C_mid[, R0]), each
    divided by the point's standard error. Data arrays: (x = ln C or -inf at C = 0, sd, y)."""

    def __init__(self, r0: float | None):
        self.r0 = r0

    def curve(self, p, x):
        base = p[3] if self.r0 is None else self.r0
        return base + (p[0] - base) * expit(p[1] * (x - p[2]))

    def residuals(self, p, x, sd, y):
        return (self.curve(p, x) - y) / sd

    def jac(self, p, x, sd, y):
        A, B, m = p[:3]
        base = p[3] if self.r0 is None else self.r0
        s = expit(B * (x - m))
        d = (A - base) * s * (1 - s)
        dx = np.where(np.isfinite(x), x - m, 0.0)  # at C = 0, s = 0 and so is its slope
        cols = [s, d * dx, -d * B] + ([1 - s] if self.r0 is None else [])
        return np.stack(cols, axis=1) / sd[:, None]


@single_threaded_blas
def fit_sigmoid(C, R, n_problems=None, r0: float | None = None, groups=None, drop_below: float = 0.0,
                a_bounds: tuple[float, float] = (0.0, 1.0), n_boot: int = 1000, seed: int = 0) -> Fit:
    """Fit ScaleRL's sigmoid of reward (or accuracy) R against compute C.

    n_problems: problems per evaluation (a number or one per point); sets the binomial noise
    model. None: the noise level is estimated from the residuals.
    r0: hold R(0) at this value (only when it is known exactly); None fits it, anchored by the
    points at C = 0 (the base model's evaluation).
    groups: run labels, one per point: with 3+ runs the bootstrap resamples whole runs, drawn
    in the order the labels first appear (so settings whose runs are listed in the same seed
    order draw the same seeds in every resample: a paired bootstrap).
    drop_below: leave out points with 0 < C < drop_below (ScaleRL drops the early phase,
    whose fast initial rise the law does not describe); the C = 0 anchor stays.
    Bounds: A and R0 in a_bounds (the metric's possible values: an interval that reaches one
    is reported as bounded, Fit.bounded), B in [0.05, 20] and C_mid within the measured
    compute range widened by its own span (at least 10x) on either side (search bounds: a
    fit pinned there is refused).
    """
    C, R = np.asarray(C, float), np.asarray(R, float)
    n = None if n_problems is None else np.broadcast_to(np.asarray(n_problems, float), C.shape)
    keep = np.isfinite(C) & np.isfinite(R) & (C >= 0) & ((C <= 0) | (C >= drop_below))
    if n is not None:
        keep &= np.isfinite(n) & (n > 0)
    with np.errstate(divide="ignore"):
        x = np.where(C[keep] > 0, np.log(np.where(C[keep] > 0, C[keep], 1.0)), -np.inf)
    y = R[keep]
    n = None if n is None else n[keep]
    g = None if groups is None else np.asarray(groups, dtype=object)[keep]
    pos = np.isfinite(x)
    model = _Model(r0)
    free_r0 = r0 is None
    n_par = 4 if free_r0 else 3
    require_points(int(pos.sum()), n_par + 2, "sigmoid", "evaluation points with compute > 0")

    span = max(np.ptp(x[pos]), np.log(10))
    lower = np.array([a_bounds[0], 0.05, x[pos].min() - span] + ([a_bounds[0]] if free_r0 else []))
    upper = np.array([a_bounds[1], 20.0, x[pos].max() + span] + ([a_bounds[1]] if free_r0 else []))
    lo_y, hi_y = np.percentile(y, [10, 90])
    start_r0 = float(y[~pos].mean()) if (~pos).any() else lo_y
    starts = [[a, b, m] + ([start_r0] if free_r0 else [])
              for a in (hi_y, min(a_bounds[1], hi_y + 0.5 * (hi_y - lo_y) + 0.01))
              for b in (0.5, 1.0, 2.0, 4.0)
              for m in np.percentile(x[pos], [25, 50, 75])]

    # 1. unweighted fit for the curve's shape; 2. weights from the noise model at that curve,
    # refitted twice (iteratively reweighted: the weights follow the curve, not the noisy y).
    sd = np.ones_like(y)
    p, _ = fit_robust(model.residuals, model.jac, starts, lower, upper, args=(x, sd, y))
    if n is not None:
        for _ in range(2):
            sd = binomial_sd(model.curve(p, x), n)
            p = refit(model.residuals, model.jac, p, lower, upper, _robust_scale(model, p, x, sd, y, floor=1.0),
                      args=(x, sd, y))
    res = model.residuals(p, x, sd, y)
    dof = max(len(y) - n_par, 1)
    phi = float(np.sum(res ** 2) / dof)
    if n is not None:
        phi = max(phi, 1.0)  # evaluation noise is at least binomial
    f_scale = _robust_scale(model, p, x, sd, y, floor=1.0 if n is not None else 0.0)

    refuse_if_flat("sigmoid", y, res * sd, n_par, sd=sd * np.sqrt(phi))
    refuse_at_bounds("sigmoid", INTERNAL_NAMES, p, lower, upper, why=WHY_AT_BOUND, skip=AT_REAL_BOUND)

    mu = model.curve(p, x)
    boot, unit = _bootstrap(model, p, (x, sd, y), mu, phi, g, lower, upper, f_scale, n_boot, seed,
                            noise="binomial" if n is not None else "residual")
    refuse_if_unstable("sigmoid", INTERNAL_NAMES, boot, lower, upper, skip=AT_REAL_BOUND)

    def to_public(q):
        return np.concatenate([q[..., :2], np.exp(q[..., 2:3]), q[..., 3:]], axis=-1)

    names = ["A", "B", "C_mid"] + (["R0"] if free_r0 else [])
    raw = (model.curve(p, x) - y)
    fit = Fit(SIGMOID, names, to_public(p), to_public(boot) if len(boot) else boot, int(pos.sum()), unit,
              float(np.sqrt(np.mean(raw ** 2))),
              model=(lambda q, c: sigmoid_curve(q, c)) if free_r0 else (lambda q, c: sigmoid_curve(q, c, r0)),
              fixed={} if free_r0 else {"R0": r0},
              bounds=dict(zip(names, zip(to_public(lower), to_public(upper)))))
    fit.fixed.update(drop_below=float(drop_below), c_range=[float(np.exp(x[pos].min())), float(np.exp(x[pos].max()))],
                     overdispersion=phi, noise="binomial" if n is not None else "estimated from the residuals")
    if free_r0 and not (~pos).any():
        fit.notes.append("No evaluation at compute 0 (step 0): R0 is extrapolated from the curve.")
    if p[2] > x[pos].max():
        fit.notes.append("C_mid lies beyond the largest measured compute: A is an extrapolation, "
                         "trust its interval, not its point value.")
    if not unit.startswith("runs") and g is not None and len(set(g)) == 2:
        fit.notes.append("Two runs are too few to resample whole runs: the interval reflects evaluation noise, "
                         "not run-to-run variation. Three seeds or more resample whole runs.")
    return fit


def _robust_scale(model: _Model, p, x, sd, y, floor: float) -> float:
    """The soft-L1 scale, in standard errors: twice the robust spread (1.4826 MAD) of the
    standardized residuals, so only points far outside the noise are down-weighted."""
    r = model.residuals(p, x, sd, y)
    return max(2 * 1.4826 * float(np.median(np.abs(r - np.median(r)))), 2 * floor, 1e-6)


def _bootstrap(model: _Model, p, data, mu, phi, groups, lower, upper, f_scale, n_boot, seed, noise: str):
    """(bootstrap parameter rows, what was resampled). A failed refit leaves a NaN row, so
    row i of every fit made with the same seed and run order comes from the same draw.

    Every resample draws each evaluation again: the fitted curve plus noise of the point's
    standard error times sqrt(overdispersion). With 3+ runs it first draws whole runs with
    replacement (in label order, so settings listed in the same seed order are paired), and
    each drawn run brings its own offset from the pooled curve: its weighted mean residual,
    shrunk to the between-run spread that evaluation noise does not explain (tau^2) and
    rescaled by G/(G-1). Resampling the runs' raw points alone held the truth only 70-80%
    of the time with 3 seeds: 3 runs say little about noise that 3 x 17 points pin down."""
    if n_boot <= 0:
        return np.empty((0, 0)), "none"
    x, sd, y = data
    # Two streams: the run draws are shared by every fit with this seed (the pairing); the
    # noise draws are the data's own, so two independent runs never get the same noise.
    runs_rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(y).tobytes())])
    labels = list(dict.fromkeys(groups)) if groups is not None else []
    by_run = [np.flatnonzero(groups == lab) for lab in labels] if len(labels) >= 3 else None
    offsets = _run_offsets(by_run, y - mu, sd, phi) if by_run is not None else None
    out = np.full((n_boot, len(p)), np.nan)
    for i in range(n_boot):
        if by_run is not None:
            draw = runs_rng.integers(0, len(by_run), len(by_run))
            idx = np.concatenate([by_run[j] for j in draw])
            shift = np.concatenate([np.full(len(by_run[j]), offsets[j]) for j in draw])
        else:
            idx, shift = np.arange(len(y)), 0.0
        x_i, sd_i = x[idx], sd[idx]
        y_i = mu[idx] + shift + np.sqrt(phi) * sd_i * noise_rng.standard_normal(len(idx))
        try:
            out[i] = refit(model.residuals, model.jac, p, lower, upper, f_scale, args=(x_i, sd_i, y_i))
        except (ValueError, np.linalg.LinAlgError):
            continue
    unit = "runs (offsets) + parametric noise" if by_run is not None else f"parametric ({noise} noise)"
    return out, unit


def _run_offsets(by_run, resid, sd, phi) -> np.ndarray:
    """Each run's offset from the pooled curve, centred and scaled so that drawing G of them
    with replacement has variance tau^2, the between-run variance beyond evaluation noise."""
    w = 1.0 / sd ** 2
    means = np.array([np.average(resid[ix], weights=w[ix]) for ix in by_run])
    noise_var = np.array([phi / w[ix].sum() for ix in by_run])
    G = len(by_run)
    spread = float(np.var(means, ddof=1))
    tau2 = max(0.0, spread - float(noise_var.mean()))
    if tau2 <= 0 or spread <= 0:
        return np.zeros(G)
    return (means - means.mean()) * np.sqrt(tau2 / ((G - 1) / G * spread))
