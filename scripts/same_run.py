"""Do two run directories hold the same run? Compares metrics.jsonl row by row, every field
but the wall-clock ones, and the final accuracy in summary.json.

    .venv/bin/python scripts/same_run.py RUN_A RUN_B

docs/study.md uses it to check that a run continued with `rlscale run --resume DIR steps=N`
equals the same run made from the start. Exits 1 if they differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Seconds and timestamps differ between any two executions; everything else must not.
WALL_CLOCK = {"time", "cumulative_s", "step_s", "rollout_s", "reward_s", "learner_s", "sync_s", "engine_idle_s",
              "learner_idle_s"}


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> int:
    a, b = (Path(p) for p in sys.argv[1:3])
    ra, rb = rows(a), rows(b)
    differing = [(x["step"], k) for x, y in zip(ra, rb) for k in sorted(x.keys() | y.keys())
                 if k not in WALL_CLOCK and x.get(k) != y.get(k)]
    final = [json.loads((d / "summary.json").read_text())["final_val_mean_at_k"] for d in (a, b)]
    print(f"rows: {len(ra)} and {len(rb)}; rows with a differing field (wall-clock fields aside): "
          f"{len({s for s, _ in differing})}; final val mean@k {final[0]} and {final[1]}")
    for step, key in differing[:10]:
        print(f"  step {step}: {key} differs")
    return 0 if len(ra) == len(rb) and not differing and final[0] == final[1] else 1


if __name__ == "__main__":
    sys.exit(main())
