"""Compare RL settings by their ScaleRL compute curves (Khatri et al. 2025).

Runs are grouped by a config column (e.g. algo.lr, algo.loss.name, rollout.group_size); each
group's seeds are pooled into one sigmoid, bootstrapped over runs where a group has 3+.
Prints A, B and C_mid with 95% intervals and which differences are inside the noise
(B only compared where the A intervals agree).

    .venv/bin/python scripts/compare_algorithms.py runs/lr-* --by algo.lr
    .venv/bin/python scripts/compare_algorithms.py --demo        # synthetic runs, no GPU needed
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rlscale.analysis import FitRefused, compare_fits, fit_sigmoid, load_runs


def write_demo_runs(root: Path) -> list[Path]:
    """Two learning rates x three seeds: the higher rate reaches the same ceiling sooner."""
    from rlscale.analysis.synthetic import write_run

    paths = []
    for lr, c_mid in ((1e-3, 2e13), (3e-4, 6e13)):
        for seed in range(3):
            paths.append(write_run(root / f"lr{lr:g}-s{seed}", A=0.7, c_mid=c_mid, seed=seed, steps=200,
                                   eval_every=5, overrides=(f"algo.lr={lr}",)))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="*")
    ap.add_argument("--by", default="algo.lr", help="config column that defines the groups (default algo.lr)")
    ap.add_argument("--metric", default="val_mean_at_k")
    ap.add_argument("--compute", default="cumulative_flops")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--demo", action="store_true", help="write synthetic runs to a temp dir and compare those")
    args = ap.parse_args()
    if args.demo:
        args.run_dirs = write_demo_runs(Path(tempfile.mkdtemp(prefix="rlscale-demo-")))
    if not args.run_dirs:
        ap.error("give run directories, or --demo")

    runs = load_runs(args.run_dirs)
    if args.by not in runs:
        ap.error(f"--by {args.by!r} is not a column; config columns: {', '.join(runs.attrs['config_columns'])}")
    points = runs[runs[args.metric].notna()]
    fits = {}
    for value, group in points.groupby(args.by, sort=True):
        label = f"{args.by}={value}"
        C, R = group[args.compute].to_numpy(float), group[args.metric].to_numpy(float)
        try:
            fits[label] = fit_sigmoid(C, R, groups=group["run"].to_numpy(), n_boot=args.n_boot)
        except FitRefused as e:
            print(f"{label}: not fitted: {e}")
            continue
        f, ci = fits[label], fits[label].ci()
        print(f"{label:>24}  runs={group['run'].nunique()}  "
              + "  ".join(f"{k}={f.params[k]:.3g} [{ci[k][0]:.3g}, {ci[k][1]:.3g}]" for k in ("A", "B", "C_mid"))
              + f"  (bootstrap over {f.resampled})")
    for row in compare_fits(fits):
        print(f"- {row['a']} vs {row['b']}: " + "; ".join(filter(None, (row["A"], row["B"], row["C_mid"]))))
    if len(fits) < 2:
        print("fewer than two fitted groups: nothing to compare")


if __name__ == "__main__":
    main()
