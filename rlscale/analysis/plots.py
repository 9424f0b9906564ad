"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes
one PNG and returns its path. Axes are log-scaled where the law is a power or a logistic
in log compute."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402

from .compare import curve_points  # noqa: E402
from .loading import ZOO_LOSSES  # noqa: E402

plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9, "axes.grid": True,
                     "grid.alpha": 0.3, "savefig.bbox": "tight"})
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
COMPUTE_LABEL = {"cumulative_flops": "RL compute C (FLOPs)", "cumulative_s": "RL wall time C (seconds)"}
METRIC_LABEL = {"val_mean_at_k": "validation accuracy (mean@k)", "val_pass_at_k": "validation pass@k",
                "reward_mean": "training reward (mean)"}


def _log_x(ax) -> None:
    """Log x axis with labels on the decades only (minor labels collide over short ranges)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reward_vs_compute(runs: pd.DataFrame, fits: dict, checks: dict, metric: str, compute: str, path: Path,
                      refused: dict | None = None) -> Path:
    """Measured points, the full-data sigmoid, and (with --fit-until) the curve fitted on the
    early window, continued dashed beyond it with its 95% bootstrap band. Runs whose fit was
    refused show their points only, labelled so."""
    fig, ax = plt.subplots(figsize=(9, 5.5))  # legend outside: the page gets wider, the data stay clear
    for i, (name, run) in enumerate(runs.groupby("run", sort=False)):
        color = COLORS[i % len(COLORS)]
        C, R = curve_points(run, metric, compute)
        pos = C > 0
        status = " - fit refused, see report" if name in (refused or {}) else ""
        ax.scatter(C[pos], R[pos], color=color, s=22, zorder=3, label=f"{name} (measured{status})")
        if (~pos).any():  # the base model, at zero compute: shown at the left edge
            ax.scatter([C[pos].min() / 2] if pos.any() else [1], R[~pos][:1], color=color, marker="s", s=30,
                       zorder=3)
        fit = fits.get(name)
        if fit is not None and pos.any():
            start = max(C[pos].min() / 2, fit.fixed.get("drop_below", 0.0))  # not over a dropped early phase
            grid = np.geomspace(start, C.max() * 3, 200)
            ax.plot(grid, fit.predict(grid), color=color, lw=1, alpha=0.6,
                    label=f"fit on all: A={fit.params['A']:.3f}, B={fit.params['B']:.2f}")
            ax.axhline(fit.params["A"], color=color, ls=":", lw=0.8, alpha=0.6)
        check = checks.get(name, {})
        if "fit" in check:
            cf, cut = check["fit"], check["c_cut"]
            inside = np.geomspace(max(C[pos].min() / 2, cf.fixed.get("drop_below", 0.0)), cut, 100)
            beyond = np.geomspace(cut, C.max() * 3, 100)
            lo, hi = cf.band(beyond)
            ax.plot(inside, cf.predict(inside), color=color, lw=2.2)
            ax.plot(beyond, cf.predict(beyond), color=color, lw=2.2, ls="--",
                    label=f"fit on first {check['fit_until']:.0%} of compute, extrapolated")
            ax.fill_between(beyond, lo, hi, color=color, alpha=0.15, label="95% bootstrap band of the curve")
            ax.axvline(cut, color=color, ls="-.", lw=0.8, alpha=0.7)
            held = check["held_out"]
            err = [np.subtract(held["predicted"], held["lo"]), np.subtract(held["hi"], held["predicted"])]
            ax.errorbar(held["C"], held["predicted"], yerr=err, fmt="none", ecolor=color, elinewidth=1, capsize=2,
                        alpha=0.8, zorder=4, label=f"held-out prediction intervals: {check['verdict']}")
            ax.axhline(check["persistence"], color=color, ls=(0, (1, 3)), lw=1,
                       label=f"persistence {check['persistence']:.3f}")
    _log_x(ax)
    ax.set_xlabel(COMPUTE_LABEL.get(compute, compute) + ", log scale")
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.set_title("Reward against RL compute: ScaleRL sigmoid fits\n"
                 "(dotted line: asymptote A; square at left edge: base model at C = 0; dash-dot: fit window end)",
                 fontsize=10.5)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    return _save(fig, path)


def reward_by_setting(runs: pd.DataFrame, setting_fits: dict, metric: str, compute: str, path: Path) -> Path:
    """One colour per setting: its seeds' measured points and the sigmoid pooled over them,
    with the curve's 95% bootstrap band (whole runs resampled). The figure for comparing
    settings; reward_vs_compute shows each run's own fits and checks."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, (key, fit) in enumerate(setting_fits.items()):
        color, label = COLORS[i % len(COLORS)], key.split(" (")[0]
        members = runs[runs["setting"] == label]
        C_all = []
        for _, run in members.groupby("run", sort=False):
            C, R = curve_points(run, metric, compute)
            pos = C > 0
            ax.scatter(C[pos], R[pos], color=color, s=12, alpha=0.45, zorder=3)
            C_all.append(C[pos])
        C_all = np.concatenate(C_all) if C_all else np.array([1.0])
        grid = np.geomspace(C_all.min() / 2, C_all.max() * 3, 200)
        lo, hi = fit.band(grid)
        n_seeds = members["run"].nunique()
        ax.plot(grid, fit.predict(grid), color=color, lw=2,
                label=f"{label} ({n_seeds} seeds): A={fit.params['A']:.3f}, B={fit.params['B']:.2f}")
        ax.fill_between(grid, lo, hi, color=color, alpha=0.15)
    _log_x(ax)
    ax.set_xlabel(COMPUTE_LABEL.get(compute, compute) + ", log scale")
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.set_title("Settings compared: each setting's seeds (points) and their pooled ScaleRL sigmoid\n"
                 "(band: 95% bootstrap over whole runs)", fontsize=10.5)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.15), framealpha=0.9)
    return _save(fig, path)


def reward_vs_entropy(runs: pd.DataFrame, fits: dict, metric: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, (name, run) in enumerate(runs.groupby("run", sort=False)):
        color = COLORS[i % len(COLORS)]
        rows = run[run["entropy"].notna() & run[metric].notna()]
        ax.scatter(rows["entropy"], rows[metric], color=color, s=10, alpha=0.5, label=f"{name} (per step)")
        fit = fits.get(name)
        if fit is not None and len(rows):
            H = np.linspace(rows["entropy"].min(), rows["entropy"].max(), 100)
            a, b = fit.params["a"], fit.params["b"]
            ax.plot(H, fit.predict(H), color=color, lw=2, label=f"R = -{a:.3f} exp(H) + {b:.3f}")
    ax.set_xlabel("mean token entropy H of the sampling policy (nats)")
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.set_title("Reward against entropy with the law of Cui et al. 2025")
    ax.legend(loc="best", framealpha=0.9)
    return _save(fig, path)


PANELS = [("reward_mean", "training reward"), ("entropy", "token entropy (nats)"),
          ("response_len_mean", "response length (tokens)"), ("kl_ref", "KL to base policy (k3)"),
          ("clip_frac", "clipped token fraction"), ("truncated_frac", "truncated fraction")]


def step_panels(runs: pd.DataFrame, path: Path) -> Path:
    """Per-step training signals; thin line raw, thick line a 10-step rolling mean."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), sharex=True)
    for ax, (col, label) in zip(axes.flat, PANELS):
        for i, (name, run) in enumerate(runs.groupby("run", sort=False)):
            rows = run[run[col].notna()] if col in run else run.iloc[:0]
            if rows.empty:
                continue
            color = COLORS[i % len(COLORS)]
            ax.plot(rows["step"], rows[col], color=color, lw=0.6, alpha=0.35)
            ax.plot(rows["step"], rows[col].rolling(10, min_periods=1).mean(), color=color, lw=1.8, label=name)
        ax.set_ylabel(label)
        ax.set_title(label)
    for ax in axes[-1]:
        ax.set_xlabel("RL step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, 1.03))
    fig.tight_layout()
    return _save(fig, path)


def zoo_frontier(zoo: pd.DataFrame, frontier_fit, chinchilla_fit, path: Path, loss: str = "val_loss") -> Path:
    """A zoo loss against pre-training compute per zoo model (log-log; one colour per size, each
    model's final point marked), the compute frontier with its power law, and the Chinchilla
    law's curve per model where fitted."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colour_of = {n: COLORS[i % len(COLORS)] for i, n in enumerate(sorted(zoo["n_params"].unique()))}
    labelled = set()
    for name, m in zoo.groupby("model", sort=False):
        n = m["n_params"].iloc[0]
        color = colour_of[n]
        label = None if n in labelled else f"{m['size'].iloc[0]} (N={n:,.0f})"
        labelled.add(n)
        ax.plot(m["flops"], m[loss], color=color, lw=1.2, marker=".", ms=3, label=label)
        ax.plot(m["flops"].iloc[-1:], m[loss].iloc[-1:], color=color, marker="o", ms=7, mec="black")
        if chinchilla_fit is not None:
            D = m["tokens"].to_numpy(float)
            ax.plot(m["flops"], chinchilla_fit.predict(np.stack([np.full_like(D, n), D], 1)), color=color,
                    ls="--", lw=1)
    if frontier_fit is not None:
        grid = np.geomspace(zoo["flops"].min(), zoo["flops"].max() * 3, 200)
        p = frontier_fit.params
        ax.plot(grid, frontier_fit.predict(grid), color="black", lw=2.2,
                label=f"frontier: L = {p['E']:.3f} + {p['K']:.3g} C^-{p['alpha']:.3f}")
    _log_x(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # plain 2, 3, 4 instead of 2x10^0
    low, high = ax.get_ylim()
    if high / low < 10:  # under a decade there are no major labels to read by; over it, minor ones crowd
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("pre-training compute C (FLOPs), log scale")
    what = ZOO_LOSSES[loss][0]
    ax.set_ylabel(f"{what} (nats/token), log scale")
    title = f"Zoo pre-training: {what} against compute; circles: each model's final point"
    ax.set_title(title + ("\n(dashed: the Chinchilla law along each model's tokens)" if chinchilla_fit is not None else ""))
    ax.legend(loc="best", framealpha=0.9)
    return _save(fig, path)


def error_across_sizes(points: pd.DataFrame, fit, compute: str, path: Path) -> Path:
    """Tan et al.: error rate against RL compute, log-log, one line per base-model size."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, (n, rows) in enumerate(points.groupby("n_params")):
        color = COLORS[i % len(COLORS)]
        ax.scatter(rows["C"], rows["err"], color=color, s=18, label=f"N = {n:,.0f}")
        grid = np.geomspace(rows["C"].min(), rows["C"].max(), 100)
        ax.plot(grid, fit.predict(np.stack([np.full_like(grid, n), grid], 1)), color=color, lw=1.8)
    _log_x(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel(COMPUTE_LABEL.get(compute, compute) + ", log scale")
    ax.set_ylabel("error rate 1 - accuracy, log scale")
    ax.set_title("RL across model sizes: log Err = -k(N) log C + E0(N)")
    ax.legend(loc="best")
    return _save(fig, path)
