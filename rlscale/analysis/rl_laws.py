"""Laws of one RL run: reward against compute, error against compute, reward against entropy.

- ScaleRL sigmoid (Khatri et al. 2025, "The Art of Scaling Reinforcement Learning Compute
  for LLMs", Eq. 1):  R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B)
- power law with a floor (Kaplan et al. 2020; Hoffmann et al. 2022 use the same form):
  L(C) = E + K * C^(-alpha)
- entropy–reward law (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning
  for Reasoning Language Models", Eq. 1):  R = -a * exp(H) + b
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .fitcore import Fit, FitRefused, derive, fit_checked, require_points, single_threaded_blas

SIGMOID = "ScaleRL sigmoid R(C) = R0 + (A - R0) / (1 + (C_mid/C)^B)"
POWER = "power law with floor L(C) = E + K * C^-alpha"
ENTROPY = "entropy-reward law R = -a * exp(H) + b"


# --- ScaleRL sigmoid ------------------------------------------------------------------------

def sigmoid_curve(params, C, r0: float | None = None):
    """R(C) for params (A, B, C_mid[, R0]). Written as a logistic in log C, which is the same
    function: 1 / (1 + (C_mid/C)^B) = expit(B * (ln C - ln C_mid))."""
    A, B, c_mid = params[:3]
    r0 = params[3] if r0 is None else r0
    with np.errstate(divide="ignore"):
        s = expit(B * (np.log(np.asarray(C, float)) - np.log(c_mid)))
    return r0 + (A - r0) * s


@single_threaded_blas
def fit_sigmoid(C, R, r0: float | None = None, groups=None, drop_below: float = 0.0,
                a_bounds: tuple[float, float] = (0.0, 1.0), n_boot: int = 1000, seed: int = 0) -> Fit:
    """Fit ScaleRL's sigmoid of reward (or accuracy) R against compute C.

    r0: the reward at zero compute. None = take it from the points at C = 0 (the base model's
    evaluation, step 0) when there are any, otherwise fit it as a fourth parameter.
    drop_below: leave out points with C below this (ScaleRL drops the early phase, whose
    fast initial rise the law does not describe). Bounds: A in a_bounds, B in [0.05, 20],
    C_mid within the measured compute range widened by its own span (at least 10x) either side.
    """
    C, R = np.asarray(C, float), np.asarray(R, float)
    groups = None if groups is None else np.asarray(groups)
    ok = np.isfinite(C) & np.isfinite(R)
    at_zero = ok & (C <= 0)
    if r0 is None and at_zero.any():
        r0 = float(R[at_zero].mean())  # the base model's reward anchors the curve at C -> 0
    keep = ok & (C > 0) & (C >= drop_below)
    x, y = np.log(C[keep]), R[keep]
    g = None if groups is None else groups[keep]
    free_r0 = r0 is None
    n_par = 4 if free_r0 else 3
    require_points(len(y), n_par + 3, "sigmoid", "evaluation points with compute > 0")

    span = max(x.max() - x.min(), np.log(10))
    lower = [a_bounds[0], 0.05, x.min() - span] + ([a_bounds[0]] if free_r0 else [])
    upper = [a_bounds[1], 20.0, x.max() + span] + ([a_bounds[1]] if free_r0 else [])

    # Internal parameters: (A, B, m = ln C_mid[, R0]); residuals and an exact Jacobian.
    def residuals(p, x, y):
        A, B, m = p[:3]
        base = p[3] if free_r0 else r0
        return base + (A - base) * expit(B * (x - m)) - y

    def jac(p, x, y):
        A, B, m = p[:3]
        base = p[3] if free_r0 else r0
        s = expit(B * (x - m))
        d = (A - base) * s * (1 - s)
        cols = [s, d * (x - m), -d * B] + ([1 - s] if free_r0 else [])
        return np.stack(cols, axis=1)

    lo_y, hi_y = np.percentile(y, [10, 90])
    starts = [[a, b, m] + ([lo_y] if free_r0 else [])
              for a in (hi_y, min(a_bounds[1], hi_y + 0.5 * (hi_y - lo_y) + 0.01))
              for b in (0.5, 1.0, 2.0, 4.0)
              for m in np.percentile(x, [25, 50, 75])]
    names = ["A", "B", "C_mid"] + (["R0"] if free_r0 else [])
    p, boot, unit, res = fit_checked(
        "sigmoid", residuals, jac, starts, lower, upper, (x, y), ["A", "B", "ln C_mid", "R0"],
        groups=g, n_boot=n_boot, seed=seed, why={
            "A": "The curve has not begun to level off within the data (or never left its start): "
                 "the asymptote is not determined. Train with more compute.",
            "B": "The curve barely changes or changes in one jump; its efficiency is not determined.",
            "ln C_mid": "The half-gain point lies far outside the measured compute range.",
            "R0": "The start of the curve is not determined; pass r0 (the base model's reward)."})
    to_public = lambda q: np.concatenate([q[..., :2], np.exp(q[..., 2:3]), q[..., 3:]], axis=-1)  # noqa: E731
    fit = Fit(SIGMOID, names, to_public(p), to_public(boot) if len(boot) else boot, len(y), unit,
              float(np.sqrt(np.mean(res ** 2))),
              model=(lambda q, c: sigmoid_curve(q, c)) if free_r0 else (lambda q, c: sigmoid_curve(q, c, r0)),
              fixed={} if free_r0 else {"R0": r0})
    fit.fixed.update(drop_below=float(drop_below), c_range=[float(np.exp(x.min())), float(np.exp(x.max()))])
    if p[2] > x.max():
        fit.notes.append("C_mid lies beyond the largest measured compute: A is an extrapolation, "
                         "trust its interval, not its point value.")
    return fit


# --- power law with a floor -----------------------------------------------------------------

def power_curve(params, C):
    E, K, alpha = params
    return E + K * np.asarray(C, float) ** (-alpha)


@single_threaded_blas
def fit_power_law(C, L, groups=None, n_boot: int = 1000, seed: int = 0) -> Fit:
    """Fit L(C) = E + K * C^-alpha to a decreasing quantity (loss, error rate) with E in
    [0, min L]. Internally the reducible term is exp(k - alpha * ln(C / C_ref)), with C_ref
    the geometric mean of C, so the parameters are of order one and nearly uncorrelated."""
    C, L = np.asarray(C, float), np.asarray(L, float)
    keep = np.isfinite(C) & np.isfinite(L) & (C > 0)
    C, L = C[keep], L[keep]
    g = None if groups is None else np.asarray(groups)[keep]
    require_points(len(L), 6, "power law", "points with compute > 0")
    c_ref = float(np.exp(np.log(C).mean()))
    x = np.log(C / c_ref)
    spread = float(L.max() - L.min())
    lower = [0.0, np.log(max(spread, 1e-12) * 1e-4), 1e-3]
    upper = [float(L.min()), np.log(max(L.max(), 1e-12) * 10), 3.0]

    def residuals(p, x, y):
        return p[0] + np.exp(p[1] - p[2] * x) - y

    def jac(p, x, y):
        t = np.exp(p[1] - p[2] * x)
        return np.stack([np.ones_like(x), t, -t * x], axis=1)

    starts = [[e, np.log(max(spread, 1e-12) * f), a] for e in (0.0, 0.5 * L.min(), 0.9 * L.min())
              for f in (0.3, 1.0) for a in (0.1, 0.3, 1.0)]
    names = ["E", "K", "alpha"]
    p, boot, unit, res = fit_checked(
        "power law", residuals, jac, starts, lower, upper, (x, L), ["E", "ln K_ref", "alpha"],
        groups=g, n_boot=n_boot, seed=seed, skip=("E:lower",), why={
            "E": "The data have flattened onto their floor: the decay is not determined.",
            "alpha": "The decay exponent is not determined by this compute range."})
    to_public = lambda q: np.stack([q[..., 0], np.exp(q[..., 1]) * c_ref ** q[..., 2], q[..., 2]], -1)  # noqa: E731
    fit = Fit(POWER, names, to_public(p), to_public(boot) if len(boot) else boot, len(L), unit,
              float(np.sqrt(np.mean(res ** 2))), model=power_curve)
    if p[0] <= 1e-3 * (upper[0] + 1e-12):
        fit.notes.append("E is at 0: no floor is visible in this range (a pure power law fits).")
    return fit


# --- entropy–reward law -----------------------------------------------------------------------

def entropy_curve(params, H):
    a, b = params
    return -a * np.exp(np.asarray(H, float)) + b


@single_threaded_blas
def fit_entropy_reward(H, R, groups=None, n_boot: int = 1000, seed: int = 0) -> Fit:
    """Fit Cui et al.'s R = -a * exp(H) + b with a >= 0. The law is linear in exp(H), so the
    fit starts from ordinary least squares; the robust pass and the refusals are as for
    every law. Also reports R(H = 0) = b - a, the reward the law predicts once the policy's
    entropy is used up (Cui et al.'s predicted ceiling)."""
    H, R = np.asarray(H, float), np.asarray(R, float)
    keep = np.isfinite(H) & np.isfinite(R)
    H, R = H[keep], R[keep]
    g = None if groups is None else np.asarray(groups)[keep]
    require_points(len(R), 5, "entropy-reward law", "steps with entropy and reward")
    z = np.exp(H)
    if np.ptp(z) <= 1e-9 * max(1.0, z.max()):
        raise FitRefused("entropy-reward law: the entropy never changed, so reward cannot be related to it.")
    slope, intercept = np.polyfit(z, R, 1)
    big = 1e6 * (abs(R).max() + 1)
    lower, upper = [0.0, -big], [big, big]

    def residuals(p, z, y):
        return -p[0] * z + p[1] - y

    def jac(p, z, y):
        return np.stack([-z, np.ones_like(z)], axis=1)

    p, boot, unit, res = fit_checked(
        "entropy-reward law", residuals, jac, [[max(-slope, 1e-6), intercept], [1e-3, R.mean()]], lower, upper,
        (z, R), ["a", "b"], groups=g, n_boot=n_boot, seed=seed, flat_first=False, why={
            "a": "Reward does not fall as entropy rises here (a would be negative), so the law does not hold."})
    fit = Fit(ENTROPY, ["a", "b"], p, boot, len(R), unit, float(np.sqrt(np.mean(res ** 2))), model=entropy_curve)
    fit.derived["R(H=0)"] = derive(p[1] - p[0], boot[:, 1] - boot[:, 0] if len(boot) else boot)
    return fit
