"""`rlscale run | pretrain | analyze | sweep`: the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _cmd_run(args) -> int:
    from .config import ConfigError, load_config

    from .preflight import preflight

    overrides = list(args.overrides)
    if args.config and "=" in args.config:  # `run --resume DIR steps=100`: no config file, only overrides
        overrides.insert(0, args.config)
        args.config = None
    resume = args.resume or next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    overrides = [o for o in overrides if not o.startswith("resume=")]
    ckpt = None
    if resume:
        from pathlib import Path

        from .resume import checkpoint_to_resume, resume_config

        cfg = resume_config(Path(resume), args.config, overrides)
        ckpt, start = checkpoint_to_resume(Path(resume), cfg)
        print(f"resuming {resume} from {ckpt.name} (step {start.step} of {cfg.steps})")
    elif not args.config:
        raise ConfigError("rlscale run: give a config file (e.g. configs/quickstart.yaml), or --resume RUN_DIR")
    else:
        cfg = load_config(args.config, overrides)  # all config errors surface here, before any side effect
    preflight(cfg, resuming=ckpt is not None)  # and every input (files, Ray address), before the heavy imports
    from .orchestrator import Orchestrator

    t0 = time.time()
    orchestrator = Orchestrator(cfg)
    try:
        run_dir = orchestrator.run(resume_from=ckpt)
    except BaseException as e:  # noqa: BLE001 - reported in a few lines; run.json and error.log hold the rest
        return _run_ended_early(orchestrator, e, args.verbose)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"\nrun finished in {(time.time() - t0) / 60:.1f} min: {run_dir}")
    base = summary["base_val_mean_at_k"]
    print(f"validation mean@{summary['eval_k']}: base {'not evaluated' if base is None else f'{base:.3f}'} -> "
          f"final {summary['final_val_mean_at_k']:.3f} (SE {summary['final_val_mean_at_k_se']:.3f}) after "
          f"{summary['steps']} steps")
    if summary["final_eval_n_problems"] > summary["eval_problems"]:
        print(f"final evaluation on {summary['final_eval_n_problems']} problems: mean@{summary['eval_k']} "
              f"{summary['final_eval_mean_at_k']:.3f} (SE {summary['final_eval_mean_at_k_se']:.3f})")
    return 0


def _run_ended_early(orchestrator, error: BaseException, verbose: bool) -> int:
    """A run that raised: a failure prints its one-line error and where the traceback is
    (exit 1); Ctrl-C or SIGTERM prints how to continue (exit 130 / 143). run.json already
    says which (RunLog.close)."""
    import signal
    import traceback

    from .signals import Terminated, is_interrupt

    run_log = getattr(orchestrator, "run_log", None)
    where = f" {run_log.dir}" if run_log else ""
    if is_interrupt(error):
        print(f"\nrlscale: run{where} interrupted; continue it with: rlscale run --resume{where or ' RUN_DIR'}",
              file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(error, (Terminated, SystemExit)) else signal.SIGINT)
    if verbose or run_log is None:
        traceback.print_exception(error)
    line = (str(error).strip().splitlines() or [""])[0]
    print(f"rlscale: run{where} failed: {type(error).__name__}: {line}", file=sys.stderr)
    if run_log is not None:
        print(f"rlscale: the traceback is in {run_log.dir / 'error.log'}", file=sys.stderr)
    return 1


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
    from .analysis.report_content import check_lines, zoo_lines

    try:
        res = analyze(args.run_dirs, args.out, fit_until=args.fit_until or None, zoo_paths=args.zoo or (),
                      metric=args.metric, compute=args.compute, drop_early=args.drop_early, n_boot=args.n_boot)
    except RunDirError as e:
        print(f"rlscale analyze: error: {e}", file=sys.stderr)
        return 2
    bar = "=" * 100
    print("\n".join([bar, *(check_lines(res) if res["runs"] else zoo_lines(res["zoo"])), bar]))
    print(f"report: {args.out}/report.html (and report.md, fits.json, {len(res['figures'])} PNG plots)")
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import check_finished_runs, plan_lines, plan_sweep, run_local

    if args.max_running is not None and args.max_running < 1:
        print(f"rlscale sweep: error: --max-running {args.max_running}: give at least 1", file=sys.stderr)
        return 2
    if args.max_running is not None and not (args.ray_address and args.wait):
        print("rlscale sweep: error: --max-running needs --ray-address and --wait (later runs are submitted as "
              "earlier ones end, which needs this command to keep polling)", file=sys.stderr)
        return 2
    if args.wait and not args.ray_address:
        print("rlscale sweep: error: --wait follows Ray jobs; add --ray-address http://HEAD:8265", file=sys.stderr)
        return 2
    sweep = plan_sweep(args.sweep_file, args.out)  # every run's config is validated here, before anything runs
    pretraining = sweep.spec.task == "pretrain"
    if pretraining and args.ray_address:
        print(f"rlscale sweep: error: {args.sweep_file} has task: pretrain, which runs on this machine (the models "
              "go to its zoo cache); drop --ray-address", file=sys.stderr)
        return 2
    check_finished_runs(sweep)
    print("\n".join(plan_lines(sweep)))
    if args.dry_run:
        return 0
    from .signals import Terminated, is_interrupt, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # the orchestrator holds a signal until its step ends; this covers the rest
            if pretraining:
                from .sweep_zoo import run_pretrain_sweep

                failed = run_pretrain_sweep(sweep)
            elif args.ray_address:
                from .sweep_jobs import run_jobs

                failed = run_jobs(sweep, args.ray_address, args.wait, args.max_running, args.poll_s)
            else:
                failed = run_local(sweep)
    except (KeyboardInterrupt, SystemExit) as e:
        if not is_interrupt(e):
            raise
        print(f"\nrlscale sweep: interrupted. Finished runs are kept, and a stopped run continues from its newest "
              f"checkpoint: run `rlscale sweep {args.sweep_file}` again (status in {sweep.plan_file})",
              file=sys.stderr)
        return 143 if isinstance(e, (Terminated, SystemExit)) else 130
    done = sum(r.record["status"] == "finished" for r in sweep.runs)
    print(f"sweep: {done} of {len(sweep.runs)} runs finished; plan and status in {sweep.plan_file}")
    if failed:
        print(f"sweep: {len(failed)} run(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.name}: {r.record.get('error')}", file=sys.stderr)
        return 1
    if done == len(sweep.runs):
        print(f"analyze with: rlscale analyze {sweep.out} --out {sweep.out / 'report'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlscale", description="RL-scaling testbed for language models")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an RL experiment from a YAML config")
    run.add_argument("config", nargs="?", help="YAML config, e.g. configs/quickstart.yaml (with --resume: the "
                                               "run's own config.yaml unless given)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its newest checkpoint; overrides may "
                                                         "change steps (to extend it), logging, checkpoint, ray")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rollout.group_size=8 run_dir=runs/x")
    run.add_argument("--verbose", action="store_true",
                     help="show every vLLM and Ray log line (by default known-benign ones are dropped: README)")
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
    sw = sub.add_parser("sweep", help="run a base config over a grid or list of settings x seeds")
    sw.add_argument("sweep_file", help="sweep YAML, e.g. configs/sweep_quickstart_lr.yaml (README: Sweeps)")
    sw.add_argument("--out", help="sweep directory (instead of the file's out:)")
    sw.add_argument("--dry-run", action="store_true", help="print the plan; run and write nothing")
    sw.add_argument("--ray-address", help="submit each run as a Ray job to this cluster, e.g. http://HEAD:8265")
    sw.add_argument("--wait", action="store_true", help="with --ray-address: poll until every job has ended")
    sw.add_argument("--max-running", type=int, help="with --wait: at most this many jobs at once")
    sw.add_argument("--poll-s", type=float, default=10.0, help="seconds between job status polls (default 10)")
    sw.add_argument("--verbose", action="store_true",
                    help="show every vLLM and Ray log line (by default known-benign ones are dropped: README)")
    sw.set_defaults(fn=_cmd_sweep)
    args = parser.parse_args(argv)
    # Ray's C++ failure-signal handler in the driver prints a stack dump on SIGTERM and then
    # aborts the process at exit (rc 134) after rlscale's own clean stop; rlscale handles
    # SIGTERM itself (signals.py), so the driver goes without it. Read when ray is imported.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    if getattr(args, "verbose", False):
        from .quiet import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"  # read by init_ray and, through Ray's runtime env, by the actors

    from .config import ConfigError
    from .modelpath import ModelPathError

    try:
        return args.fn(args)
    except (ConfigError, ModelPathError, FileExistsError) as e:
        print(f"rlscale: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
