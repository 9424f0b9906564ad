"""Starting Ray for a run, or connecting to a cluster: the local Ray's size, the actors'
environment (vLLM's logging), the auth mode, and quiet.py's filters on the driver."""

from __future__ import annotations

import os

import ray

from .config import RunConfig
from .preflight import ray_job_runtime_env
from .quiet import VERBOSE_ENV, filter_forwarded_lines, install_filters, verbose


def ray_setup(cfg: RunConfig) -> tuple[str | None, int]:
    """What init_ray starts or connects to for this config: (address, logical CPUs of a
    local Ray). Runs in one process share the first run's Ray, so a sweep restarts Ray when
    the next run needs another setup."""
    # Logical CPUs: one per actor at least, even on a 2-core laptop (they take turns).
    actors = cfg.rollout.num_workers + cfg.learner.num_workers
    return cfg.ray.address, cfg.ray.num_cpus or max(os.cpu_count() or 1, actors)


def init_ray(cfg: RunConfig) -> None:
    install_filters()
    filter_forwarded_lines()  # also when Ray was started elsewhere in this process
    if ray.is_initialized():
        return
    loud = verbose()
    env_vars = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "INFO" if loud else "WARNING"),
                # vLLM logs to stdout by default; the actors' stdout reaches the driver's, where
                # it would mix with the run's own lines (piped to a file, say). stderr instead.
                "VLLM_LOGGING_STREAM": os.environ.get("VLLM_LOGGING_STREAM", "ext://sys.stderr"),
                VERBOSE_ENV: "1" if loud else "0",  # the actors install quiet.py's filters unless set
                "TOKENIZERS_PARALLELISM": "false"}
    # Actor output always comes to the driver (log_to_driver): a warning not known to be benign
    # must be seen; the known ones are dropped where they are logged (quiet.py).
    # ray.address null: RAY_ADDRESS if set (a Ray job's driver has it), as ray.init reads it.
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        # A cluster's auth mode is the cluster's: RAY_AUTH_MODE=token and its token (README).
        # In a Ray job, Ray refuses a driver env var that the job's runtime_env also sets: the job's win.
        env_vars = {k: v for k, v in env_vars.items() if k not in (ray_job_runtime_env().get("env_vars") or {})}
        ray.init(address=address, runtime_env={"env_vars": env_vars}, log_to_driver=True)
    else:
        # A local Ray we start: say its auth mode, else Ray 2.60 turns token auth on by itself
        # and warns that it did ("Token authentication is enabled ... Set RAY_AUTH_MODE=disabled
        # to opt out"). Token, as Ray's default: the head listens on the host's address. Ray
        # read its config at import, so it is re-read, as Ray does when it turns token on.
        if "RAY_AUTH_MODE" not in os.environ:
            from ray._raylet import Config

            os.environ["RAY_AUTH_MODE"] = "token"
            Config.initialize("")
        _, num_cpus = ray_setup(cfg)
        # address="local": a new Ray of this run's own. Without it ray.init joins the cluster
        # the last `ray start` on this host recorded (/tmp/ray/ray_current_cluster), which may
        # be someone else's, or gone.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": env_vars},
                 log_to_driver=True, configure_logging=True, logging_level="INFO" if loud else "WARNING")
