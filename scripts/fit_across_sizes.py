"""Fit how RL scales across base-model sizes (Tan et al. 2025) and, given the zoo, the
pre-training law (Hoffmann et al. 2022, fitted per Besiroglu et al. 2024) with its
compute-optimal allocation.

    .venv/bin/python scripts/fit_across_sizes.py runs/size-* --zoo ~/.cache/rlscale/zoo
    .venv/bin/python scripts/fit_across_sizes.py --demo        # synthetic runs and zoo
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rlscale.analysis import FitRefused, compute_optimal, fit_across_sizes, fit_chinchilla, load_runs, load_zoo
from rlscale.analysis.across_sizes import k_of_n


def write_demo(root: Path) -> tuple[list[Path], Path]:
    """Runs on four base-model sizes whose error follows Tan et al.'s law (k_max = 0.3,
    N0 = 1e6), and a four-size zoo that follows a Chinchilla law."""
    from rlscale.analysis.synthetic import ZOO_SIZES, write_run, write_zoo_model

    runs = []
    for size, n in ZOO_SIZES.items():
        k = k_of_n(0.3, 1e6, n)
        e0 = np.log(0.6) + k * np.log(1e12)  # 60% error after 1e12 FLOPs of RL for every size

        def accuracy_at(c, k=k, e0=e0):
            return 1 - min(0.95, float(np.exp(-k * np.log(max(c, 1.0)) + e0)))

        runs.append(write_run(root / "runs" / f"size-{size}", n_params=n, steps=150, eval_every=5,
                              flops_per_step=2e12 * n / 137_856, accuracy_at=accuracy_at,
                              overrides=(f"model.zoo_size={size}",)))
        write_zoo_model(root / "zoo", size)
    return runs, root / "zoo"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="*")
    ap.add_argument("--zoo", nargs="*", default=[])
    ap.add_argument("--metric", default="val_mean_at_k")
    ap.add_argument("--compute", default="cumulative_flops")
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--demo", action="store_true")
    args = ap.parse_args()
    if args.demo:
        args.run_dirs, zoo_dir = write_demo(Path(tempfile.mkdtemp(prefix="rlscale-demo-")))
        args.zoo = [zoo_dir]
    if not args.run_dirs:
        ap.error("give run directories, or --demo")

    runs = load_runs(args.run_dirs)
    pts = runs[runs[args.metric].notna() & (runs[args.compute] > 0)]
    print(f"RL across sizes (Tan et al.): {pts['n_params'].nunique()} base-model sizes, {len(pts)} evaluations")
    try:
        fit = fit_across_sizes(pts["n_params"], pts[args.compute], pts[args.metric],
                               groups=pts["run"].to_numpy(), n_boot=args.n_boot)
        ci = fit.ci()
        for name in ("k_max", "N0"):
            print(f"  {name} = {fit.params[name]:.4g} [{ci[name][0]:.4g}, {ci[name][1]:.4g}]")
        for n in fit.fixed["sizes"]:
            k = k_of_n(fit.boot[:, 0], fit.boot[:, 1], n)
            print(f"  N = {n:>12,.0f}: slope k(N) = {k_of_n(fit.params['k_max'], fit.params['N0'], n):.4f} "
                  f"[{np.percentile(k, 2.5):.4f}, {np.percentile(k, 97.5):.4f}]")
    except FitRefused as e:
        print(f"  not fitted: {e}")

    if args.zoo:
        zoo = load_zoo(args.zoo)
        trained = zoo[zoo["tokens"] >= 0.1 * zoo.groupby("model")["tokens"].transform("max")]
        print(f"Chinchilla law over {zoo['model'].nunique()} zoo models:")
        try:
            chin = fit_chinchilla(trained["n_params"], trained["tokens"], trained["val_loss"], n_boot=100)
        except FitRefused as e:
            print(f"  not fitted: {e}")
            return
        ci = chin.ci()
        print("  " + "  ".join(f"{k}={v:.4g} [{ci[k][0]:.3g}, {ci[k][1]:.3g}]" for k, v in chin.params.items()))
        for row in compute_optimal(chin, [1e15, 1e17, 1e19]):
            n, d = row["N_opt"], row["D_opt"]
            print(f"  C = {row['C']:.0e} FLOPs: N_opt = {n[0]:.3g} [{n[1]:.3g}, {n[2]:.3g}], "
                  f"D_opt = {d[0]:.3g} [{d[1]:.3g}, {d[2]:.3g}] tokens")


if __name__ == "__main__":
    main()
