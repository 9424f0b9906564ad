"""Throughput of reward computation: the code sandbox against plain execution, and math.

Code: the canonical HumanEval solutions (repeated to --samples) scored through
``HumanEvalEnv.score_many`` (extraction, one judge process and one sandbox per sample,
every test), against the same programs (prompt + solution + test + check call) run as
plain ``python -c`` subprocesses with no sandbox and no judge, with the same number of
concurrent workers. Both must pass every sample, else the run stops.

Math: ``MathVerifier.verify_many`` on arithmetic answers (distinct pairs, half of them
right), after the verifier's child process has started.

    .venv/bin/python scripts/bench_sandbox.py [--samples 328] [--workers 2] [--math-samples 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rlscale_envs import MathVerifier
from rlscale_envs.code.humaneval import HumanEvalEnv, load_humaneval


def bench_sandboxed(env: HumanEvalEnv, problems, completions) -> float:
    started = time.perf_counter()
    results = env.score_many(problems, completions)
    seconds = time.perf_counter() - started
    failed = [info["task_id"] for reward, info in results if reward != 1.0]
    if failed:
        sys.exit(f"sandboxed run: {len(failed)} canonical solutions failed, e.g. {failed[:3]}")
    return seconds


def bench_plain(problems, workers: int) -> float:
    def run(problem) -> int:
        program = f"{problem.reference}\n\n{problem.setup[len(problem.prompt):]}\n\ncheck({problem.entry_point})\n"
        return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60).returncode

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(run, problems))
    seconds = time.perf_counter() - started
    if any(codes):
        sys.exit(f"plain run: {sum(1 for c in codes if c)} canonical solutions failed")
    return seconds


def bench_math(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    golds = rng.integers(-10**6, 10**6, size=n)
    pairs = [(str(g), str(g if i % 2 == 0 else g + 1 + i)) for i, g in enumerate(golds)]
    with MathVerifier(timeout_s=5.0) as verifier:
        verifier.verify("1", "1")  # start the child process outside the clock
        started = time.perf_counter()
        verdicts = verifier.verify_many(pairs)
        seconds = time.perf_counter() - started
    right = sum(v.correct for v in verdicts)
    if right != (n + 1) // 2:
        sys.exit(f"math run: {right} of {n} judged correct, expected {(n + 1) // 2}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=328, help="code samples (canonical HumanEval, repeated)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="concurrent samples, both code paths")
    parser.add_argument("--math-samples", type=int, default=2000)
    parser.add_argument("--backend", default="auto", choices=["auto", "bwrap", "fallback"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    all_problems = load_humaneval()
    problems = [all_problems[i % len(all_problems)] for i in range(args.samples)]
    completions = [p.reference[len(p.prompt):] for p in problems]  # the canonical function bodies
    env = HumanEvalEnv(max_workers=args.workers, sandbox_backend=args.backend)
    env.score_many(problems[:args.workers], completions[:args.workers])  # probe + warm caches, untimed
    sandboxed = bench_sandboxed(env, problems, completions)
    backend = env.pool.backend
    env.close()
    plain = bench_plain(problems, args.workers)
    math_s = bench_math(args.math_samples, args.seed)

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"host: {os.cpu_count()} CPUs; sandbox backend {backend.name} ({backend.python}); workers {args.workers}")
    print(f"{'path':<46} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
    rows = [("code, sandboxed (HumanEvalEnv.score_many)", args.samples, sandboxed),
            ("code, plain python -c (no sandbox, no judge)", args.samples, plain),
            ("math, MathVerifier.verify_many", args.math_samples, math_s)]
    for name, n, seconds in rows:
        print(f"{name:<46} {n:>8} {seconds:>8.2f} {n / seconds:>10.1f}")
    print(f"sandboxed / plain throughput ratio: {plain / sandboxed:.2f}")


if __name__ == "__main__":
    main()
