"""Shared fitting machinery: bounded robust least squares from several starts, bootstrap
intervals, and the checks that refuse a fit the data cannot support.

Every law in this package is fitted the same way:
1. a plain least-squares pass from several starting points (the best one wins),
2. a robust pass (soft-L1) warm-started from it, with the robust scale set from the
   residuals of the first pass, so a few wild points (a crashed eval, a logging glitch)
   do not drag the curve,
3. refusals: too few points, a curve no better than a constant, a parameter at a bound,
4. a bootstrap: the robust pass re-run from the point estimate on resampled data
   (whole runs or seeds where there are several, evaluation points otherwise), and a
   refusal when more than a fifth of the resamples run into a bound (a ridge the data
   do not resolve, however tidy the point estimate looks).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

CI_LEVEL = 0.95
BOUND_RTOL = 1e-3  # how close to a bound counts as pinned there (see _at_bound)


class FitRefused(ValueError):
    """The data cannot support this law; the message names the reason and what would help."""


def single_threaded_blas(fit_fn):
    """Run a fitter with one BLAS thread. The optimizers make thousands of tiny LAPACK calls;
    on a busy machine OpenBLAS's thread start-up makes each one ~10x slower than serial."""
    @functools.wraps(fit_fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fit_fn(*args, **kwargs)
    return wrapper


@dataclass
class Fit:
    """A fitted law: point estimate, bootstrap estimates and enough to predict with."""

    law: str
    names: list[str]
    values: np.ndarray
    boot: np.ndarray  # (n_boot_ok, n_params) parameter vectors fitted on resampled data
    n_points: int
    resampled: str  # "runs", "points" or "none"
    rmse: float
    model: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # (params, x) -> y
    fixed: dict = field(default_factory=dict)  # inputs held fixed during the fit (e.g. R0)
    derived: dict = field(default_factory=dict)  # name -> (value, ci_lo, ci_hi), e.g. Cui's R(H=0)
    notes: list[str] = field(default_factory=list)
    # The public parameters' bounds: the quantity's own (an accuracy lies in [0, 1]) or the
    # fit's search range; an interval that runs into one is reported as bounded (bounded()).
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def boot_ok(self) -> np.ndarray:
        """The bootstrap rows whose refit succeeded (failed ones are kept as NaN rows so that
        row i of two fits' bootstraps come from the same resample: paired comparisons)."""
        if len(self.boot) == 0:
            return self.boot
        return self.boot[np.all(np.isfinite(self.boot), axis=1)]

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.names, map(float, self.values)))

    def ci(self, level: float = CI_LEVEL) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval per parameter (NaN when no bootstrap was run)."""
        boot = self.boot_ok
        if len(boot) == 0:
            return {n: (float("nan"), float("nan")) for n in self.names}
        lo, hi = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0)
        return {n: (float(a), float(b)) for n, a, b in zip(self.names, lo, hi)}

    def bounded(self, level: float = CI_LEVEL) -> dict[str, str]:
        """Parameters whose interval runs into a bound of the quantity: {name: "lower"|"upper"}.
        That end of the interval is the bound, not something the data measured: the interval
        is one-sided ("A >= 0.91, up to its bound 1")."""
        out = {}
        for name, (lo, hi) in self.ci(level).items():
            if name not in self.bounds:
                continue
            b_lo, b_hi = self.bounds[name]
            near_lo, near_hi = _at_bound(np.array([lo, hi]), b_lo, b_hi)
            if near_lo[0]:
                out[name] = "lower"
            elif near_hi[1]:
                out[name] = "upper"
        return out

    def predict(self, x) -> np.ndarray:
        return self.model(self.values, np.asarray(x, dtype=float))

    def band(self, x, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at x."""
        x = np.asarray(x, dtype=float)
        if len(self.boot_ok) == 0:
            y = self.predict(x)
            return y, y
        curves = np.stack([self.model(p, x) for p in self.boot_ok])
        return tuple(np.percentile(curves, [50 * (1 - level), 50 * (1 + level)], axis=0))

    def to_json(self) -> dict:
        return {"law": self.law, "params": self.params,
                "ci95": {k: list(v) for k, v in self.ci().items()},
                "bounded": self.bounded(),
                "n_points": self.n_points, "bootstrap": {"resampled": self.resampled, "n_ok": len(self.boot_ok)},
                "rmse": self.rmse, "fixed": self.fixed,
                "derived": {k: {"value": v[0], "ci95": [v[1], v[2]]} for k, v in self.derived.items()},
                "notes": self.notes}


def derive(value: float, boot_values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """A quantity computed from the parameters, with its percentile bootstrap interval."""
    if len(boot_values) == 0:
        return float(value), float("nan"), float("nan")
    with np.errstate(invalid="ignore"):  # infinite resamples (e.g. N_eff beyond the law) are allowed
        lo, hi = np.nanpercentile(boot_values, [50 * (1 - level), 50 * (1 + level)])
    return float(value), float(lo), float(hi)


def require_points(n: int, need: int, law: str, what: str = "points",
                   remedy: str = "Log more evaluations (eval.every) or run longer.") -> None:
    if n < need:
        raise FitRefused(f"{law}: too few {what} ({n}); this law needs at least {need}. {remedy}")


def fit_robust(residuals, jac, starts, lower, upper, args=()) -> tuple[np.ndarray, float]:
    """Best plain least-squares fit over `starts`, then a soft-L1 refit from it.

    Returns (params, robust_scale). The robust scale is 1.4826 * MAD of the first pass's
    residuals (the noise level of a Gaussian with the same median spread): residuals much
    larger than that are down-weighted in the second pass and in every bootstrap refit."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    best = None
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, float), lower + 1e-9 * (upper - lower), upper - 1e-9 * (upper - lower))
        try:
            r = least_squares(residuals, x0, jac=jac, bounds=(lower, upper), args=args, x_scale="jac")
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    if best is None:
        raise FitRefused("the optimizer failed from every starting point (non-finite residuals)")
    mad = np.median(np.abs(best.fun - np.median(best.fun)))
    scale = max(1.4826 * mad, 1e-6)
    return refit(residuals, jac, best.x, lower, upper, scale, args), scale


def fit_checked(law: str, residuals, jac, starts, lower, upper, data: tuple, names, *, groups=None,
                n_boot: int, seed: int, why: dict | None = None, skip: tuple[str, ...] = (), strata=None,
                flat_first: bool = True, check_flat: bool = True, check_unstable: bool = True):
    """The recipe every least-squares law follows (module docstring, steps 1-4).

    `data` holds the per-point arrays passed to residuals/jac (the last one is the target y);
    a bootstrap resample indexes all of them. `names` name the internal parameters in the
    refusal messages. `flat_first` runs the flat-curve test before the bound test (a flat
    curve pins parameters too, and "flat" is the better explanation); laws whose degenerate
    fit means something more specific (e.g. a sign flip) test bounds first.
    Returns (params, bootstrap params, what was resampled, residuals)."""
    p, scale = fit_robust(residuals, jac, starts, lower, upper, args=data)
    res = residuals(p, *data)
    if check_flat and flat_first:
        refuse_if_flat(law, data[-1], res, len(p))
    refuse_at_bounds(law, names, p, lower, upper, why=why, skip=skip)
    if check_flat and not flat_first:
        refuse_if_flat(law, data[-1], res, len(p))

    def refit_on(idx):
        return refit(residuals, jac, p, lower, upper, scale, args=tuple(a[idx] for a in data))

    boot, unit = bootstrap(refit_on, len(data[-1]), groups, n_boot, seed, strata=strata)
    if check_unstable:
        refuse_if_unstable(law, names, boot, lower, upper, skip=skip)
    return p, boot, unit, res


def refit(residuals, jac, x0, lower, upper, scale, args=()) -> np.ndarray:
    """One soft-L1 fit warm-started at x0 (the bootstrap's inner loop: one start is enough,
    because a resample's optimum sits near the full data's)."""
    r = least_squares(residuals, x0, jac=jac, bounds=(lower, upper), args=args,
                      loss="soft_l1", f_scale=scale, x_scale="jac")
    return r.x


def _at_bound(v, lo: float, hi: float):
    """'lower' / 'upper' / None for each value: within BOUND_RTOL of the bound's size (or of the
    range when that is narrower)."""
    near_lo = np.abs(v - lo) <= BOUND_RTOL * min(hi - lo, max(1.0, abs(lo)))
    near_hi = np.abs(v - hi) <= BOUND_RTOL * min(hi - lo, max(1.0, abs(hi)))
    return near_lo, near_hi


def refuse_at_bounds(law: str, names, values, lower, upper, why: dict[str, str] | None = None,
                     skip: tuple[str, ...] = ()) -> None:
    """A parameter pinned at a bound means the data did not determine it: refuse.
    `skip` names parameters (or "name:lower" / "name:upper") whose bound is a legitimate value."""
    why = why or {}
    for name, v, lo, hi in zip(names, values, lower, upper):
        near_lo, near_hi = _at_bound(v, lo, hi)
        side = "lower" if near_lo else "upper" if near_hi else None
        if side and name not in skip and f"{name}:{side}" not in skip:
            bound = lo if side == "lower" else hi
            shown = f"{name[3:]} = {np.exp(bound):.3g}" if name.startswith("ln ") else f"{bound:.4g}"
            raise FitRefused(f"{law}: parameter {name} ran into its {side} bound ({shown}), so the data do "
                             f"not determine it. {why.get(name, 'More data over a wider range would help.')}")


def refuse_if_unstable(law: str, names, boot: np.ndarray, lower, upper, max_share: float = 0.2,
                       skip: tuple[str, ...] = ()) -> None:
    """A point estimate inside the bounds can still sit on a ridge the data do not resolve:
    refuse when more than `max_share` of the bootstrap refits run into a bound."""
    boot = boot[np.all(np.isfinite(boot), axis=1)] if len(boot) else boot
    if len(boot) == 0:
        return
    for j, (name, lo, hi) in enumerate(zip(names, lower, upper)):
        near_lo, near_hi = _at_bound(boot[:, j], lo, hi)
        hits = (near_lo if f"{name}:lower" not in skip else False) | (near_hi if f"{name}:upper" not in skip else False)
        share = float(np.mean(hits))
        if share > max_share and name not in skip:
            raise FitRefused(f"{law}: unstable: in {share:.0%} of bootstrap resamples parameter {name} ran into its "
                             "bound, so the data do not pin it down (the point estimate would look more certain "
                             "than it is). More data over a wider range, past the curve's bend, would help.")


def refuse_if_flat(law: str, y: np.ndarray, fitted_residuals: np.ndarray, n_params: int,
                   alpha: float = 0.01, sd: np.ndarray | None = None) -> float:
    """F-test of the law against a constant: refuse when the curve explains no more than
    noise would (p > alpha). With `sd` (each point's standard error) both sums of squares
    are weighted by 1/sd^2. Returns the p-value."""
    n = len(y)
    w = np.ones(n) if sd is None else 1.0 / np.asarray(sd, float) ** 2
    ss0 = float(np.sum(w * (y - np.average(y, weights=w)) ** 2))
    ss1 = float(np.sum(w * fitted_residuals ** 2))
    if ss0 <= 1e-300:
        raise FitRefused(f"{law}: the data are flat (every value is {y[0]:.4g}); there is no curve to fit.")
    dof = n - n_params
    f = ((ss0 - ss1) / (n_params - 1)) / max(ss1 / dof, 1e-300)
    p = float(stats.f.sf(f, n_params - 1, dof))
    if p > alpha:
        raise FitRefused(f"{law}: the curve is flat within noise: the law fits no better than a constant "
                         f"(F-test p = {p:.2g} > {alpha}). Run longer or evaluate on more problems.")
    return p


def bootstrap(refit_on: Callable[[np.ndarray], np.ndarray], n: int, groups: np.ndarray | None,
              n_boot: int, seed: int, strata: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Refit on `n_boot` resamples; returns (parameter vectors, what was resampled).

    With 3+ distinct groups (runs or seeds) whole groups are resampled, so the interval
    reflects run-to-run variation; otherwise individual points. With `strata` (e.g. model
    size) each stratum is resampled on its own, so no resample loses a stratum entirely.
    `refit_on(idx)` fits on the rows idx and returns the parameter vector."""
    if n_boot <= 0:
        return np.empty((0, 0)), "none"
    rng = np.random.default_rng(seed)
    cells = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    plans = []  # per cell: list of index blocks to draw from (one block per group, or per point)
    for cell in cells:
        uniq = np.unique(groups[cell]) if groups is not None else []
        plans.append([cell[groups[cell] == u] for u in uniq] if len(uniq) >= 3 else None)
    out = []
    for _ in range(n_boot):
        parts = []
        for cell, blocks in zip(cells, plans):
            if blocks is None:
                parts.append(cell[rng.integers(0, len(cell), len(cell))])
            else:
                parts.extend(blocks[i] for i in rng.integers(0, len(blocks), len(blocks)))
        try:
            out.append(refit_on(np.concatenate(parts)))
        except (ValueError, np.linalg.LinAlgError):
            continue  # a degenerate resample (e.g. all one point); the others still count
    kinds = {"points" if b is None else "runs" for b in plans}
    return np.array(out), kinds.pop() if len(kinds) == 1 else "runs where 3+, else points"
