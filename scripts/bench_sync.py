"""Weight-sync cost against step time, per zoo size and weight-transfer backend.

For each zoo size, a random-initialised model of that shape (sync cost depends on the
weights' size, not their values) runs a few steps of the quickstart config once per
backend (rollout.weight_transfer), each in its own `rlscale run` process, one after
another. From metrics.jsonl (steps 2.., the first carries start-up effects) it reports the
median sync_s and step_s, their ratio, and each backend's sync time as a ratio to
object_store's in the same invocation. The issue's target: sync at most 5% of step time
on the largest zoo model.

    .venv/bin/python scripts/bench_sync.py                 # xs s m l, both backends, 6 steps
    .venv/bin/python scripts/bench_sync.py --sizes xs l --steps 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("object_store", "shared_file")


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def random_model(size: str, where: Path) -> tuple[str, int]:
    import torch
    from transformers import LlamaForCausalLM

    from rlscale.tokenizer import save_tokenizer
    from rlscale.zoo import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(size))
    model.save_pretrained(where)
    save_tokenizer(where)
    return str(where), sum(p.numel() for p in model.parameters())


def run(model: str, backend: str, steps: int, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "rlscale.cli", "run", "configs/quickstart.yaml", f"model.path={model}",
           f"run_dir={run_dir}", f"steps={steps}", f"eval.every={steps}", "eval.n_problems=16", "eval.k=1",
           "eval.at_start=false", f"rollout.weight_transfer={backend}", "progress=false"]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    return {"sync_s": statistics.median(r["sync_s"] for r in rows),
            "step_s": statistics.median(r["step_s"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["xs", "s", "m", "l"])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; {args.steps} steps per run, medians over steps 2..{args.steps}")
    print(f"{'size':>4} {'params':>9} {'backend':>12} {'sync_s':>8} {'step_s':>8} {'sync/step':>9} "
          f"{'sync vs object_store':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            model, params = random_model(size, Path(tmp) / f"model-{size}")
            base = None
            for backend in BACKENDS:
                got = run(model, backend, args.steps, Path(tmp) / f"run-{size}-{backend}")
                base = base or got["sync_s"]
                print(f"{size:>4} {params:>9,} {backend:>12} {got['sync_s']:8.4f} {got['step_s']:8.3f} "
                      f"{got['sync_s'] / got['step_s']:9.1%} {got['sync_s'] / base:19.2f}x", flush=True)


if __name__ == "__main__":
    main()
