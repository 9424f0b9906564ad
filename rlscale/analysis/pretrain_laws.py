"""Pre-training laws over the base-model zoo.

Chinchilla (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models",
Eq. 2 / Approach 3):   L(N, D) = E + A / N^alpha + B / D^beta

fitted as the replication by Besiroglu et al. 2024 ("Chinchilla Scaling: A replication
attempt", Sec. 2) recommends: parameters (a, b, e, alpha, beta) with A = e^a, B = e^b,
E = e^e; the Huber loss (delta = 1e-3) of the log-space residuals
    LSE(a - alpha ln N, b - beta ln D, e) - ln L
*summed* over points (averaging rescales the Huber threshold and was one cause of the
original paper's too-narrow intervals); L-BFGS-B started from the best points of
Hoffmann's grid; bootstrap intervals.

Compute-optimal allocation under C = 6 N D (Hoffmann et al. Eq. 4):
    N_opt(C) = G (C/6)^a,  D_opt(C) = G^-1 (C/6)^b,
    G = (alpha A / (beta B))^(1 / (alpha + beta)),  a = beta / (alpha + beta),  b = alpha / (alpha + beta).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

from .fitcore import (Fit, FitRefused, bootstrap, derive, refuse_at_bounds, require_points,
                      single_threaded_blas)

CHINCHILLA = "Chinchilla L(N, D) = E + A/N^alpha + B/D^beta"
HUBER_DELTA = 1e-3  # Besiroglu et al. / Hoffmann et al.
# Hoffmann et al.'s initialisation grid (Sec. D.2), over (a, b, e, alpha, beta).
GRID = np.array(list(itertools.product(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(-1, 1.01, 0.5),
                                       np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5))))
N_STARTS = 8  # L-BFGS-B runs from the best grid points (running all 4,500 adds nothing but time)
LOWER = np.array([-10.0, -10.0, -5.0, 0.01, 0.01])
UPPER = np.array([60.0, 60.0, 3.0, 3.0, 3.0])


def chinchilla_curve(params, ND):
    """L for params (E, A, B, alpha, beta) at ND = array of shape (n, 2) holding (N, D)."""
    E, A, B, alpha, beta = params
    ND = np.asarray(ND, float)
    return E + A / ND[:, 0] ** alpha + B / ND[:, 1] ** beta


def _objective(p, lnN, lnD, lnL):
    """Summed Huber loss of log residuals and its gradient (p = a, b, e, alpha, beta).
    Written out by hand (no stacking, no scipy logsumexp): the bootstrap calls it ~10^5 times."""
    a, b, e, alpha, beta = p
    t_n, t_d = a - alpha * lnN, b - beta * lnD
    top = np.maximum(np.maximum(t_n, t_d), e)
    w_n, w_d, w_e = np.exp(t_n - top), np.exp(t_d - top), np.exp(e - top)
    total = w_n + w_d + w_e
    r = top + np.log(total) - lnL
    abs_r = np.abs(r)
    small = abs_r <= HUBER_DELTA
    loss = np.where(small, 0.5 * r * r, HUBER_DELTA * (abs_r - 0.5 * HUBER_DELTA)).sum()
    dr = np.where(small, r, HUBER_DELTA * np.sign(r)) / total  # d loss/d r times the softmax denominator
    g_n, g_d = w_n * dr, w_d * dr
    grad = np.array([g_n.sum(), g_d.sum(), (w_e * dr).sum(), -(g_n @ lnN), -(g_d @ lnD)])
    return loss, grad


def _grid_losses(lnN, lnD, lnL):
    """The objective at every grid point at once (vectorised over the grid)."""
    a, b, e, alpha, beta = (GRID[:, i:i + 1] for i in range(5))
    pred = np.logaddexp(np.logaddexp(a - alpha * lnN, b - beta * lnD), e)
    r = np.abs(pred - lnL)
    return np.where(r <= HUBER_DELTA, 0.5 * r ** 2, HUBER_DELTA * (r - 0.5 * HUBER_DELTA)).sum(axis=1)


def _lbfgsb(p0, lnN, lnD, lnL):
    r = minimize(_objective, p0, args=(lnN, lnD, lnL), jac=True, method="L-BFGS-B",
                 bounds=list(zip(LOWER, UPPER)), options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
    return r


@single_threaded_blas
def fit_chinchilla(N, D, L, groups=None, n_boot: int = 200, seed: int = 0) -> Fit:
    """Fit L(N, D) to (parameters, tokens, loss) points from zoo models of 3+ sizes.

    Bootstrap over points (Besiroglu et al. do the same); because points from one training
    curve are correlated, the intervals are lower bounds on the real uncertainty."""
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    keep = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[keep], D[keep], L[keep]
    require_points(len(L), 10, "Chinchilla law", "(N, D, loss) points")
    sizes = np.unique(N)
    if len(sizes) < 3:
        raise FitRefused(f"Chinchilla law: needs zoo models of at least 3 sizes to separate the N and D terms "
                         f"(have {len(sizes)}: {', '.join(f'{s:,.0f}' for s in sizes)}). "
                         "Pre-train more sizes with `rlscale pretrain --size s|m|l` and pass them with --zoo.")
    if len(np.unique(D)) < 3:
        raise FitRefused("Chinchilla law: needs at least 3 distinct token counts D (intermediate checkpoints).")
    lnN, lnD, lnL = np.log(N), np.log(D), np.log(L)
    starts = GRID[np.argsort(_grid_losses(lnN[None], lnD[None], lnL[None]))[:N_STARTS]]
    best = min((_lbfgsb(np.clip(s, LOWER, UPPER), lnN, lnD, lnL) for s in starts), key=lambda r: r.fun)
    p = best.x
    refuse_at_bounds("Chinchilla law", ["ln A", "ln B", "ln E", "alpha", "beta"], p, LOWER, UPPER, why={
        "alpha": "Loss does not change with model size in a way the law can describe.",
        "beta": "Loss does not change with training tokens in a way the law can describe.",
        "ln E": "The irreducible loss is not determined: the best fit puts it at or below the bound, so either "
                "the curves have not begun to flatten or they fall faster than a power law toward a floor near 0."})

    def refit_on(idx):
        return _lbfgsb(p, lnN[idx], lnD[idx], lnL[idx]).x

    boot, unit = bootstrap(refit_on, len(L), groups, n_boot, seed)
    to_public = lambda q: np.stack([np.exp(q[..., 2]), np.exp(q[..., 0]), np.exp(q[..., 1]),  # noqa: E731
                                    q[..., 3], q[..., 4]], axis=-1)
    pub = to_public(p)
    resid = np.log(chinchilla_curve(pub, np.stack([N, D], 1))) - lnL
    fit = Fit(CHINCHILLA, ["E", "A", "B", "alpha", "beta"], pub, to_public(boot) if len(boot) else boot,
              len(L), unit, float(np.sqrt(np.mean(resid ** 2))), model=chinchilla_curve,
              fixed={"huber_delta": HUBER_DELTA, "sizes": [float(s) for s in sizes]},
              notes=["rmse is of log-loss residuals."])
    alpha, beta = pub[3], pub[4]
    b_alpha, b_beta = (fit.boot[:, 3], fit.boot[:, 4]) if len(boot) else (boot, boot)
    fit.derived["a = beta/(alpha+beta) (N_opt exponent)"] = derive(beta / (alpha + beta), b_beta / (b_alpha + b_beta))
    fit.derived["b = alpha/(alpha+beta) (D_opt exponent)"] = derive(alpha / (alpha + beta), b_alpha / (b_alpha + b_beta))
    return fit


def _optimal(params, C):
    A, B, alpha, beta = params[..., 1], params[..., 2], params[..., 3], params[..., 4]
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n_opt = G * (C / 6) ** (beta / (alpha + beta))
    return n_opt, C / (6 * n_opt)


def compute_optimal(fit: Fit, budgets) -> list[dict]:
    """N_opt and D_opt (with bootstrap intervals) for each compute budget C in FLOPs."""
    rows = []
    for C in np.atleast_1d(np.asarray(budgets, float)):
        n, d = _optimal(fit.values, C)
        bn, bd = _optimal(fit.boot, C) if len(fit.boot) else (np.array([]), np.array([]))
        rows.append({"C": float(C), "N_opt": derive(n, bn), "D_opt": derive(d, bd),
                     "tokens_per_param": derive(d / n, bd / bn if len(bn) else bn)})
    return rows


def loss_frontier(flops, loss) -> tuple[np.ndarray, np.ndarray]:
    """The lower envelope of loss against compute over all zoo curves: at each compute, the
    lowest loss any model reached with at most that compute (the compute-efficient frontier)."""
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    order = np.argsort(flops)
    f, l_min = flops[order], np.minimum.accumulate(loss[order])
    on_frontier = np.r_[True, l_min[1:] < l_min[:-1]]
    return f[on_frontier], l_min[on_frontier]
