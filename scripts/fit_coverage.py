"""Measure how often the sigmoid fit's 95% intervals hold the truth, and how the
extrapolation check rules on curves with a known answer.

    .venv/bin/python scripts/fit_coverage.py --datasets 200 --boot 200 --out runs/fit_coverage.json

Coverage: synthetic runs drawn from a known ScaleRL sigmoid (A 0.8, B 1.5, C_mid a quarter
of the budget, R0 0.3) with binomial noise of 200 problems per evaluation, 16 evaluations
plus step 0, evenly spaced in compute (the usual run) or log-spaced over two decades; one
run, or three seeds of one setting (also with run-to-run shifts of N(0, 0.03)). For
comparison, the same with R0 held at the measured step-0 value.

Extrapolation check: 160-step runs evaluated every 5 steps on 500 problems, fitted on the
first half of compute. "lawful" follows the sigmoid throughout; "bends" falls 0.08 below
it after the fit window; "lawful_early" follows a sigmoid with half its gain at 3e13 FLOPs
(fit window 8e13), so less of the rise is left to predict. The verdict counts are the
check's false-failure rate and its power.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from rlscale.analysis.calibration import TRUTH, sigmoid_coverage
from rlscale.analysis.extrapolation import extrapolation_check
from rlscale.analysis.loading import load_runs
from rlscale.analysis.sigmoid import sigmoid_curve
from rlscale.analysis.synthetic import write_run


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def coverage_table(datasets: int, n_boot: int) -> list[dict]:
    rows = []
    cases = [(sp, seeds, 0.0, False) for sp in ("even", "log") for seeds in (1, 3)]
    cases += [("even", 3, 0.03, False), ("even", 1, 0.0, True), ("log", 1, 0.0, True)]
    for spacing, seeds, jitter, hold in cases:
        t0 = time.time()
        cov = sigmoid_coverage(datasets, spacing, seeds, n_problems=200, n_boot=n_boot, seed_jitter=jitter,
                               hold_r0=hold)
        row = cov.row() | {"seed_jitter": jitter, "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def check_verdicts(n_runs: int, n_boot: int) -> dict:
    def lawful(c, c_mid=6e13):
        return float(sigmoid_curve([0.85, 1.5, c_mid], [c], 0.3)[0]) if c > 0 else 0.3

    def lawful_early(c):  # half the gain already at 3e13: less gain left after the fit window
        return lawful(c, 3e13)

    cut = 0.5 * 160 * 1e12

    def bends(c):
        return lawful(c) - (0.08 * min(1.0, (c - cut) / (0.3 * cut)) if c > cut else 0.0)

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, curve in (("lawful", lawful), ("lawful_early", lawful_early), ("bends", bends)):
            counts = collections.Counter()
            for seed in range(n_runs):
                d = write_run(Path(tmp) / f"{name}-{seed}", accuracy_at=curve, steps=160, eval_every=5,
                              n_problems=500, k=1, seed=seed)
                check = extrapolation_check(load_runs([d]), 0.5, "val_mean_at_k", "cumulative_flops", n_boot=n_boot)
                counts[check.get("verdict", "refused")] += 1
            out[name] = dict(counts)
            print(name, dict(counts), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=int, default=200)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--check-runs", type=int, default=40)
    ap.add_argument("--out", default="runs/fit_coverage.json")
    ap.add_argument("--checks-only", action="store_true", help="skip the coverage table")
    args = ap.parse_args()
    print(f"cpu: {cpu_name()}; truth {TRUTH}")
    result = {"cpu": cpu_name(), "truth": TRUTH, "datasets": args.datasets, "n_boot": args.boot,
              "coverage": [] if args.checks_only else coverage_table(args.datasets, args.boot),
              "extrapolation_check": check_verdicts(args.check_runs, args.boot)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2,
                                         default=lambda o: o.item() if isinstance(o, np.generic) else o))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
