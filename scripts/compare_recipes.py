"""Run the quickstart task under several RL recipes (same seed, same steps) and compare them.

Each recipe is `rlscale run configs/quickstart.yaml` with its overrides, in its own
process (its own local Ray), into OUT/<recipe>; a recipe whose run already finished is
skipped, so an interrupted comparison continues where it stopped. Then
`rlscale analyze OUT/<recipe>... --out OUT/report` fits every run's ScaleRL curve, and this
script prints a table (final accuracy with its binomial SE, fitted A and B with 95%
intervals where the fit is accepted, FLOPs and seconds per step) and writes it to
OUT/recipes.md.

    .venv/bin/python scripts/compare_recipes.py --out runs/recipes
    .venv/bin/python scripts/compare_recipes.py --out runs/recipes --only grpo cispo -- steps=40
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
    run_dir = out / name
    if (run_dir / "summary.json").is_file():
        print(f"[{name}] finished before; skipped")
        return run_dir
    if run_dir.exists():
        sys.exit(f"{run_dir} holds an unfinished run; remove it to rerun {name}")
    cmd = [RLSCALE, "run", "configs/quickstart.yaml", f"run_dir={run_dir}", f"seed={seed}", f"name={name}",
           "progress=false", *overrides, *extra]
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    print(f"[{name}] {time.time() - t0:.0f} s", flush=True)
    return run_dir


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def interval(fit: dict, key: str) -> str:
    lo, hi = fit["ci95"][key]
    return f"{fit['params'][key]:.3f} [{lo:.3f}, {hi:.3f}]"


def table(run_dirs: dict[str, Path], fits: dict) -> str:
    lines = ["| recipe | base -> final mean@k (± SE) | A [95%] | B [95%] | total FLOPs | s/step |",
             "|---|---|---|---|---|---|"]
    for name, run_dir in run_dirs.items():
        rows = read_metrics(run_dir)
        evals = [r for r in rows if r["val_mean_at_k"] is not None]
        n = json.loads((run_dir / "run.json").read_text()).get("val_problems_used", 200)
        base, final = evals[0]["val_mean_at_k"], evals[-1]["val_mean_at_k"]
        se = math.sqrt(final * (1 - final) / n)
        steps = [r for r in rows if r["step"] > 0]
        fit = fits["sigmoid"].get(run_dir.name)
        if fit:
            a, b = interval(fit, "A"), interval(fit, "B")
        else:
            a, b = f"refused: {fits['sigmoid_refused'].get(run_dir.name, '?')}", "-"
        lines.append(f"| {name} | {base:.3f} -> {final:.3f} (± {se:.3f}) | {a} | {b} | "
                     f"{steps[-1]['cumulative_flops']:.3g} | {steps[-1]['cumulative_s'] / len(steps):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/recipes", help="directory of the recipe runs and the report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", choices=sorted(RECIPES), help="run these recipes only")
    ap.add_argument("--fit-until", type=float, default=0.75, help="extrapolation check fraction for analyze")
    ap.add_argument("extra", nargs="*", help="overrides for every recipe, after --, e.g. -- steps=40")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(RECIPES)
    run_dirs = {n: run_recipe(n, RECIPES[n], out, args.seed, args.extra) for n in names}
    report = out / "report"
    subprocess.run([RLSCALE, "analyze", *map(str, run_dirs.values()), "--out", str(report),
                    "--fit-until", str(args.fit_until)], cwd=ROOT, check=True)
    fits = json.loads((report / "fits.json").read_text())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    text = (f"Recipes on the quickstart task, seed {args.seed}, measured on {cpu} "
            f"({len(names)} runs; `{' '.join(sys.argv)}`)\n\n{table(run_dirs, fits)}\n")
    (out / "recipes.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
