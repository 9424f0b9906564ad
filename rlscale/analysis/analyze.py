"""`rlscale analyze`: run directories (and zoo checkpoints) in; plots, report.md, report.html
and fits.json out. Every law that cannot be fitted is reported with its refusal reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .across_sizes import fit_across_sizes, slopes_per_size
from .compare import compare_fits, curve_points, fit_run, fit_setting
from .density import capability_density, fit_loss_to_accuracy
from .extrapolation import extrapolation_check, setting_extrapolation
from .fitcore import Fit, FitRefused
from .loading import (ZOO_LOSSES, RunDirError, expand_zoo_paths, load_runs, load_zoo, split_zoo_paths,
                      unique_zoo_models)
from .pretrain_laws import compute_optimal, fit_chinchilla, loss_frontier
from .rl_laws import fit_entropy_reward, fit_power_law
from . import plots
from .report_content import build_report, build_zoo_report

# Outlier and small-data policy of the Chinchilla fit. Epoch's replication (Besiroglu et al.
# 2024) leaves the runs trained on the fewest tokens out of its fit: the law does not describe
# them, and they move beta by several standard errors. rlscale's counterpart is each zoo
# model's warm-up: points trained on less than this fraction of the model's final tokens are
# left out of the Chinchilla and frontier fits; the report says how many, and how far the
# exponents move when they are put back (chinchilla_policy in fits.json).
ZOO_MIN_TOKENS_FRAC = 0.1
MIN_FRONTIER_MODELS = 3  # a frontier through fewer models is one training curve, not a frontier


def _attempt(fn, *args, **kwargs):
    """(result, None) or (None, refusal reason)."""
    try:
        return fn(*args, **kwargs), None
    except FitRefused as e:
        return None, str(e)


def zoo_dirs_of_runs(runs: pd.DataFrame) -> list[Path]:
    """The zoo checkpoints the runs started from, where they are on this machine."""
    if "run.model_path" not in runs:
        return []
    paths = {Path(p) for p in runs["run.model_path"].dropna().unique()}
    return sorted(p for p in paths if (p / "pretrain_metrics.jsonl").is_file())


def zoo_loss(zoo: pd.DataFrame) -> str:
    """The loss the pre-training laws are fitted to: the first of ZOO_LOSSES that every zoo
    model logged. `val_loss` (whole held-out arithmetic documents) is last: its floor is the
    prompts' random operands, which no model can predict."""
    return next(name for name in ZOO_LOSSES if name == "val_loss" or (name in zoo and zoo[name].notna().all()))


def chinchilla_points(zoo: pd.DataFrame, warm: pd.Series) -> tuple[pd.Series, str]:
    """Which zoo points the Chinchilla fit leaves out, and the rule, as the report states it."""
    finals = zoo[zoo["final"]]
    if finals.groupby("n_params")["tokens"].nunique().max() >= 2:
        return ~zoo["final"], ("only each model's final point: the zoo trains several token budgets per size, each "
                               "to the end of its own cosine schedule (Hoffmann et al. 2022, Approach 3); a point "
                               "inside a schedule sits above what a run of that many tokens reaches")
    return warm, (f"points trained on < {ZOO_MIN_TOKENS_FRAC:.0%} of their model's final tokens are left out "
                  "(Epoch / Besiroglu et al. 2024 leave out their smallest-D runs likewise)")


def analyze_zoo(zoo: pd.DataFrame, runs: pd.DataFrame, metric: str, n_boot: int) -> dict:
    loss = zoo_loss(zoo)
    out: dict = {"models": sorted(zoo["model"].unique()), "loss": loss}
    warm = zoo["tokens"] < ZOO_MIN_TOKENS_FRAC * zoo.groupby("model")["tokens"].transform("max")
    trained = zoo[~warm]
    f_c, f_l = loss_frontier(trained["flops"], trained[loss])
    out["frontier_points"] = {"flops": f_c.tolist(), loss: f_l.tolist()}
    n_models = trained["n_params"].nunique()
    if n_models < MIN_FRONTIER_MODELS:
        out["frontier"], out["frontier_refused"] = None, (
            f"compute frontier: needs zoo models of at least {MIN_FRONTIER_MODELS} sizes (have {n_models}); "
            "through fewer it is one model's training curve, and extrapolating it says nothing about larger "
            "models. Pre-train more sizes with `rlscale pretrain --size s|m|l` and pass them with --zoo.")
    else:
        out["frontier"], out["frontier_refused"] = _attempt(fit_power_law, f_c, f_l, n_boot=n_boot)
    left_out, rule = chinchilla_points(zoo, warm)
    fitted = zoo[~left_out]
    out["chinchilla"], out["chinchilla_refused"] = _attempt(
        fit_chinchilla, fitted["n_params"], fitted["tokens"], fitted[loss], n_boot=min(n_boot, 200))
    out["chinchilla_policy"] = chinchilla_policy(out["chinchilla"], zoo, left_out, rule, loss)
    if out["chinchilla"] is not None and (~left_out & ~zoo["final"]).any():
        out["chinchilla"].notes.append("Intermediate checkpoints of one cosine-schedule run stand in for separately "
                                       "tuned runs, which biases the D term; bootstrap points are correlated within "
                                       "a run.")
    if out["chinchilla"] is not None:
        top = float(zoo["flops"].max())
        out["compute_optimal"] = compute_optimal(out["chinchilla"], [top, 10 * top, 100 * top])
    finals = zoo[zoo["final"] & zoo["heldout_accuracy_sampled"].notna()]
    out.update(density_route(fitted, finals, loss, out["chinchilla"], out["chinchilla_refused"], n_boot))
    out["density"] = []
    if out["density_loss"] is None:
        out["density_refused"] = "needs both a Chinchilla law and the loss-to-accuracy sigmoid of one loss (see above)"
        return out
    law, tokens = out["density_chinchilla"], float(finals["tokens"].median())  # sizes are compared at the zoo's D
    out["density_tokens"] = tokens
    for _, model in finals.iterrows():  # each zoo model as pre-trained: its sampled held-out accuracy
        row, why = _attempt(capability_density, law, out["loss_to_acc"],
                            float(model["heldout_accuracy_sampled"]), float(model["n_params"]), tokens)
        out["density"].append({"run": model["model"], "stage": f"zoo {model['size']} (pre-trained)",
                               **(row or {"refused": why, "accuracy": float(model["heldout_accuracy_sampled"])})})
    for name, run in ([] if runs is None else runs.groupby("run", sort=False)):
        C, R = curve_points(run, metric, "step")
        n = run["n_params"].iloc[0]
        if len(R) == 0 or n is None or pd.isna(n):
            continue
        for stage, acc in ((f"base (step {int(C[0])})", R[0]), (f"after RL (step {int(C[-1])})", R[-1])):
            row, why = _attempt(capability_density, law, out["loss_to_acc"], float(acc), float(n), tokens)
            out["density"].append({"run": name, "stage": stage, **(row or {"refused": why, "accuracy": float(acc)})})
    return out


def density_route(fitted: pd.DataFrame, finals: pd.DataFrame, loss: str, chinchilla: Fit | None,
                  chinchilla_refused: str | None, n_boot: int) -> dict:
    """The loss capability density reads accuracy through: a Chinchilla law of it and the
    accuracy-from-loss sigmoid of it must both hold (Xiao et al. 2025, Sec. 2).

    Xiao et al. use the task's own conditional loss (the answer given the question), so on a
    zoo pre-trained with source text `solution_loss` is tried first; where its law is refused
    (on arithmetic it falls to a floor near 0 faster than a power law: docs/study.md, part
    0b), the laws' own `text_loss` is tried next, as Gadre et al. 2024 relate downstream error
    to the language model's validation loss. Each refusal on the way is kept for the report."""
    candidates = ["solution_loss", loss] if loss == "text_loss" else [loss]
    refusals: dict[str, str] = {}
    sigmoid, sigmoid_refused = None, None
    for name in candidates:
        if name == loss:
            law, why = chinchilla, chinchilla_refused
        else:
            law, why = _attempt(fit_chinchilla, fitted["n_params"], fitted["tokens"], fitted[name],
                                n_boot=min(n_boot, 200))
        sigmoid, sigmoid_refused = _attempt(fit_loss_to_accuracy, finals[name], finals["heldout_accuracy_sampled"],
                                            n_boot=n_boot)
        if law is not None and sigmoid is not None:
            return {"density_loss": name, "density_chinchilla": law, "loss_to_acc": sigmoid,
                    "loss_to_acc_loss": name, "loss_to_acc_refused": None, "density_loss_refusals": refusals}
        refusals[name] = why or f"loss-to-accuracy sigmoid: {sigmoid_refused}"
    return {"density_loss": None, "density_chinchilla": None, "loss_to_acc": sigmoid,
            "loss_to_acc_loss": candidates[-1], "loss_to_acc_refused": sigmoid_refused,
            "density_loss_refusals": refusals}


def chinchilla_policy(fit: Fit | None, zoo: pd.DataFrame, left_out: pd.Series, rule: str, loss: str) -> dict:
    """What the point policy left out, and how far the exponents move with it put back (in
    bootstrap standard errors of the policy's fit)."""
    out = {"rule": rule, "loss": loss, "n_left_out": int(left_out.sum()), "n_kept": int((~left_out).sum())}
    if fit is None or not left_out.any():
        return out
    with_all, why = _attempt(fit_chinchilla, zoo["n_params"], zoo["tokens"], zoo[loss], n_boot=0)
    if with_all is None:
        return out | {"with_left_out": f"not fitted: {why}"}
    se = fit.boot_ok.std(axis=0) if len(fit.boot_ok) else np.full(len(fit.names), np.nan)
    out["with_left_out"] = {
        name: {"value": float(v), "shift_in_se": float((v - fit.params[name]) / s) if s > 0 else None}
        for name, v, s in zip(fit.names, with_all.values, se) if name in ("alpha", "beta", "E")}
    return out


def analyze_across_sizes(runs: pd.DataFrame, metric: str, compute: str, n_boot: int) -> dict:
    rows = runs[runs[metric].notna() & (runs[compute] > 0) & runs["n_params"].notna()]
    points = pd.DataFrame({"n_params": rows["n_params"].astype(float), "C": rows[compute].astype(float),
                           "err": 1 - rows[metric].astype(float), "run": rows["run"]})
    fit, why = _attempt(fit_across_sizes, points["n_params"], points["C"], 1 - points["err"],
                        groups=points["run"].to_numpy(), n_boot=n_boot)
    slopes = slopes_per_size(points["n_params"], points["C"], 1 - points["err"], points["run"].to_numpy(), n_boot)
    return {"fit": fit, "refused": why, "points": points, "slopes": slopes if len(slopes) >= 2 else {}}


def analyze(run_paths, out_dir, fit_until: float | None = 0.5, zoo_paths=(), metric: str = "val_mean_at_k",
            compute: str = "cumulative_flops", drop_early: float = 0.0, n_boot: int = 1000, log=print) -> dict:
    out_dir = Path(out_dir)
    run_paths, zoo_records = split_zoo_paths(run_paths)
    zoo_paths = [*zoo_records, *zoo_paths]
    if not run_paths:
        return analyze_zoo_only(zoo_paths, out_dir, n_boot, log)
    runs = load_runs(run_paths)
    for col, what in ((metric, "--metric"), (compute, "--compute")):
        if col not in runs or runs[col].notna().sum() == 0:
            raise RunDirError(f"{what} {col!r}: no run logged any value for it; choose a metrics.jsonl field "
                              "such as val_mean_at_k, reward_mean (metric) or cumulative_flops, cumulative_s (compute)")
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict = {"runs": list(dict.fromkeys(runs["run"])), "metric": metric, "compute": compute,
                 "fit_until": fit_until, "drop_early": drop_early, "n_boot": n_boot}
    log(f"analyze: {len(res['runs'])} run(s), metric {metric} against {compute}")

    res["sigmoid"], res["sigmoid_refused"] = {}, {}
    for name, run in runs.groupby("run", sort=False):
        fit, why = _attempt(fit_run, run, metric, compute, drop_early, n_boot)
        (res["sigmoid"] if fit else res["sigmoid_refused"])[name] = fit or why
    # Compared units: a setting's seeds pooled into one curve (bootstrapped over seeds), or a lone run.
    res["setting_sigmoid"], res["setting_refused"], units = {}, {}, {}
    for setting, group in runs.groupby("setting", sort=False):
        members = list(dict.fromkeys(group["run"]))
        if len(members) >= 2:
            fit, why = _attempt(fit_setting, group, metric, compute, drop_early, n_boot)
            key = f"{setting} ({', '.join(members)})"
            (res["setting_sigmoid"] if fit else res["setting_refused"])[key] = fit or why
            units[key] = fit
        else:
            units[members[0]] = res["sigmoid"].get(members[0])
    res["comparison_skipped"] = {k: "its sigmoid fit was refused (see above)" for k, v in units.items() if v is None}
    units = {k: v for k, v in units.items() if v is not None}
    res["comparison"] = compare_fits(units) if len(units) >= 2 else []

    res["checks"], res["setting_checks"] = {}, {}
    if fit_until:
        for name, run in runs.groupby("run", sort=False):
            res["checks"][name] = extrapolation_check(run, fit_until, metric, compute, drop_early, n_boot)
        for setting, group in runs.groupby("setting", sort=False):
            if group["run"].nunique() >= 2:
                res["setting_checks"][setting] = setting_extrapolation(group, fit_until, metric, compute, drop_early,
                                                                       n_boot)

    res["entropy"], res["entropy_refused"] = {}, {}
    for name, run in runs.groupby("run", sort=False):
        reward = run["reward_mean"].dropna()
        reward_range = (min(0.0, reward.min()), max(1.0, reward.max())) if len(reward) else (0.0, 1.0)
        fit, why = _attempt(fit_entropy_reward, run["entropy"], run["reward_mean"], reward_range=reward_range,
                            n_boot=n_boot)
        (res["entropy"] if fit else res["entropy_refused"])[name] = fit or why

    res["across_sizes"] = analyze_across_sizes(runs, metric, compute, n_boot)
    zoo_dirs = unique_zoo_models((expand_zoo_paths(zoo_paths) if zoo_paths else []) + zoo_dirs_of_runs(runs))
    zoo = load_zoo(zoo_dirs) if zoo_dirs else None
    res["zoo"] = analyze_zoo(zoo, runs, metric, n_boot) if zoo is not None else None

    figures = [(plots.reward_vs_compute(runs, res["sigmoid"], res["checks"], metric, compute,
                                        out_dir / "reward_vs_compute.png", refused=res["sigmoid_refused"]),
                "Reward against compute: measured points, ScaleRL fits, and the checked extrapolation"),
               (plots.reward_vs_entropy(runs, res["entropy"], "reward_mean", out_dir / "reward_vs_entropy.png"),
                "Training reward against token entropy with Cui et al.'s law"),
               (plots.step_panels(runs, out_dir / "step_panels.png"), "Per-step training signals")]
    if res["setting_sigmoid"]:
        figures.append((plots.reward_by_setting(runs, res["setting_sigmoid"], metric, compute,
                                                out_dir / "reward_by_setting.png"),
                        "Settings compared: seeds pooled per setting, with the pooled fit's 95% band"))
    if zoo is not None:
        figures.append((plots.zoo_frontier(zoo, res["zoo"]["frontier"], res["zoo"]["chinchilla"],
                                           out_dir / "zoo_frontier.png", res["zoo"]["loss"]),
                        "Zoo pre-training loss against compute, with the compute frontier"))
    if res["across_sizes"]["fit"] is not None:
        figures.append((plots.error_across_sizes(res["across_sizes"]["points"], res["across_sizes"]["fit"], compute,
                                                 out_dir / "error_across_sizes.png"),
                        "Error rate against compute across base-model sizes (Tan et al.)"))
    report = build_report(res, runs, figures)
    (out_dir / "report.md").write_text(report.to_markdown())
    (out_dir / "report.html").write_text(report.to_html())
    (out_dir / "fits.json").write_text(json.dumps(to_json(res), indent=2, default=_json_default))
    res["figures"] = [str(p) for p, _ in figures]
    return res


def analyze_zoo_only(zoo_paths, out_dir: Path, n_boot: int, log=print) -> dict:
    """A pre-training sweep (or zoo checkpoints) alone: the pre-training laws and the zoo's
    capability densities, without RL runs."""
    zoo = load_zoo(unique_zoo_models(expand_zoo_paths(zoo_paths)))
    log(f"analyze: {zoo['model'].nunique()} zoo model(s), no RL runs: pre-training laws only")
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict = {"runs": [], "zoo": analyze_zoo(zoo, None, "val_mean_at_k", n_boot), "fit_until": None}
    figures = [(plots.zoo_frontier(zoo, res["zoo"]["frontier"], res["zoo"]["chinchilla"], out_dir / "zoo_frontier.png",
                                   res["zoo"]["loss"]),
                "Zoo pre-training loss against compute, with the compute frontier")]
    report = build_zoo_report(res, zoo, figures)
    (out_dir / "report.md").write_text(report.to_markdown())
    (out_dir / "report.html").write_text(report.to_html())
    (out_dir / "fits.json").write_text(json.dumps(res, indent=2, default=_json_default))
    res["figures"] = [str(p) for p, _ in figures]
    return res


def _json_default(o):
    if isinstance(o, Fit):
        return o.to_json()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pd.DataFrame):
        return None  # raw points live in the run directories already
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def to_json(res: dict) -> dict:
    """fits.json: every fit as {law, params, ci95, n_points, bootstrap, ...}, every refusal as text."""
    out = {k: v for k, v in res.items() if k not in ("checks", "across_sizes")}
    out["checks"] = {k: {kk: vv for kk, vv in c.items()} for k, c in res["checks"].items()}
    out["across_sizes"] = {"fit": res["across_sizes"]["fit"], "refused": res["across_sizes"]["refused"],
                           "slopes": {f"{n:.4g}": list(k) for n, k in res["across_sizes"]["slopes"].items()}}
    return out
