"""Time the ScaleRL sigmoid fit on 10,000 points: a plain single fit against the same fit
with 1,000 bootstrap resamples, and print both with their ratio (the figure to compare
across machines, because the machine may be shared).

    .venv/bin/python scripts/bench_analysis.py [--points 10000] [--boot 1000] [--repeats 3]

The bootstrap is cheap because each resample is one warm-started robust refit from the
point estimate (no grid of starts), with an exact Jacobian and BLAS held to one thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlscale.analysis import fit_sigmoid
from rlscale.analysis.sigmoid import sigmoid_curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--boot", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings of each")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    A, B, c_mid, r0 = 0.7, 1.5, 3e13, 0.1
    C = np.geomspace(1e12, 1e15, args.points)
    R = rng.binomial(800, sigmoid_curve([A, B, c_mid], C, r0)) / 800  # 200 problems x 4 samples

    def best_time(n_boot: int):
        times, fit = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fit = fit_sigmoid(C, R, r0=r0, n_boot=n_boot)
            times.append(time.perf_counter() - t0)
        return min(times), fit

    single_s, fit = best_time(0)
    boot_s, boot_fit = best_time(args.boot)
    ci = boot_fit.ci()
    print(f"sigmoid fit to {args.points:,} points (true A={A}, B={B}, C_mid={c_mid:.0e}); best of {args.repeats}")
    print(f"  single fit:                  {single_s:8.3f} s   A={fit.params['A']:.4f}")
    print(f"  with {len(boot_fit.boot):,} bootstrap resamples: {boot_s:8.3f} s   "
          f"A 95% CI [{ci['A'][0]:.4f}, {ci['A'][1]:.4f}]")
    print(f"  ratio bootstrap / single:    {boot_s / single_s:8.1f} x   "
          f"({boot_s / max(len(boot_fit.boot), 1) * 1e3:.1f} ms per resample)")
    print(f"  target: under 30 s -> {'met' if boot_s < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
