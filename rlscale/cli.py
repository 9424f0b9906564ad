"""`rlscale run | pretrain`: the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _cmd_run(args) -> int:
    from .config import load_config

    cfg = load_config(args.config, args.overrides)  # all config errors surface here, before any side effect
    from .orchestrator import Orchestrator

    t0 = time.time()
    run_dir = Orchestrator(cfg).run()
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"\nrun finished in {(time.time() - t0) / 60:.1f} min: {run_dir}")
    base = summary["base_val_mean_at_k"]
    print(f"validation mean@{summary['eval_k']}: base {'not evaluated' if base is None else f'{base:.3f}'} -> "
          f"final {summary['final_val_mean_at_k']:.3f} (SE {summary['final_val_mean_at_k_se']:.3f}) after "
          f"{summary['steps']} steps")
    return 0


def _cmd_pretrain(args) -> int:
    from .config import load_config
    from .pretrain import pretrain

    cfg = load_config(args.config, [f"pretrain.{o}" for o in args.overrides]).pretrain
    path = pretrain(args.size, cfg)
    print(path)
    return 0


def _cmd_analyze(args) -> int:
    from .analysis.analyze import analyze
    from .analysis.loading import RunDirError
    from .analysis.report_content import check_lines

    try:
        res = analyze(args.run_dirs, args.out, fit_until=args.fit_until or None, zoo_paths=args.zoo or (),
                      metric=args.metric, compute=args.compute, drop_early=args.drop_early, n_boot=args.n_boot)
    except RunDirError as e:
        print(f"rlscale analyze: error: {e}", file=sys.stderr)
        return 2
    bar = "=" * 100
    print("\n".join([bar, *check_lines(res), bar]))
    print(f"report: {args.out}/report.html (and report.md, fits.json, {len(res['figures'])} PNG plots)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlscale", description="RL-scaling testbed for language models")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an RL experiment from a YAML config")
    run.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rollout.group_size=8 run_dir=runs/x")
    run.set_defaults(fn=_cmd_run)
    pre = sub.add_parser("pretrain", help="pre-train a zoo base model (cached)")
    pre.add_argument("--size", required=True, choices=["xs", "s", "m", "l"])
    pre.add_argument("--config", help="take the pretrain: section of this run config")
    pre.add_argument("overrides", nargs="*", help="overrides of the pretrain settings, e.g. steps=400")
    pre.set_defaults(fn=_cmd_pretrain)
    ana = sub.add_parser("analyze", help="fit scaling laws to run directories; write plots and a report")
    ana.add_argument("run_dirs", nargs="+", help="run directories (or a directory of them, e.g. runs/)")
    ana.add_argument("--out", required=True, help="report directory (created)")
    ana.add_argument("--fit-until", type=float, default=0.5,
                     help="extrapolation check: fit on this fraction of each run's compute (0 = skip; default 0.5)")
    ana.add_argument("--zoo", nargs="*", help="zoo checkpoints, or a directory of them (~/.cache/rlscale/zoo)")
    ana.add_argument("--metric", default="val_mean_at_k", help="reward column of metrics.jsonl (default val_mean_at_k)")
    ana.add_argument("--compute", default="cumulative_flops", help="compute column (cumulative_flops or cumulative_s)")
    ana.add_argument("--drop-early", type=float, default=0.0,
                     help="leave out the first fraction of each run's compute from the sigmoid fit (ScaleRL)")
    ana.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per fit (default 1000)")
    ana.set_defaults(fn=_cmd_analyze)
    args = parser.parse_args(argv)

    from .config import ConfigError
    from .modelpath import ModelPathError

    try:
        return args.fn(args)
    except (ConfigError, ModelPathError, FileExistsError) as e:
        print(f"rlscale: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
