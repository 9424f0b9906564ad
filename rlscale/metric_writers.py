"""Optional copies of each metrics row for TensorBoard and Weights & Biases (config `logging.*`).

metrics.jsonl stays the run's record: the analysis reads it, nothing reads these copies back.
RunLog.log_step hands each row it has written to every writer, which keeps the row's numbers:
a number under its own key, and each number of a mapping (reward_by_env, policy_lag_hist)
as key/subkey. Nulls, lists, `step` (the x-axis) and `time` (each backend stamps its own wall
time) are left out. The writers live in the driver process only.

A writer that fails during a run warns once and switches itself off: the run goes on and
metrics.jsonl stays complete. A missing package is a config error instead, found before the
run starts (preflight.check_logging) and again here (make_writers).

Steps that run again. A learner restored from a checkpoint mid-run (RunLog.rewind) and a
`--resume` (RunLog.reopen) re-run the steps after the checkpoint, so their rows come again:
- TensorBoardWriter writes them again, behind a session-start marker at the first re-run step
  (SummaryWriter's purge_step); TensorBoard hides the earlier values from that step on and
  shows the re-run ones, as metrics.jsonl has them.
- WandbWriter cannot: a W&B run's history only moves forward (wandb drops a row whose step is
  below the last one it logged, and merges one at the same step into it). It skips rows at or
  below the last step it logged in this process, so W&B keeps the first values of steps re-run
  mid-run. A `--resume` is a new process: it writes a new offline-run-* directory under the same
  W&B run id (kept in <run_dir>/wandb/rlscale_run_id), starting after the checkpoint's step;
  which values of the steps both directories hold W&B keeps is decided when they are synced
  (`wandb sync`, which needs the network and is not tested here).
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

from .config import ConfigError, RunConfig

NOT_LOGGED = ("step", "time")  # the x-axis; a wall time (float32 in TensorBoard: minutes off)
INSTALL_HINT = "pip install {package} (or, in a checkout: .venv/bin/pip install -e '.[logging]')"


def scalars(row: dict) -> dict[str, float]:
    """The row's numbers by tag: key, or key/subkey for the numbers of a mapping."""
    out = {}
    for key, value in row.items():
        if key in NOT_LOGGED:
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key if sub is None else f"{key}/{sub}"] = v
    return out


def missing_package(field: str, package: str) -> ConfigError:
    return ConfigError(f"{field}=true needs the {package} package, which is not installed: "
                       f"{INSTALL_HINT.format(package=package)}; or set {field}=false")


class MetricWriter:
    """One backend. write() and close() never raise: the first failure is warned about and
    switches the writer off (subclasses implement _write and _close)."""

    field = ""  # the config field that selects it

    def __init__(self):
        self.failed = False

    def write(self, row: dict) -> None:
        if not self.failed:
            self._guard("write", self._write, row)

    def close(self) -> None:
        self._guard("close", self._close)  # after a failure too: a backend's process must end

    def _guard(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a view of the run must never end it
            if self.failed:
                return  # warned already
            self.failed = True
            warnings.warn(f"{self.field}: {what} failed ({type(e).__name__}: {e}); this writer is off for the rest "
                          "of the run (metrics.jsonl is complete)", RuntimeWarning, stacklevel=3)

    def _write(self, row: dict) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class TensorBoardWriter(MetricWriter):
    """Scalars in <run_dir>/tensorboard/, at global_step = the row's step."""

    field = "logging.tensorboard"

    def __init__(self, run_dir: Path):
        super().__init__()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise missing_package(self.field, "tensorboard") from None
        self._summary_writer = SummaryWriter
        self.dir = Path(run_dir) / "tensorboard"
        self._writer = None  # opened at the first row, whose step it needs
        self._last_step: int | None = None

    def _write(self, row: dict) -> None:
        step = row["step"]
        if self._last_step is None or step <= self._last_step:
            # A start, or steps re-run: a new event file whose session-start marker at `step`
            # makes TensorBoard drop what earlier files and sessions wrote from `step` on.
            if self._writer is not None:
                self._writer.close()
            self._writer = self._summary_writer(str(self.dir), purge_step=step)
        for tag, value in scalars(row).items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()  # one row per step, seconds apart: a live view, nothing lost if killed
        self._last_step = step

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class WandbWriter(MetricWriter):
    """A W&B run in offline mode under <run_dir>/wandb/ (nothing goes over the network; `wandb
    sync` uploads it). Its id is kept in <run_dir>/wandb/rlscale_run_id, so a `--resume`
    continues the same W&B run."""

    field = "logging.wandb"

    def __init__(self, cfg: RunConfig, run_dir: Path, resuming: bool):
        super().__init__()
        try:
            import wandb
        except ImportError:
            raise missing_package(self.field, "wandb") from None
        self._wandb = wandb
        run_dir = Path(run_dir)
        id_file = run_dir / "wandb" / "rlscale_run_id"
        # A fresh run gets a new id even where a failed start left one.
        run_id = id_file.read_text().strip() if resuming and id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        # console=off: wandb would wrap stdout, where the run's progress bar and lines go;
        # disable_git: it would look for a repository at the run dir and warn.
        settings = wandb.Settings(mode="offline", console="off", silent=True, disable_git=True)
        try:
            # Offline for the whole process, not just the run: with only wandb.init(mode="offline"),
            # wandb (0.31) still posts its own telemetry to W&B's server at exit.
            wandb.setup(settings=settings)
            self._run = wandb.init(
                dir=str(run_dir), project=cfg.logging.wandb_project,
                name=run_dir.name,  # unique, where cfg.name is shared by every run of a config
                id=run_id, resume="allow", config=cfg.model_dump(mode="json"), settings=settings)
        except BaseException:
            wandb.teardown()  # the wandb-core process it may have started
            raise
        self._last_step: int | None = None

    def _write(self, row: dict) -> None:
        step = row["step"]
        if self._last_step is not None and step <= self._last_step:
            return  # a re-run step: W&B's history only moves forward (module docstring)
        self._run.log(scalars(row), step=step)
        self._last_step = step

    def _close(self) -> None:
        try:
            self._run.finish()
        finally:
            self._wandb.teardown()  # ends the wandb-core process finish() leaves running


def make_writers(cfg: RunConfig, run_dir: Path, resuming: bool = False) -> list[MetricWriter]:
    """The writers cfg.logging selects. Raises ConfigError for a missing package; a writer
    that fails to start otherwise is warned about and left out (the run goes on).
    resuming: the run continues from a checkpoint (RunLog.reopen)."""
    starts = []
    if cfg.logging.tensorboard:
        starts.append((TensorBoardWriter.field, lambda: TensorBoardWriter(run_dir)))
    if cfg.logging.wandb:
        starts.append((WandbWriter.field, lambda: WandbWriter(cfg, run_dir, resuming)))
    writers = []
    for field, start in starts:
        try:
            writers.append(start())
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - as a failure mid-run: warn, go on without it
            warnings.warn(f"{field}: could not start ({type(e).__name__}: {e}); the run goes on without it "
                          "(metrics.jsonl is complete)", RuntimeWarning, stacklevel=2)
    return writers
