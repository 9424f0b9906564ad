"""Laws of one RL run besides ScaleRL's sigmoid (which lives in sigmoid.py): error against
compute, reward against entropy.

- power law with a floor (Kaplan et al. 2020; Hoffmann et al. 2022 use the same form):
  L(C) = E + K * C^(-alpha)
- entropy–reward law (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning
  for Reasoning Language Models", Eq. 1):  R = -a * exp(H) + b
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .fitcore import Fit, FitRefused, derive, fit_checked, require_points, single_threaded_blas

POWER = "power law with floor L(C) = E + K * C^-alpha"
ENTROPY = "entropy-reward law R = -a * exp(H) + b"


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
def fit_entropy_reward(H, R, groups=None, reward_range: tuple[float, float] = (0.0, 1.0), n_boot: int = 1000,
                       seed: int = 0) -> Fit:
    """Fit Cui et al.'s R = -a * exp(H) + b with a >= 0. The law is linear in exp(H), so the
    fit starts from ordinary least squares; the robust pass and the refusals are as for
    every law. Also reports R(H = 0) = b - a, the reward the law predicts once the policy's
    entropy is used up (Cui et al.'s predicted ceiling).

    Two more refusals, because this law is mostly used to extrapolate to H = 0:
    - the exponential must be told from a straight line: over a narrow entropy range exp(H)
      is a line in H, and the law's ceiling is then a linear extrapolation dressed as a law.
      Refused unless the curvature the law needs (d2R/dH2 = -a exp(H) < 0) shows in the data:
      the quadratic term of R ~ H + H^2 is negative and significant (p < 0.05).
    - the ceiling b - a must lie within reward_range (the reward's possible values)."""
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
    refuse_if_straight(H, R)
    ceiling = p[1] - p[0]
    if not reward_range[0] <= ceiling <= reward_range[1]:
        raise FitRefused(f"entropy-reward law: its ceiling R(H=0) = b - a = {ceiling:.3f} lies outside the "
                         f"reward's range [{reward_range[0]:g}, {reward_range[1]:g}], so the law cannot hold down to "
                         "zero entropy on this task. (The fit is a local slope, not Cui et al.'s law.)")
    fit = Fit(ENTROPY, ["a", "b"], p, boot, len(R), unit, float(np.sqrt(np.mean(res ** 2))), model=entropy_curve)
    fit.derived["R(H=0)"] = derive(ceiling, boot[:, 1] - boot[:, 0] if len(boot) else boot)
    fit.fixed["exp_H_range"] = [float(z.min()), float(z.max())]
    return fit


def refuse_if_straight(H: np.ndarray, R: np.ndarray, alpha: float = 0.05) -> None:
    """Refuse unless R curves downward in H as the law says: OLS of R on (1, H, H^2) with the
    H^2 coefficient negative at one-sided level alpha."""
    h = H - H.mean()
    X = np.stack([np.ones_like(h), h, h ** 2], axis=1)
    coef, *_ = np.linalg.lstsq(X, R, rcond=None)
    dof = len(R) - 3
    if dof < 2:
        raise FitRefused("entropy-reward law: too few steps to test the law's curvature (need 5+).")
    sigma2 = float(np.sum((R - X @ coef) ** 2) / dof)
    cov = sigma2 * np.linalg.pinv(X.T @ X)
    t = coef[2] / np.sqrt(max(cov[2, 2], 1e-300))
    p = float(stats.t.cdf(t, dof))  # one-sided: the law needs a negative H^2 term
    if p > alpha:
        raise FitRefused(
            f"entropy-reward law: over the measured entropy (exp(H) from {np.exp(H.min()):.3g} to "
            f"{np.exp(H.max()):.3g}) "
            f"reward cannot be told from a straight line in H: the downward curvature the law needs is not "
            f"resolved (H^2 term {coef[2]:+.3g}, one-sided p = {p:.2g}). Its ceiling R(H=0) would be a linear "
            "extrapolation. A run whose entropy falls over a wider range would test it.")
