"""RL across base-model sizes (Tan et al. 2025, "Scaling Behaviors of LLM Reinforcement
Learning Post-Training: An Empirical Study in Mathematical Reasoning"):

    log Err(N, C) = -k(N) * log C + E0(N),   k(N) = k_max * N / (N + N0)

Err = 1 - accuracy, C = RL compute, N = the base model's parameter count. Each size gets
its own intercept E0(N); the sizes share the slope law k(N), whose saturation N0 says
beyond which size a larger model stops learning faster per unit of compute.
"""

from __future__ import annotations

import numpy as np

from .fitcore import Fit, FitRefused, bootstrap, derive, fit_checked, require_points, single_threaded_blas

TAN = "Tan et al. log Err = -k(N) log C + E0(N), k(N) = k_max N/(N+N0)"


def k_of_n(k_max, n0, N):
    return k_max * N / (N + n0)


@single_threaded_blas
def fit_across_sizes(N, C, accuracy, groups=None, n_boot: int = 500, seed: int = 0) -> Fit:
    """Fit the law to evaluation points of RL runs on base models of 3+ sizes.

    Parameters reported: k_max, N0, and E0 for each size (named E0[N]), with C in the
    units given (E0 is the intercept at C = 1). Bootstrap resamples within each size: runs
    where a size has 3+ of them, evaluation points otherwise."""
    N, C, acc = (np.asarray(v, float) for v in (N, C, accuracy))
    keep = np.isfinite(N) & np.isfinite(C) & np.isfinite(acc) & (C > 0) & (acc < 1)
    N, C, err = N[keep], C[keep], 1.0 - acc[keep]
    g = None if groups is None else np.asarray(groups)[keep]
    sizes = np.unique(N)
    if len(sizes) < 3:
        raise FitRefused(f"Tan et al. law: needs RL runs on base models of at least 3 sizes to fit k(N) "
                         f"(have {len(sizes)}). Run the same config with model.zoo_size=s, m, l.")
    per_size = [int((N == s).sum()) for s in sizes]
    require_points(min(per_size), 3, "Tan et al. law", "evaluation points per size")
    require_points(len(err), len(sizes) + 2 + 3, "Tan et al. law")
    size_idx = np.searchsorted(sizes, N)
    c_ref = float(np.exp(np.log(C).mean()))  # intercepts at C_ref are far better conditioned than at C = 1
    x, y = np.log(C / c_ref), np.log(err)
    ln_n = np.log(sizes)
    lower = [1e-4, ln_n.min() - 7] + [-50.0] * len(sizes)
    upper = [5.0, ln_n.max() + 7] + [5.0] * len(sizes)

    def residuals(p, x, idx, y):
        k = k_of_n(p[0], np.exp(p[1]), sizes)[idx]
        return -k * x + p[2:][idx] - y

    def jac(p, x, idx, y):
        n0 = np.exp(p[1])
        frac = (sizes / (sizes + n0))[idx]
        out = np.zeros((len(x), len(p)))
        out[:, 0] = -frac * x
        out[:, 1] = p[0] * frac * n0 / (sizes[idx] + n0) * x  # d(-k x)/d ln N0
        out[np.arange(len(x)), 2 + idx] = 1.0
        return out

    e0_start = [float(y[size_idx == i].mean()) for i in range(len(sizes))]
    starts = [[k, m] + e0_start for k in (0.05, 0.2, 1.0) for m in np.percentile(ln_n, [0, 50, 100])]
    p, boot, unit, res = fit_checked(
        "Tan et al. law", residuals, jac, starts, lower, upper, (x, size_idx, y),
        ["k_max", "ln N0"] + [f"E0[{s:.3g}]" for s in sizes], groups=g, n_boot=n_boot, seed=seed, strata=size_idx,
        why={"k_max": "Error does not fall with compute at a rate the law can describe.",
             "ln N0": "The slopes do not saturate (or do not grow) with size across these models, "
                      "so k_max and N0 are not separately determined."})

    def to_public(q):  # (k_max, N0, E0 at C = 1 per size)
        k = q[..., :1] * sizes / (sizes + np.exp(q[..., 1:2]))
        return np.concatenate([q[..., :1], np.exp(q[..., 1:2]), q[..., 2:] + k * np.log(c_ref)], axis=-1)

    def model(q, NC):  # predicted Err at NC = (n, 2) array of (N, C)
        NC = np.asarray(NC, float)
        e0 = np.interp(np.log(NC[:, 0]), ln_n, q[2:])  # sizes between fitted ones: interpolated intercept
        return np.exp(-k_of_n(q[0], q[1], NC[:, 0]) * np.log(NC[:, 1]) + e0)

    names = ["k_max", "N0"] + [f"E0[{s:.4g}]" for s in sizes]
    public, public_boot = to_public(p), to_public(boot) if len(boot) else boot
    ok = public_boot[np.all(np.isfinite(public_boot), axis=1)] if len(public_boot) else public_boot
    # The slope each size learns at, k(N): the law's headline per size (Tan et al. Eq. 2).
    derived = {f"k[{s:.4g}]": derive(k_of_n(public[0], public[1], s),
                                     k_of_n(ok[:, 0], ok[:, 1], s) if len(ok) else np.array([])) for s in sizes}
    fit = Fit(TAN, names, public, public_boot, len(y), unit,
              float(np.sqrt(np.mean(res ** 2))), model=model, derived=derived,
              fixed={"sizes": [float(s) for s in sizes], "points_per_size": per_size},
              notes=["rmse is of log-error residuals; E0 is the intercept at C = 1 in the compute units given."])
    return fit


def slopes_per_size(N, C, accuracy, groups, n_boot: int = 1000, seed: int = 0) -> dict[float, tuple]:
    """k per size without the k(N) form: the least-squares slope of -log Err on log C for each
    size's evaluation points, with fitcore.bootstrap over that size's runs (over its points
    when it has fewer than 3 runs). Reported beside the law, and in its place when the law is
    refused, so that the slopes the law could not describe are still seen."""
    N, C, acc, g = np.asarray(N, float), np.asarray(C, float), np.asarray(accuracy, float), np.asarray(groups)
    keep = np.isfinite(N) & np.isfinite(C) & np.isfinite(acc) & (C > 0) & (acc < 1)
    N, x, y, g = N[keep], np.log(C[keep]), -np.log(1 - acc[keep]), g[keep]
    out = {}
    for size in np.unique(N):
        xs, ys = x[N == size], y[N == size]
        if len(xs) < 3:
            continue

        def slope_on(idx, xs=xs, ys=ys):
            if np.ptp(xs[idx]) == 0:
                raise ValueError("a resample with one compute value has no slope")
            return np.polyfit(xs[idx], ys[idx], 1)[:1]

        boot, _ = bootstrap(slope_on, len(xs), g[N == size], n_boot, seed)
        out[float(size)] = derive(float(np.polyfit(xs, ys, 1)[0]), boot[:, 0] if len(boot) else np.array([]))
    return out
