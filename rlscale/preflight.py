"""Input checks that run before anything heavy: `rlscale run` calls preflight() right after
load_config, before torch, vLLM or Ray are imported and before Ray starts, so a bad input
costs a second (exit 2, a message naming the field) instead of a minute and a traceback.

Imports only the standard library and rlscale's light modules: `python -c 'import
rlscale.preflight'` must stay well under a second.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import socket
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlparse

from .config import ConfigError, RunConfig
from .metric_writers import missing_package
from .modelpath import check_local_checkpoint, looks_local
from .runlog import logged_steps

# What transformers (the learner) and vLLM (the engines) load weights from.
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json",
                   "pytorch_model.bin.index.json")
# Either a fast tokenizer file, or a config plus the slow tokenizer's vocabulary files.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CONNECT_TIMEOUT_S = 2.0
WINDOW = 2000  # draws over which check_val_problems measures the rate of new problems
VAL_CHECK_S = 3.0  # draw time check_val_problems spends at most; past it the run's own draw decides


def preflight(cfg: RunConfig, resuming: bool = False) -> None:
    """Every input the run will need, checked now. Raises ConfigError naming the field.
    resuming: run_dir is the run being continued (rlscale/resume.py checked it)."""
    check_job_run_dir(cfg.run_dir)
    if cfg.run_dir and not resuming:
        check_run_dir(Path(cfg.run_dir))
    if cfg.model.path:
        check_model_files(cfg.model.path)
    check_logging(cfg)
    check_ray_address(cfg.ray.address)
    # eval.n_problems and eval.final_n_problems: load_config checks them (config.check_val_problems).


def check_logging(cfg: RunConfig) -> None:
    """The package of each logging backend selected must be installed (found, not imported:
    importing them takes seconds)."""
    selected = ((cfg.logging.tensorboard, "logging.tensorboard", "tensorboard"),
                (cfg.logging.wandb, "logging.wandb", "wandb"))
    for on, field, package in selected:
        if on and importlib.util.find_spec(package) is None:
            raise missing_package(field, package)


def ray_job_runtime_env() -> dict:
    """The runtime_env of the Ray job whose entrypoint this process is ({} outside a job)."""
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
    except ValueError:
        return {}
    return job.get("runtime_env") or {}


def check_job_run_dir(run_dir: str | None) -> None:
    """A Ray job with a working_dir runs in Ray's copy of it under the session's temp dir
    (runtime_resources/working_dir_files/...), which Ray deletes: a relative run_dir would
    land there, where nobody finds it. Such a job needs an absolute run_dir."""
    if ray_job_runtime_env().get("working_dir") is None or (run_dir and Path(run_dir).expanduser().is_absolute()):
        return
    raise ConfigError(f"run_dir={run_dir!r}: this Ray job runs in Ray's temporary copy of its working_dir "
                      f"({os.getcwd()}), so a relative run directory would be written there and lost; give "
                      "an absolute path on a filesystem the user can reach, e.g. run_dir=/shared/runs/NAME")


def check_run_dir(run_dir: Path) -> None:
    p = run_dir.expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"run_dir={str(run_dir)!r} is a file, not a directory; pick another run_dir")
    if p.is_dir() and logged_steps(p):
        raise ConfigError(f"run_dir={str(run_dir)!r} already holds a run (metrics.jsonl has logged steps); "
                          "pick another run_dir")
    parent = p if p.is_dir() else p.parent
    while not parent.exists():  # run_dir's missing parents are created: the first existing one counts
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir={str(run_dir)!r}: {parent} is not a writable directory")


def check_model_files(path: str) -> None:
    """A local checkpoint directory must hold config.json, weights the learner and vLLM can
    load, and the tokenizer files vLLM loads. (A hub id is checked later, by
    modelpath.check_model_path.)"""
    if not looks_local(path):
        check_hub_id(path)
        return
    p = check_local_checkpoint(path)
    try:
        archs = json.loads((p / "config.json").read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"model.path={path!r}: config.json is not a JSON mapping ({e})") from None
    if archs and not any(str(a).endswith("ForCausalLM") for a in archs):
        raise ConfigError(f"model.path={path!r} is a {archs[0]}, not a causal LM (*ForCausalLM)")
    weights = sorted({f for pat in WEIGHT_PATTERNS for f in glob.glob(str(p / pat))})
    if not weights:
        raise ConfigError(f"model.path={path!r} has config.json but no weights: none of "
                          f"{', '.join(WEIGHT_PATTERNS)}; save the model with save_pretrained() into it")
    for index in (w for w in weights if w.endswith(".index.json")):
        try:
            shards = set(json.loads(Path(index).read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise ConfigError(f"model.path={path!r}: {Path(index).name} is damaged ({e})") from None
        missing = sorted(s for s in shards if not (p / s).is_file())
        if missing:
            raise ConfigError(f"model.path={path!r}: weight shards listed in {Path(index).name} are missing: "
                              f"{', '.join(missing[:5])}")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(f"model.path={path!r} has no tokenizer (neither {' nor '.join(TOKENIZER_FILES)}); "
                          "the rollout engine (vLLM) loads it from model.path: save the tokenizer there too "
                          "(tokenizer.save_pretrained)")


def check_hub_id(repo_id: str, timeout_s: float = 3.0) -> None:
    """A hub id must be in the local Hugging Face cache or the hub reachable; otherwise
    transformers and vLLM would retry the download for minutes. With the hub unreachable
    and the model cached, the run goes offline (HF_HUB_OFFLINE=1, inherited by the actors
    of a Ray it starts), so nothing waits on the network."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        reachable, why = False, "HF_HUB_OFFLINE is set"
    else:
        url = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                     timeout=timeout_s).close()
            reachable, why = True, ""
        except OSError as e:
            reachable, why = False, f"{constants.ENDPOINT} is unreachable ({e})"
    if reachable:
        return
    if cached:
        os.environ["HF_HUB_OFFLINE"] = "1"
        return
    raise ConfigError(f"model.path={repo_id!r} is not a local directory, not in the Hugging Face cache, and "
                      f"cannot be downloaded: {why}. Download it where there is network (huggingface-cli "
                      f"download {repo_id} --local-dir DIR) and set model.path=DIR")


def _ray_current_cluster() -> str | None:
    """The address `ray start` recorded last (what ray.init('auto') tries after RAY_ADDRESS)."""
    f = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    return f.read_text().strip() or None if f.is_file() else None


def _raylet_gcs_address() -> str | None:
    """ray.init('auto')'s last resort: a running raylet's --gcs-address flag (from /proc)."""
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            args = Path(cmdline).read_bytes().split(b"\0")
        except OSError:
            continue
        for a in args:
            if a.startswith(b"--gcs-address="):
                return a.split(b"=", 1)[1].decode() or None
    return None


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    u = urlparse(address if "://" in address else f"tcp://{address}")
    return u.hostname or "127.0.0.1", u.port or default_port


def check_ray_address(address: str | None) -> None:
    """ray.address must reach a running cluster. Starts and stops nothing: resolves the
    address the way ray.init does, then opens (and closes) one TCP connection."""
    env = os.environ.get("RAY_ADDRESS") or None
    if address is None and env is None:
        return  # a local Ray is started for the run
    if address in (None, "auto") and env:
        field, target = f"ray.address={address or 'null'} (RAY_ADDRESS={env})", env
    elif address == "auto":
        target = _ray_current_cluster() or _raylet_gcs_address()
        field = "ray.address=auto"
        if target is None:
            raise ConfigError(f"{field}: no running Ray cluster on this machine (no RAY_ADDRESS, no "
                              f"{Path(os.environ.get('RAY_TMPDIR', '/tmp')) / 'ray' / 'ray_current_cluster'}, "
                              "no raylet process); start one with `ray start --head`, or set ray.address=null "
                              "to start a local Ray for this run")
        field += f" (found {target})"
    else:
        field, target = f"ray.address={address}", str(address)
    default_port = 10001 if target.startswith("ray://") else 6379
    host, port = _host_port(target, default_port)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"{field}: cannot connect to {host}:{port} ({e.strerror or type(e).__name__}); is the "
                          "Ray cluster running? Set ray.address=null to start a local Ray for this run") from None


def check_val_problems(cfg: RunConfig) -> None:
    """The validation split must hold the run's distinct problems: the larger of
    eval.n_problems and eval.final_n_problems (the draw is prefix-stable, so that covers
    both). Draws them as the run will (collect.draw_problems: seeds eval.seed, eval.seed+1,
    ... up to 20n draws, distinct by prompt), but stops early once the rest of those draws
    cannot find the problems still missing: a draw is new with probability the unseen
    problems' share, which only falls as problems are seen, so the rate of new ones in the
    last WINDOW draws (at its upper 3-sigma bound) times the draws left bounds what is still
    to come, whatever the problems' distribution. Turns a futile draw (n=100000 over 8403
    problems: 9 min) into seconds.
    """
    from rlscale_envs import make_text_env

    n = max(cfg.eval.n_problems, cfg.eval.final_n_problems or 0)
    field = "eval.final_n_problems" if (cfg.eval.final_n_problems or 0) > cfg.eval.n_problems else "eval.n_problems"
    fix = f"lower {field} or widen the environment (e.g. env.kwargs.max_difficulty)"
    env = make_text_env(cfg.env.id, cfg.env.kwargs, "val")
    seen: set = set()
    recent: deque = deque(maxlen=WINDOW)  # 1 for a draw that found a new problem
    deadline = time.monotonic() + VAL_CHECK_S
    try:
        at_most = env.unwrapped.distinct_problems_at_most()
        if at_most is not None and n > at_most:
            raise ConfigError(f"invalid config:\n  {field}={n}: the validation split of {cfg.env.id} with these "
                              f"env.kwargs holds at most {at_most} distinct problems; {fix}")
        for i in range(n * 20):  # collect.draw_problems' bound
            env.reset(seed=cfg.eval.seed + i)
            prompt = env.unwrapped.problem.prompt
            recent.append(prompt not in seen)
            seen.add(prompt)
            if len(seen) == n:
                return
            if i % 500 == 0 and time.monotonic() > deadline:
                return  # not settled in time: the run's own draw decides (it fails with the same advice)
            if len(recent) == WINDOW and i % 500 == 0:
                k = sum(recent)
                rate_up = (k + 3 * k ** 0.5 + 3) / WINDOW
                if len(seen) + rate_up * (n * 20 - i - 1) < n:
                    break
    finally:
        env.close()
    raise ConfigError(f"invalid config:\n  {field}={n}: the validation split of {cfg.env.id} with these "
                      f"env.kwargs does not hold that many distinct problems (found {len(seen)} in {i + 1} "
                      f"draws); {fix}")


def unknown_env_kwargs(env_id: str, kwargs: dict) -> dict[str, str | None]:
    """env.kwargs keys the env's constructor does not take, each with its closest accepted
    name (or None). Read from the gymnasium entry point's signature; {} when the signature
    accepts **kwargs or cannot be read (then the constructor's own error must do)."""
    import difflib
    import inspect

    import gymnasium

    try:
        entry = gymnasium.registry[env_id].entry_point
        ctor = gymnasium.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        params = inspect.signature(ctor).parameters.values()
    except Exception:  # noqa: BLE001  (a hint only)
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return {}
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "split"]
    return {k: next(iter(difflib.get_close_matches(k, accepted, n=1)), None) for k in kwargs if k not in accepted}
