"""Pre-train one zoo size over several seeds and report the spread of held-out accuracy.

A base model is only a good RL starting point if its quality is not an accident of the
seed, so this prints greedy and T=1 accuracy (overall and per difficulty) for each seed,
then the mean and range. Checkpoints go to the usual zoo cache, so a re-run is free.

    .venv/bin/python scripts/zoo_sweep.py --size xs --seeds 0 1 2 --jobs 2 \
        steps=3000 max_difficulty=2 answer_noise=0.5
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _pretrain_one(size: str, overrides: list[str], seed: int, threads: int) -> dict:
    import torch

    from rlscale.config import load_config
    from rlscale.pretrain import pretrain

    torch.set_num_threads(threads)
    cfg = load_config(None, [f"pretrain.{o}" for o in overrides] + [f"pretrain.seed={seed}"]).pretrain
    path = pretrain(size, cfg, log=lambda msg: None)
    return {"seed": seed, "path": str(path), **json.loads((Path(path) / "base_eval.json").read_text())}


def _fmt(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{mean:.3f} [{min(values):.3f}, {max(values):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="xs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained at once")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per job")
    ap.add_argument("overrides", nargs="*", help="pretrain settings, e.g. steps=3000 answer_noise=0.5")
    args = ap.parse_args()

    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_pretrain_one, *zip(*[(args.size, args.overrides, s, args.threads)
                                                         for s in args.seeds])))
    print(f"size {args.size}, settings {' '.join(args.overrides) or '(defaults)'}")
    print(f"{'seed':>4}  {'val_loss':>8}  {'greedy':>6}  {'T=1':>6}  {'train_s':>7}  per difficulty (greedy / T=1)")
    for r in results:
        by = r["heldout_by_difficulty"]
        per_d = "  ".join(f"d{d}: {by['greedy'][d]:.2f}/{by['sampled'][d]:.2f}" for d in by["greedy"])
        print(f"{r['seed']:>4}  {r['final_val_loss']:>8.3f}  {r['heldout_accuracy_greedy']:>6.3f}  "
              f"{r['heldout_accuracy_sampled']:>6.3f}  {r['train_seconds']:>7.0f}  {per_d}")
    print(f"greedy  mean [min, max]: {_fmt([r['heldout_accuracy_greedy'] for r in results])}")
    print(f"T=1     mean [min, max]: {_fmt([r['heldout_accuracy_sampled'] for r in results])}")


if __name__ == "__main__":
    main()
