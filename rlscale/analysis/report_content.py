"""What the analysis report says, section by section (the results dict of analyze.py in,
a Report out). The extrapolation check comes first: it is the number a law is trusted by."""

from __future__ import annotations

import pandas as pd

from .loading import ZOO_LOSSES
from .report import Report, with_ci

REFERENCES = [
    "Khatri et al. 2025, The Art of Scaling Reinforcement Learning Compute for LLMs (ScaleRL), arXiv:2510.13786",
    "Cui et al. 2025, The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models, "
    "arXiv:2505.22617",
    "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, arXiv:2203.15556",
    "Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt, arXiv:2404.10102",
    "Tan et al. 2025, Scaling Behaviors of LLM Reinforcement Learning Post-Training: An Empirical Study in "
    "Mathematical Reasoning, arXiv:2509.25300",
    "Xiao et al. 2025, Densing Law of LLMs, arXiv:2412.04315",
    "Gadre et al. 2024, Language models scale reliably with over-training and on downstream tasks, "
    "arXiv:2403.08540",
    "Kaplan et al. 2020, Scaling Laws for Neural Language Models, arXiv:2001.08361",
]


# A run killed with kill -9 keeps the `running` it was started with.
RUN_STATUS_SHOWN = {"running": "running (or killed)", "unfinished": "unfinished (still running?)"}


# What an untested verdict means for the user, and where a check that could fail is shown.
UNTESTED_HINT = ("The prediction above is still made and scored; what this run cannot do is tell the law from "
                 "\"no change\". docs/study.md shows the check on runs whose curves still rise after the fit window.")


def check_lines(res: dict) -> list[str]:
    """The extrapolation check as plain lines (the report's box and the CLI's printout)."""
    if not res["fit_until"]:
        return ["extrapolation check not run (pass --fit-until F, e.g. 0.5)"]
    lines = [f"EXTRAPOLATION CHECK: ScaleRL sigmoid fitted on the first {res['fit_until']:.0%} of each run's "
             f"compute, {res['metric']} predicted at every later evaluation and scored against persistence "
             "(the last fitted value)"]
    for name, c in res["checks"].items():
        if "refused" in c:
            lines.append(f"  {name}: NO PREDICTION. {c['refused']}")
            continue
        p, ci, bounded = c["fit"].params, c["fit"].ci(), c["fit"].bounded()
        lines += [
            f"  {name}: final point predicted {c['predicted']:.3f} [simultaneous 95% interval "
            f"{c['band95'][0]:.3f}, {c['band95'][1]:.3f}], measured {c['observed']:.3f}, error {c['error']:+.3f}",
            f"    verdict {c['verdict'].upper()}: fit on {c['n_fit_points']} points up to C = {c['c_cut']:.3g}, "
            f"{c['n_held_out']} held-out point(s) out to C = {c['c_final']:.3g}",
            f"    RMSE over the held-out points: prediction {c['rmse_fit']:.4f}, "
            f"persistence {c['rmse_persistence']:.4f}"
            f" (persistence value {c['persistence']:.3f})",
            *[f"    {why}" for why in c["reasons"]],
            *([f"    {UNTESTED_HINT}"] if c["verdict"] == "untested" else []),
            f"    fitted A = {with_ci(p['A'], ci['A'], bounded.get('A'))}, B = {with_ci(p['B'], ci['B'])}, "
            f"C_mid = {with_ci(p['C_mid'], ci['C_mid'])}"]
    for setting, c in res.get("setting_checks", {}).items():
        if "refused" in c:
            lines.append(f"  {setting} ({c['members']} seeds pooled): NO PREDICTION. {c['refused']}")
            continue
        lines.append(f"  {setting} ({c['members']} seeds pooled): mean final predicted {c['predicted']:.3f} "
                     f"[95% interval {c['band95'][0]:.3f}, {c['band95'][1]:.3f}], measured {c['observed']:.3f}, "
                     f"error {c['error']:+.3f} ({'inside' if c['inside'] else 'OUTSIDE'} the interval)")
    return lines


def zoo_lines(zoo: dict) -> list[str]:
    """The pre-training laws in a few plain lines (the CLI's printout for zoo models alone)."""
    lines = [f"ZOO: {len(zoo['models'])} model(s): {', '.join(zoo['models'])}"]
    chin = zoo["chinchilla"]
    if chin is None:
        lines.append(f"  NOT FITTED: {zoo['chinchilla_refused']}")
    else:
        ci = chin.ci()
        lines.append(f"  Chinchilla law on {zoo['loss']}: " + ", ".join(f"{k} = {with_ci(chin.params[k], ci[k])}"
                                                                     for k in ("E", "alpha", "beta")))
    for name, why in zoo.get("density_loss_refusals", {}).items():
        if name != zoo["loss"]:
            lines.append(f"  density through {name}: NOT FITTED: {why}")
    if zoo.get("density_loss") not in (None, zoo["loss"]):
        law = zoo["density_chinchilla"]
        lines.append(f"  Chinchilla law on {zoo['density_loss']} (for density): "
                     + ", ".join(f"{k} = {with_ci(law.params[k], law.ci()[k])}" for k in ("E", "alpha", "beta")))
    lines += [f"  capability density of {d['run']}: "
              + (with_ci(d["density"][0], d["density"][1:]) if "density" in d else f"not computed: {d['refused']}")
              for d in zoo["density"]]
    if zoo.get("density_refused"):
        lines.append(f"  capability density: not computed: {zoo['density_refused']}")
    return lines


def _sigmoid_rows(fits: dict) -> list[list]:
    rows = []
    for name, f in fits.items():
        ci, bounded = f.ci(), f.bounded()
        r0 = (with_ci(f.params["R0"], ci["R0"], bounded.get("R0")) if "R0" in f.params
              else f"{f.fixed['R0']:.3g} (held)")
        rows.append([name, f.n_points, r0, with_ci(f.params["A"], ci["A"], bounded.get("A")),
                     with_ci(f.params["B"], ci["B"]), with_ci(f.params["C_mid"], ci["C_mid"]), f.rmse,
                     f"{len(f.boot_ok)} x {f.resampled}"])
    return rows


def _refusals(r: Report, refused: dict):
    r.bullets([f"**{name}: not fitted.** {why}" for name, why in refused.items()])


def _figure(r: Report, figures, stem: str):
    for path, caption in figures:
        if path.stem == stem:
            r.image(path, caption)


def _zoo_section(r: Report, zoo: dict | None, figures):
    r.heading("Pre-training laws over the base-model zoo")
    if zoo is None:
        r.text("No zoo checkpoints found: pass them with `--zoo ~/.cache/rlscale/zoo` (runs that started from a "
               "zoo model on this machine bring theirs automatically).")
        return
    r.text("Models: " + ", ".join(f"`{m}`" for m in zoo["models"]) + ".")
    r.text(f"The laws are fitted to {ZOO_LOSSES[zoo['loss']][1]}.")
    _figure(r, figures, "zoo_frontier")
    if zoo["frontier"] is not None:
        f, ci = zoo["frontier"], zoo["frontier"].ci()
        r.text(f"Compute frontier (lowest loss reached at each compute, power law with floor): "
               f"E = {with_ci(f.params['E'], ci['E'])}, alpha = {with_ci(f.params['alpha'], ci['alpha'])}.")
    _refusals(r, {"frontier power law": zoo["frontier_refused"]} if zoo["frontier_refused"] else {})
    r.heading("Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta (Besiroglu et al. fitting)", 3)
    chin = zoo["chinchilla"]
    if chin is None:
        _refusals(r, {"Chinchilla law": zoo["chinchilla_refused"]})
    else:
        ci = chin.ci()
        r.table(["parameter", "value [95% CI]"], [[k, with_ci(v, ci[k])] for k, v in chin.params.items()])
        r.table(["derived", "value [95% CI]"], [[k, with_ci(v[0], v[1:])] for k, v in chin.derived.items()])
        r.table(["compute C (FLOPs)", "N_opt", "D_opt (tokens)", "tokens per parameter"],
                [[row["C"], with_ci(row["N_opt"][0], row["N_opt"][1:]), with_ci(row["D_opt"][0], row["D_opt"][1:]),
                  with_ci(row["tokens_per_param"][0], row["tokens_per_param"][1:])] for row in zoo["compute_optimal"]])
        r.bullets(chin.notes)
    policy = zoo.get("chinchilla_policy") or {}
    if policy:
        moved = policy.get("with_left_out")
        moved_text = ("; ".join(f"{k} {v['value']:.4g} ({v['shift_in_se']:+.1f} SE)" if v["shift_in_se"] is not None
                                else f"{k} {v['value']:.4g}" for k, v in moved.items())
                      if isinstance(moved, dict) else moved or ("nothing was left out" if not policy["n_left_out"]
                                                                else "not compared (the law was not fitted)"))
        r.text(f"Points fitted: {policy['rule']}; {policy['n_left_out']} of "
               f"{policy['n_left_out'] + policy['n_kept']} points left out. "
               f"With them put back: {moved_text.rstrip('.')}.")
    r.heading("Capability density (Xiao et al.)", 3)
    used = zoo.get("density_loss")
    tried = {name: why for name, why in zoo.get("density_loss_refusals", {}).items() if name != zoo["loss"]}
    _refusals(r, {f"density through `{name}`": why for name, why in tried.items()})
    if used and used != zoo["loss"]:
        r.text(f"Density reads accuracy through the task's own loss (Xiao et al. 2025, Sec. 2: the loss of the "
               f"answer given the question), {ZOO_LOSSES[used][1]}, with a Chinchilla law of its own:")
        ci = zoo["density_chinchilla"].ci()
        r.table(["parameter", "value [95% CI]"],
                [[k, with_ci(v, ci[k])] for k, v in zoo["density_chinchilla"].params.items()])
    elif used and tried:
        r.text(f"Density reads accuracy through the laws' own loss, `{used}`, as Gadre et al. 2024 relate downstream "
               "error to a language model's validation loss: the task's own loss (Xiao et al.) was refused above.")
    if zoo["loss_to_acc"] is None:
        _refusals(r, {"loss-to-accuracy sigmoid": zoo["loss_to_acc_refused"]})
    else:
        f, ci = zoo["loss_to_acc"], zoo["loss_to_acc"].ci()
        r.text(f"{f.law[0].upper()}{f.law[1:]}, fitted to the zoo models' final "
               f"`{zoo.get('loss_to_acc_loss', zoo['loss'])}` and sampled held-out accuracy: "
               f"gamma = {with_ci(f.params['gamma'], ci['gamma'])}, l0 = {with_ci(f.params['l0'], ci['l0'])}.")
    if zoo.get("density_tokens"):
        r.text(f"Effective sizes are read through the Chinchilla law of `{zoo.get('density_loss', zoo['loss'])}` at "
               f"D = {zoo['density_tokens']:.3g} tokens (the "
               "median of the zoo models' training tokens): a model trained on more tokens than that can score "
               "like a larger model trained on D, so its density is above 1.")
    if zoo.get("density_refused"):
        _refusals(r, {"capability density": zoo["density_refused"]})
        return
    rows = []
    for d in zoo["density"]:
        if "refused" in d:
            rows.append([d["run"], d["stage"], d["accuracy"], "–", d["refused"]])
        else:
            rows.append([d["run"], d["stage"], d["accuracy"], with_ci(d["density"][0], d["density"][1:]),
                         d.get("note", "")])
    r.table(["run", "model", "accuracy", "density N_eff/N [95% CI]", "note"], rows)


def build_zoo_report(res: dict, zoo: pd.DataFrame, figures) -> Report:
    """The report of zoo models alone (a pre-training sweep): the models, then the laws."""
    r = Report(f"rlscale analysis: {zoo['model'].nunique()} zoo model(s)")
    r.heading("Models")
    finals = zoo[zoo["final"]]
    # Every loss the models logged, val_loss first; the laws' loss is among them.
    losses = [name for name in reversed(ZOO_LOSSES) if name in finals and finals[name].notna().all()]
    r.table(["model", "size", "N (matmul params)", "tokens D", "FLOPs"] + [f"final {name}" for name in losses]
            + ["greedy accuracy", "sampled accuracy (T=1)"],
            [[m["model"], m["size"], m["n_params"], m["tokens"], m["flops"]] + [m[name] for name in losses]
             + [m["heldout_accuracy_greedy"], m["heldout_accuracy_sampled"]] for _, m in finals.iterrows()])
    _zoo_section(r, res["zoo"], figures)
    r.heading("References")
    r.bullets(REFERENCES)
    return r


def build_report(res: dict, runs: pd.DataFrame, figures) -> Report:
    r = Report(f"rlscale analysis: {len(res['runs'])} run(s)")
    r.text(f"Reward metric `{res['metric']}` against compute `{res['compute']}`; "
           f"{res['n_boot']} bootstrap resamples per fit; intervals are 95% percentile intervals.")
    r.heading("Extrapolation check")
    r.box(check_lines(res))
    if res.get("setting_checks"):
        r.text("Seeds of one setting pooled: one sigmoid through every seed's points up to the cut, predicting the "
               "seeds' mean final measurement (whose own noise is sqrt(seeds) smaller than one run's).")
    _figure(r, figures, "reward_vs_compute")

    r.heading("RL compute curves: ScaleRL sigmoid R(C) = R0 + (A - R0) / (1 + (C_mid/C)^B)")
    headers = ["run", "points", "R0", "A [95% CI]", "B [95% CI]", "C_mid [95% CI]", "rmse", "bootstrap"]
    r.table(headers, _sigmoid_rows(res["sigmoid"]))
    _refusals(r, res["sigmoid_refused"])
    r.bullets([f"{name}: {note}" for name, f in res["sigmoid"].items() for note in f.notes])
    if res["setting_sigmoid"] or res["setting_refused"]:
        r.heading("Seeds of one setting pooled (whole runs resampled where there are 3+ seeds)", 3)
        r.table(headers, _sigmoid_rows(res["setting_sigmoid"]))
        _refusals(r, res["setting_refused"])
        _figure(r, figures, "reward_by_setting")
    if res["comparison"] or res.get("comparison_skipped"):
        r.heading("Comparison: paired bootstrap of the differences (A first; B and C_mid only where A does not "
                  "differ)", 3)
        r.bullets([f"**{name}: not compared.** {why}" for name, why in res.get("comparison_skipped", {}).items()])
        r.bullets([f"**{c['a']} vs {c['b']}**: " + "; ".join(filter(None, (c["A"], c["B"], c["C_mid"])))
                   for c in res["comparison"]])

    r.heading("Entropy and reward: R = -a exp(H) + b (Cui et al.)")
    r.text("Fitted per step on the training reward and the entropy of the same rollouts. "
           "R(H=0) = b - a is the reward the law predicts when the policy's entropy is used up.")
    r.table(["run", "steps", "a [95% CI]", "b [95% CI]", "R(H=0) [95% CI]", "rmse"],
            [[n, f.n_points, with_ci(f.params["a"], f.ci()["a"]), with_ci(f.params["b"], f.ci()["b"]),
              with_ci(f.derived["R(H=0)"][0], f.derived["R(H=0)"][1:]), f.rmse] for n, f in res["entropy"].items()])
    _refusals(r, res["entropy_refused"])
    _figure(r, figures, "reward_vs_entropy")
    r.heading("Training signals per step")
    _figure(r, figures, "step_panels")

    r.heading("RL across base-model sizes: log Err = -k(N) log C + E0(N) (Tan et al.)")
    tan = res["across_sizes"]
    if tan.get("slopes"):
        r.text("The slope k of -log Err against log C for each size alone (least squares; bootstrap over the size's "
               "runs), without the law's form k(N) = k_max N/(N + N0):")
        r.table(["N (base model)", "k [95% CI]"], [[n, with_ci(k[0], k[1:])] for n, k in tan["slopes"].items()])
    if tan["fit"] is None:
        _refusals(r, {"Tan et al. law": tan["refused"]})
    else:
        ci = tan["fit"].ci()
        r.table(["parameter", "value [95% CI]"], [[k, with_ci(v, ci[k])] for k, v in tan["fit"].params.items()]
                + [[k, with_ci(v[0], v[1:])] for k, v in tan["fit"].derived.items()])
        _figure(r, figures, "error_across_sizes")
    _zoo_section(r, res["zoo"], figures)

    r.heading("Runs")
    rows = []
    for name, run in runs.groupby("run", sort=False):
        vals = run[res["metric"]].dropna()
        rows.append([name, run["setting"].iloc[0], int(run["step"].max()), run["n_params"].iloc[0],
                     vals.iloc[0] if len(vals) else None, vals.iloc[-1] if len(vals) else None,
                     run[res["compute"]].max(), RUN_STATUS_SHOWN.get(run["status"].iloc[0], run["status"].iloc[0])])
    r.table(["run", "setting", "steps", "N", f"first {res['metric']}", f"last {res['metric']}",
             f"max {res['compute']}", "status"], rows)
    r.heading("References")
    r.bullets(REFERENCES)
    return r

