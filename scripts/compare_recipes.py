"""Run the quickstart task under several RL recipes (same seeds, same steps) and compare them.

Each recipe x seed is `rlscale run configs/quickstart.yaml` with the recipe's overrides,
in its own process (its own local Ray), into OUT/<recipe>-s<seed>; a run that already
finished is skipped, so an interrupted comparison continues where it stopped. Then
`rlscale analyze OUT/*-s* --out OUT/report` fits the ScaleRL curves (a recipe's seeds
pooled into one fit, bootstrapped over seeds), and this script prints a table (final
accuracy per seed with its binomial SE, fitted A and B with 95% intervals where the fit
is accepted, FLOPs and seconds per step) and writes it to OUT/recipes.md.

    .venv/bin/python scripts/compare_recipes.py --out runs/recipes --seeds 0 1
    .venv/bin/python scripts/compare_recipes.py --out runs/recipes --only grpo cispo_scalerl -- steps=40
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RLSCALE = str(Path(sys.executable).with_name("rlscale"))

# Each recipe changes one axis from the GRPO baseline, or takes a paper's recipe whole.
RECIPES: dict[str, list[str]] = {
    "grpo": ["algo.loss=grpo"],
    "dapo": ["algo.loss=dapo"],  # clip-higher only
    "dapo_ds": ["algo.loss=dapo", "algo.filter=dynamic_sampling"],  # + dynamic sampling
    "dr_grpo": ["algo.loss=dr_grpo"],  # group_mean advantage, constant-length token sums
    "cispo_scalerl": ["algo.loss=cispo", "algo.aggregation=prompt_mean", "algo.advantage=group_norm",
                      "algo.advantage.std_level=batch"],  # ScaleRL's loss-side settings
    "gspo": ["algo.loss=gspo"],
    "ppo": ["algo.loss=ppo"],  # learned value head + GAE
    "grpo_kl_cov": ["algo.loss=grpo", "algo.entropy_control=kl_cov"],
}


def run_recipe(name: str, overrides: list[str], out: Path, seed: int, extra: list[str]) -> Path:
    run_dir = out / f"{name}-s{seed}"
    if (run_dir / "summary.json").is_file():
        print(f"[{run_dir.name}] finished before; skipped")
        return run_dir
    if run_dir.exists():
        sys.exit(f"{run_dir} holds an unfinished run; remove it to rerun {run_dir.name}")
    cmd = [RLSCALE, "run", "configs/quickstart.yaml", f"run_dir={run_dir}", f"seed={seed}", f"name={name}",
           "progress=false", *overrides, *extra]
    print(f"[{run_dir.name}] {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"[{run_dir.name}] {time.time() - t0:.0f} s", flush=True)
    return run_dir


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def interval(fit: dict, key: str) -> str:
    """value [lo, hi], an end at the parameter's bound marked as such (the data say only >= lo)."""
    lo, hi = fit["ci95"][key]
    side = fit.get("bounded", {}).get(key)
    lo_s = f"{lo:.3f} (bound)" if side == "lower" else f"{lo:.3f}"
    hi_s = f"{hi:.3g} (bound)" if side == "upper" else f"{hi:.3f}"
    return f"{fit['params'][key]:.3f} [{lo_s}, {hi_s}]"


def setting_fit(fits: dict, run_dirs: list[Path]) -> tuple[dict | None, str | None]:
    """The pooled fit of these runs (several seeds), or the lone run's fit; else the refusal."""
    names = [d.name for d in run_dirs]
    if len(names) == 1:
        return fits["sigmoid"].get(names[0]), fits["sigmoid_refused"].get(names[0])
    for kind in ("setting_sigmoid", "setting_refused"):
        for key, value in fits[kind].items():
            if sorted(key[key.index("(") + 1:-1].split(", ")) == sorted(names):
                return (value, None) if kind == "setting_sigmoid" else (None, value)
    return None, "runs were not grouped as one setting"


def short(reason: str | None) -> str:
    """A refusal's first clause: the table cell; the report has the whole reason."""
    return "refused: " + (reason or "?").removeprefix("sigmoid: ").split(", so")[0].split(". ")[0]


def first_reaching(rows: list[dict], target: float) -> float | None:
    """Cumulative FLOPs at the first evaluation that reached the target accuracy."""
    return next((r["cumulative_flops"] for r in rows if (r["val_mean_at_k"] or 0) >= target), None)


def table(recipes: dict[str, list[Path]], fits: dict, target: float) -> str:
    lines = [f"| recipe | base mean@k | final mean@k per seed (± binomial SE) | FLOPs to {target} per seed | A [95%] "
             "| B [95%] | FLOPs per run | s/step |", "|---|---|---|---|---|---|---|---|"]
    for name, run_dirs in recipes.items():
        bases, finals, reach, flops, secs = [], [], [], [], []
        for run_dir in run_dirs:
            rows = read_metrics(run_dir)
            evals = [r for r in rows if r["val_mean_at_k"] is not None]
            n = json.loads((run_dir / "run.json").read_text()).get("val_problems_used", 200)
            final = evals[-1]["val_mean_at_k"]
            bases.append(evals[0]["val_mean_at_k"])
            finals.append(f"{final:.3f} (± {math.sqrt(final * (1 - final) / n):.3f})")
            hit = first_reaching(evals, target)
            reach.append(f"{hit:.2g}" if hit is not None else "not reached")
            steps = [r for r in rows if r["step"] > 0]
            flops.append(steps[-1]["cumulative_flops"])
            secs.append(steps[-1]["cumulative_s"] / len(steps))
        fit, refused = setting_fit(fits, run_dirs)
        a, b = (interval(fit, "A"), interval(fit, "B")) if fit else (short(refused), "-")
        lines.append(f"| {name} | {', '.join(f'{x:.3f}' for x in bases)} | {', '.join(finals)} | {', '.join(reach)} "
                     f"| {a} | {b} | {sum(flops) / len(flops):.3g} | {sum(secs) / len(secs):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/recipes", help="directory of the recipe runs and the report")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="*", choices=sorted(RECIPES), help="run these recipes only")
    ap.add_argument("--fit-until", type=float, default=0.5, help="extrapolation check fraction for analyze")
    ap.add_argument("--target", type=float, default=0.9, help="accuracy whose first reaching is reported")
    ap.add_argument("extra", nargs="*", help="overrides for every recipe, after --, e.g. -- steps=40")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(RECIPES)
    recipes = {n: [run_recipe(n, RECIPES[n], out, seed, args.extra) for seed in args.seeds] for n in names}
    report = out / "report"
    subprocess.run([RLSCALE, "analyze", *[str(d) for dirs in recipes.values() for d in dirs], "--out", str(report),
                    "--fit-until", str(args.fit_until)], cwd=ROOT, check=True)
    fits = json.loads((report / "fits.json").read_text())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    text = (f"Recipes on the quickstart task, seeds {args.seeds}, measured on {cpu} "
            f"(`{' '.join(sys.argv)}`)\n\n{table(recipes, fits, args.target)}\n\nPairwise comparisons and the extrapolation "
            f"checks: {report / 'report.md'}\n")
    (out / "recipes.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
