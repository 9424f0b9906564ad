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


def ci(value: float, lo_hi, digits: int = 3, sign: bool = False) -> str:
    fmt = f"{{:{'+' if sign else ''}.{digits}g}}"
    lo, hi = lo_hi
    return f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def runtime_minutes(sweep_dir: Path) -> tuple[float, int]:
    """Wall minutes the sweep's runs took (from their start and end times), and how many ran."""
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    total, n = 0.0, 0
    for r in plan["runs"]:
        if r.get("started") and r.get("ended") and not r.get("skipped"):
            total += (datetime.fromisoformat(r["ended"]) - datetime.fromisoformat(r["started"])).total_seconds()
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


def zoo_tables(study: Path) -> str:
    zoo_dir = study / "zoo"
    plan = json.loads((zoo_dir / "sweep.json").read_text())
    rows = []
    for r in plan["runs"]:
        info = json.loads((zoo_dir / r["name"] / "base_eval.json").read_text())
        rows.append([info["size"], f"{info['n_params']:,}", f"{info['tokens']:.3g}", f"{info['flops']:.3g}",
                     f"{info['final_val_loss']:.4f}", f"{info['heldout_accuracy_greedy']:.3f}",
                     f"{info['heldout_accuracy_sampled']:.3f}", f"{info.get('train_seconds', float('nan')) / 60:.1f}"])
    out = [table(["size", "N (matmul)", "tokens D", "FLOPs", "final val loss", "greedy acc", "sampled acc (T=1)",
                  "pre-training min"], rows)]
    fits_file = zoo_dir / "report" / "fits.json"
    if fits_file.is_file():
        z = json.loads(fits_file.read_text())["zoo"]
        out.append("")
        if z["chinchilla"]:
            f = z["chinchilla"]
            out.append("Chinchilla law: " + ", ".join(f"{k} = {ci(v, f['ci95'][k])}" for k, v in f["params"].items()))
        else:
            out.append(f"Chinchilla law: not fitted. {z['chinchilla_refused']}")
        out.append("")
        out.append(density_table(z))
    return "\n".join(out)


def density_table(z: dict) -> str:
    if z.get("density_refused"):
        return f"Capability density: not computed. {z['density_refused']}"
    rows = [[d["run"], d["stage"], f"{d['accuracy']:.3f}",
             ci(d["density"][0], d["density"][1:]) if "density" in d else "-", d.get("note") or d.get("refused", "")]
            for d in z["density"]]
    return table(["model or run", "stage", "accuracy", "density N_eff / N [95% CI]", "note"], rows)


def tan_table(fits: dict) -> str:
    t = fits["across_sizes"]
    if t["fit"] is None:
        return f"Tan et al. law: not fitted. {t['refused']}"
    f = t["fit"]
    rows = [[k, ci(v, f["ci95"][k])] for k, v in f["params"].items()]
    rows += [[k, ci(v["value"], v["ci95"])] for k, v in f["derived"].items()]
    return table(["parameter", "value [95% CI]"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="runs/study", help="the directory holding the study's sweep directories")
    study = Path(ap.parse_args().study)
    parts = {"zoo": "Zoo pre-training", "sizes": "RL across sizes", "recipes": "Recipes at xs"}
    print("## Runtime\n")
    rows = []
    for part, title in parts.items():
        if (study / part / "sweep.json").is_file():
            minutes, n = runtime_minutes(study / part)
            rows.append([title, n, f"{minutes:.1f}"])
        else:
            rows.append([title, 0, f"missing: {study / part} has no sweep.json"])
    print(table(["part", "runs run", "wall minutes"], rows))
    if (study / "zoo" / "sweep.json").is_file():
        print("\n## Zoo\n\n" + zoo_tables(study))
    for part in ("sizes", "recipes"):
        fits_file = study / part / "report" / "fits.json"
        if not fits_file.is_file():
            print(f"\n## {parts[part]}\n\nmissing: {fits_file}")
            continue
        fits = json.loads(fits_file.read_text())
        print(f"\n## {parts[part]}\n\n" + sigmoid_tables(fits))
        print("\n### 50% extrapolations\n\n" + check_table(fits))
        if fits["comparison"]:
            print("\n### Paired comparisons\n\n" + comparison_table(fits))
        if part == "sizes":
            print("\n### Tan et al. law\n\n" + tan_table(fits))
            if fits.get("zoo"):
                print("\n### Capability density\n\n" + density_table(fits["zoo"]))


if __name__ == "__main__":
    main()
