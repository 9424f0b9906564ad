"""Capability density (Xiao et al. 2025, "Densing Law of LLMs", Sec. 2).

A model's effective parameter count N_eff is the size a zoo model would need to reach the
model's accuracy, read through two fitted laws:
  1. loss against size: the Chinchilla law L(N, D) at the zoo's training tokens D,
  2. accuracy against loss: S(L) = 1 / (1 + exp(gamma * (L - l0)))  (Xiao et al. Eq. 3
     with c = 1 and d = 0: exact-match accuracy runs from 0 to 1 and has no guessing floor).
Invert both: L_hat = l0 + ln(1/S - 1) / gamma, then N_eff = (A / (L_hat - E - B / D^beta))^(1/alpha).
Density = N_eff / N. A density above 1 means the model does more with its parameters
than the zoo's pre-training alone does (the point of RL).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .fitcore import Fit, FitRefused, derive, fit_checked, require_points, single_threaded_blas

LOSS_TO_ACC = "accuracy from loss S(L) = 1 / (1 + exp(gamma (L - l0)))"


def accuracy_curve(params, loss):
    gamma, l0 = params
    return expit(-gamma * (np.asarray(loss, float) - l0))


@single_threaded_blas
def fit_loss_to_accuracy(loss, accuracy, n_boot: int = 500, seed: int = 0) -> Fit:
    """Fit S(L) to (final validation loss, held-out accuracy) of 3+ zoo models."""
    loss, acc = np.asarray(loss, float), np.asarray(accuracy, float)
    keep = np.isfinite(loss) & np.isfinite(acc)
    loss, acc = loss[keep], acc[keep]
    require_points(len(loss), 3, "loss-to-accuracy sigmoid", "zoo models",
                   "Pre-train more sizes with `rlscale pretrain --size s|m|l` and pass them with --zoo.")
    lower, upper = [1e-2, loss.min() - 5.0], [100.0, loss.max() + 5.0]

    def residuals(p, L, y):
        return expit(-p[0] * (L - p[1])) - y

    def jac(p, L, y):
        s = expit(-p[0] * (L - p[1]))
        d = s * (1 - s)
        return np.stack([-d * (L - p[1]), d * p[0]], axis=1)

    starts = [[g, m] for g in (0.5, 2.0, 8.0) for m in (loss.min(), np.median(loss), loss.max())]
    # With exactly 3 models the flat-curve F-test has one degree of freedom (meaningless), and a
    # bootstrap over 3-5 models often draws degenerate sets: its interval is rough, not refused.
    p, boot, unit, res = fit_checked(
        "loss-to-accuracy sigmoid", residuals, jac, starts, lower, upper, (loss, acc), ["gamma", "l0"],
        n_boot=n_boot, seed=seed, check_flat=len(loss) > 3, check_unstable=False, why={
            "gamma": "Accuracy does not change with loss across the zoo models in a way the law can describe.",
            "l0": "The zoo's accuracies do not bracket the half-accuracy loss; add smaller or larger models."})
    return Fit(LOSS_TO_ACC, ["gamma", "l0"], p, boot, len(loss), unit, float(np.sqrt(np.mean(res ** 2))),
               model=accuracy_curve, notes=[f"fitted to {len(loss)} zoo models: a rough interval"])


def _effective_params(chin, acc_law, accuracy: float, tokens: float) -> np.ndarray:
    """N_eff for parameter rows chin (E, A, B, alpha, beta) and acc_law (gamma, l0); inf where
    the accuracy needs a lower loss than any size reaches at this D."""
    chin, acc_law = np.atleast_2d(chin), np.atleast_2d(acc_law)
    E, A, B, alpha, beta = chin.T
    gamma, l0 = acc_law.T
    loss_needed = l0 + np.log(1 / accuracy - 1) / gamma
    reducible = loss_needed - E - B / tokens ** beta
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(reducible > 0, (A / reducible) ** (1 / alpha), np.inf)


def capability_density(chinchilla: Fit, loss_to_acc: Fit, accuracy: float, n_params: float,
                       tokens: float) -> dict:
    """Effective parameters and density (with bootstrap intervals pairing the two fits'
    resamples) of a model with `n_params` parameters scoring `accuracy`, at zoo tokens D."""
    if not 0 < accuracy < 1:
        raise FitRefused(f"capability density: accuracy {accuracy:.3g} is at 0 or 1, where the "
                         "accuracy-from-loss law cannot be inverted.")
    n_eff = float(_effective_params(chinchilla.values, loss_to_acc.values, accuracy, tokens)[0])
    m = min(len(chinchilla.boot), len(loss_to_acc.boot))
    boot = _effective_params(chinchilla.boot[:m], loss_to_acc.boot[:m], accuracy, tokens) if m else np.array([])
    sizes = chinchilla.fixed.get("sizes", [])
    out = {"accuracy": accuracy, "n_params": n_params, "tokens": tokens,
           "n_eff": derive(n_eff, boot), "density": derive(n_eff / n_params, boot / n_params)}
    if not np.isfinite(n_eff):
        out["note"] = "beyond the zoo's law: no size reaches this accuracy at this D (N_eff is infinite)"
    elif sizes and not min(sizes) <= n_eff <= max(sizes):
        out["note"] = "N_eff lies outside the zoo's sizes: an extrapolation of the loss law"
    return out
