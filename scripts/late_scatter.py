"""Does a run's late curve scatter more than its evaluations' own noise? (docs/study.md, part 1c)

    .venv/bin/python scripts/late_scatter.py runs/study/sizes_long_wide_eval [--from-step 120]

For each run, the evaluations from --from-step on: their standard deviation, their mean SE
(`val_mean_at_k_se`), a chi-square test of "the policy is fixed and only the evaluation is
noisy" (sum of ((v - mean) / se)^2 over n points, n - 1 degrees of freedom), and the excess
scatter sqrt(sd^2 - se^2), the part that is the policy's own movement. Reads run logs only.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import chi2

from rlscale.analysis.loading import expand_run_paths, load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="run directories, or a sweep's directory")
    ap.add_argument("--from-step", type=int, default=120, help="first step of the late window")
    args = ap.parse_args()
    print("| run | evaluations | sd | mean SE | chi2 (dof) | p | excess sd |")
    print("|---|---|---|---|---|---|---|")
    for path in expand_run_paths(args.paths):
        df = load_run(path)
        late = df[(df["step"] >= args.from_step) & df["val_mean_at_k"].notna()]
        values, ses = late["val_mean_at_k"].to_numpy(float), late["val_mean_at_k_se"].to_numpy(float)
        if len(values) < 2:
            print(f"| {df['run'].iloc[0]} | {len(values)} | too few evaluations from step {args.from_step} |||||")
            continue
        sd = values.std(ddof=1)
        stat = float(np.sum(((values - values.mean()) / ses) ** 2))
        excess = np.sqrt(max(sd ** 2 - ses.mean() ** 2, 0.0))
        print(f"| {df['run'].iloc[0]} | {len(values)} | {sd:.3f} | {ses.mean():.4f} | {stat:.1f} ({len(values) - 1}) "
              f"| {chi2.sf(stat, len(values) - 1):.2g} | {excess:.3f} |")


if __name__ == "__main__":
    main()
