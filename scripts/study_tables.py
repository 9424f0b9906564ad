"""The tables of docs/study.md, read from the study's sweep directories and their reports.

    .venv/bin/python scripts/study_tables.py [--study runs/study] > tables.md

Each part is read from what `rlscale sweep` and `rlscale analyze` wrote (docs/study.md says
which command writes which report): OUT/sweep.json for the runs and their wall times,
OUT/report/fits.json for the fits. Nothing is fitted here; a part that has not run yet is
named as missing.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from rlscale.analysis.loading import ZOO_LOSSES


def ci(value: float, lo_hi, digits: int = 3, sign: bool = False) -> str:
    """value [low, high]; a bound the bootstrap could not give (NaN, e.g. where some resamples
    put N_eff at infinity) is shown as –, as the report shows it."""
    def fmt(x) -> str:
        return "–" if x is None or x != x else f"{{:{'+' if sign else ''}.{digits}g}}".format(x)
    lo, hi = lo_hi
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_seconds(run_dir: Path) -> float | None:
    """A run's wall seconds from its own logs: run.json's start (once its base model is
    ready; pre-training counts in the zoo part) to its finish, less the time it lay stopped
    before each resume (from the logged time of the step it resumed from to the resume)."""
    info = json.loads((run_dir / "run.json").read_text())
    if "started" not in info or "finished_unix" not in info:
        return None  # not a run rlscale ran (e.g. rlscale.analysis.synthetic's)
    times = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        times[row["step"]] = row["time"]
    total = info["finished_unix"] - datetime.fromisoformat(info["started"]).timestamp()
    for r in info.get("resumed", []):
        total -= datetime.fromisoformat(r["at"]).timestamp() - times[r["from_step"]]
    return total


def runtime_minutes(sweep_dir: Path) -> tuple[float, int]:
    """Wall minutes of the sweep's finished runs, and how many. A pre-training sweep's
    models count their pre-training seconds (base_eval.json), whichever run trained them."""
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    total, n = 0.0, 0
    for r in plan["runs"]:
        run_dir = sweep_dir / r["name"]
        if (run_dir / "base_eval.json").is_file() and not (run_dir / "run.json").is_file():
            total += json.loads((run_dir / "base_eval.json").read_text())["train_seconds"]
        elif (run_dir / "summary.json").is_file() and (seconds := run_seconds(run_dir)) is not None:
            total += seconds
        else:
            continue
        n += 1
    return total / 60, n


def fit_row(label: str, f: dict) -> list:
    p, c, bounded = f["params"], f["ci95"], f.get("bounded", {})
    a = ci(p["A"], c["A"]) + (" (bound)" if bounded.get("A") else "")
    return [label, f["n_points"], ci(p["R0"], c["R0"]), a, ci(p["B"], c["B"]), ci(p["C_mid"], c["C_mid"])]


def sigmoid_tables(fits: dict) -> str:
    out = ["Seeds pooled per setting (whole runs resampled):", "",
           table(["setting", "points", "R0", "A [95% CI]", "B [95% CI]", "C_mid (FLOPs) [95% CI]"],
                 [fit_row(k.split(" (")[0], f) for k, f in fits["setting_sigmoid"].items()])]
    for k, why in fits.get("setting_refused", {}).items():
        out.append(f"- {k.split(' (')[0]}: not fitted. {why}")
    out += ["", "Each run:", "",
            table(["run", "points", "R0", "A [95% CI]", "B [95% CI]", "C_mid (FLOPs) [95% CI]"],
                  [fit_row(k, f) for k, f in fits["sigmoid"].items()])]
    out += [f"- {k}: not fitted. {why}" for k, why in fits.get("sigmoid_refused", {}).items()]
    return "\n".join(out)


def check_table(fits: dict) -> str:
    rows = []
    for name, c in fits["checks"].items():
        if "refused" in c:
            rows.append([name, "-", "-", f"{c.get('observed', float('nan')):.3f}", "-", "no prediction", c["refused"]])
            continue
        rows.append([name, f"{c['c_cut']:.3g}", f"{c['predicted']:.3f} [{c['band95'][0]:.3f}, {c['band95'][1]:.3f}]",
                     f"{c['observed']:.3f}", f"{c['error']:+.3f}", c["verdict"],
                     f"{c['rmse_fit']:.4f} / {c['rmse_persistence']:.4f}"])
    errors = [abs(c["error"]) for c in fits["checks"].values() if "error" in c]
    within = sum(e <= 0.03 for e in errors)
    summary = (f"\n\n{within} of {len(errors)} predictions within +-0.03 of the final measurement; "
               f"largest |error| {max(errors):.3f}." if errors else "")
    return table(["run", "fit until C", "final predicted [sim. 95%]", "final measured", "error", "verdict",
                  "RMSE fit / persistence"], rows) + summary


def setting_check_table(fits: dict) -> str:
    rows = []
    for setting, c in fits.get("setting_checks", {}).items():
        if "refused" in c:
            rows.append([setting, c["members"], "-", f"{c['observed']:.3f}", "-", "no prediction: " + c["refused"]])
            continue
        rows.append([setting, c["members"], f"{c['predicted']:.3f} [{c['band95'][0]:.3f}, {c['band95'][1]:.3f}]",
                     f"{c['observed']:.3f}", f"{c['error']:+.3f}", "yes" if c["inside"] else "no"])
    return table(["setting", "seeds", "mean final predicted [95%]", "mean final measured", "error", "inside"], rows)


def comparison_table(fits: dict) -> str:
    rows = []
    for c in fits["comparison"]:
        d = c["paired"]
        rows.append([c["a"].split(" (")[0], c["b"].split(" (")[0],
                     ci(d["A"]["diff"], d["A"]["ci95"], sign=True), "yes" if d["A"]["differs"] else "no",
                     ci(d["B"]["diff"], d["B"]["ci95"], sign=True), "yes" if d["B"]["differs"] else "no",
                     "; ".join(filter(None, (c["A"], c["B"]))).split("): ")[-1] if d["A"]["differs"] else
                     (c["B"] or "")])
    return table(["a", "b", "A_a - A_b [paired 95%]", "A differs", "B_a - B_b [paired 95%]", "B differs",
                  "verdict (ScaleRL: B only at equal A)"], rows)


def zoo_tables(zoo_dir: Path) -> str:
    plan = json.loads((zoo_dir / "sweep.json").read_text())
    infos = [json.loads((zoo_dir / r["name"] / "base_eval.json").read_text()) for r in plan["runs"]
             if (zoo_dir / r["name"] / "base_eval.json").is_file()]
    # Every loss all models logged, val_loss first, as the report's models table has them.
    losses = [name for name in reversed(ZOO_LOSSES) if all(f"final_{name}" in info for info in infos)]
    # The learning rate gets a column only in a part whose models differ in it (part 0d).
    rates = [f"{info['settings']['lr']:g}" for info in infos]
    rates_differ = len(set(rates)) > 1
    rows = [[info["size"], f"{info['n_params']:,}", info["settings"]["steps"]] + ([rate] if rates_differ else [])
            + [f"{info['tokens']:.3g}", f"{info['flops']:.3g}"] + [f"{info[f'final_{name}']:.4f}" for name in losses]
            + [f"{info['heldout_accuracy_greedy']:.3f}", f"{info['heldout_accuracy_sampled']:.3f}",
               f"{info.get('train_seconds', float('nan')) / 60:.1f}"] for info, rate in zip(infos, rates)]
    out = [table(["size", "N (matmul)", "steps"] + (["lr"] if rates_differ else []) + ["tokens D", "FLOPs"]
                 + [f"final {name.replace('_', ' ')}" for name in losses]
                 + ["greedy acc", "sampled acc (T=1)", "pre-training min"], rows)]
    best = best_rates(infos, losses[-1])
    if best:
        out += ["", f"Best learning rate per size and budget, by final {losses[-1].replace('_', ' ')}: "
                + "; ".join(f"{size} at {steps} steps: {lr:g} of {', '.join(f'{r:g}' for r in tried)}"
                            for (size, steps), (lr, tried) in best.items())]
    fits_file = zoo_dir / "report" / "fits.json"
    if fits_file.is_file():
        z = json.loads(fits_file.read_text())["zoo"]
        out.append("")
        if z["chinchilla"]:
            f = z["chinchilla"]
            out.append(f"Chinchilla law ({f['n_points']} points, loss {z.get('loss', 'val_loss')}): "
                       + ", ".join(f"{k} = {ci(v, f['ci95'][k])}" for k, v in f["params"].items()))
            out += [f"- {k}: {ci(v['value'], v['ci95'])}" for k, v in f["derived"].items()]
            out += [f"- at C = {row['C']:.3g} FLOPs: N_opt {ci(row['N_opt'][0], row['N_opt'][1:])}, "
                    f"D_opt {ci(row['D_opt'][0], row['D_opt'][1:])}" for row in z.get("compute_optimal", [])]
        else:
            out.append(f"Not fitted: {z['chinchilla_refused']}")
        policy = z.get("chinchilla_policy", {})
        if isinstance(policy.get("with_left_out"), dict):
            out.append("- with the left-out points put back: " + ", ".join(
                f"{k} {v['value']:.4g}" + (f" ({v['shift_in_se']:+.1f} SE)" if v["shift_in_se"] is not None else "")
                for k, v in policy["with_left_out"].items()))
        if z["frontier"]:
            f = z["frontier"]
            out.append("- compute frontier: " + ", ".join(f"{k} = {ci(v, f['ci95'][k])}" for k, v in f["params"].items()))
        for name, why in z.get("density_loss_refusals", {}).items():
            if name != z.get("loss"):
                out.append(f"- density through {name}: not fitted: {why}")
        if z.get("density_loss") not in (None, z.get("loss")):
            law = z["density_chinchilla"]
            out.append(f"- Chinchilla law on {z['density_loss']} (for density): "
                       + ", ".join(f"{k} = {ci(v, law['ci95'][k])}" for k, v in law["params"].items()))
        if z["loss_to_acc"]:
            f = z["loss_to_acc"]
            out.append(f"- accuracy from {z.get('loss_to_acc_loss', z.get('loss', 'val_loss'))}: "
                       + ", ".join(f"{k} = {ci(v, f['ci95'][k])}" for k, v in f["params"].items()))
        out.append("")
        out.append(density_table(z))
    return "\n".join(out)


def best_rates(infos: list[dict], loss: str) -> dict:
    """(size, steps) -> (the learning rate with the lowest final loss, the rates tried), for the
    cells where more than one rate was tried (a rate scan); empty when no cell was scanned."""
    cells: dict[tuple, list[dict]] = {}
    for info in infos:
        cells.setdefault((info["size"], info["settings"]["steps"]), []).append(info)
    return {cell: (min(models, key=lambda i: i[f"final_{loss}"])["settings"]["lr"],
                   sorted(i["settings"]["lr"] for i in models))
            for cell, models in cells.items() if len({i["settings"]["lr"] for i in models}) > 1}


def density_table(z: dict) -> str:
    if z.get("density_refused"):
        return f"Capability density: not computed; it {z['density_refused']}"
    rows = [[d["run"], d["stage"], f"{d['accuracy']:.3f}",
             ci(d["density"][0], d["density"][1:]) if "density" in d else "-", d.get("note") or d.get("refused", "")]
            for d in z["density"]]
    return table(["model or run", "stage", "accuracy", "density N_eff / N [95% CI]", "note"], rows)


def tan_table(fits: dict) -> str:
    t = fits["across_sizes"]
    slopes = table(["N (base model)", "k, each size alone [95% CI]"],
                   [[n, ci(k[0], k[1:])] for n, k in t.get("slopes", {}).items()]) + "\n\n"
    if t["fit"] is None:
        return slopes + f"Not fitted: {t['refused']}"
    f = t["fit"]
    rows = [[k, ci(v, f["ci95"][k])] for k, v in f["params"].items()]
    rows += [[k, ci(v["value"], v["ci95"])] for k, v in f["derived"].items()]
    return slopes + table(["parameter", "value [95% CI]"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="runs/study", help="the directory holding the study's sweep directories")
    study = Path(ap.parse_args().study)
    zoo_parts = {"zoo": "Zoo pre-training", "zoo_laws": "Pre-training laws",
                 "zoo_laws_long": "Pre-training laws, one more doubling",
                 "zoo_text": "Pre-training laws, arithmetic mixed with source text",
                 "zoo_text_long": "Pre-training laws with source text, l at 800 steps",
                 "zoo_text_lr": "Learning rate per size, 90% source text",
                 "zoo_text_heavy": "Pre-training laws, 90% source text, a learning rate per size"}
    rl_parts = {"sizes": "RL across sizes", "sizes_long": "m at 160 steps",
                "sizes_long_wide_eval": "m at 160 steps, 800 problems x 1 sample", "recipes": "Recipes at xs"}
    parts = zoo_parts | rl_parts
    print("## Runtime\n")
    rows = []
    for part, title in parts.items():
        if (study / part / "sweep.json").is_file():
            minutes, n = runtime_minutes(study / part)
            rows.append([title, n, f"{minutes:.1f}"])
        else:
            rows.append([title, 0, f"missing: {study / part} has no sweep.json"])
    print(table(["part", "runs", "wall minutes"], rows))
    for part in zoo_parts:
        if (study / part / "sweep.json").is_file():
            print(f"\n## {parts[part]}\n\n" + zoo_tables(study / part))
    for part in rl_parts:
        fits_file = study / part / "report" / "fits.json"
        if not fits_file.is_file():
            print(f"\n## {parts[part]}\n\nmissing: {fits_file}")
            continue
        fits = json.loads(fits_file.read_text())
        print(f"\n## {parts[part]}\n\n" + sigmoid_tables(fits))
        print("\n### 50% extrapolations, seeds pooled\n\n" + setting_check_table(fits))
        print("\n### 50% extrapolations, each run\n\n" + check_table(fits))
        if fits["comparison"]:
            print("\n### Paired comparisons\n\n" + comparison_table(fits))
        if part == "sizes":
            print("\n### Tan et al. law\n\n" + tan_table(fits))
            if fits.get("zoo"):
                print("\n### Capability density\n\n" + density_table(fits["zoo"]))


if __name__ == "__main__":
    main()
