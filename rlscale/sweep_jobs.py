"""Ray cluster mode of `rlscale sweep`: each run becomes a Ray job, `rlscale run <config>`.

The run's resolved config is written to OUT/configs/<run>.yaml with ray.address=auto (the
job's driver joins the cluster it runs on) and its run_dir an absolute path under OUT, so
the sweep directory must be on a filesystem the cluster's nodes share (a local head, NFS),
and the cluster's nodes need rlscale installed with `rlscale` on their PATH (README,
"Cluster": each node's `ray start` run with the venv activated). Job ids go
into sweep.json; a later invocation follows the jobs still pending or running instead of
submitting them again.

Ray starts every submitted job's driver at once; a run's actors then wait for free CPUs.
On a cluster too small for every run at once, two half-started runs can each hold part of
what the other needs, so there --wait --max-running N submits N at a time.
"""

from __future__ import annotations

import shlex
import time
from datetime import datetime
from pathlib import Path

from .config import to_yaml
from .sweep import Sweep, SweepError, SweepRun, continue_or_move_aside, is_finished, mark_finished

AGENT_WAIT_S = 120.0  # how long a submission waits for a starting head's job agent

LIVE = ("PENDING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
LOG_TAIL_LINES = 40


def job_entrypoint(config_file: Path, resume_dir: Path | None = None) -> str:
    resume = f"--resume {shlex.quote(str(resume_dir))} " if resume_dir else ""
    return f"rlscale run {resume}{shlex.quote(str(config_file))}"


def write_job_config(sweep: Sweep, run: SweepRun) -> Path:
    """The run's validated config, as the job's `rlscale run` reads it."""
    cfg = run.config.model_copy(deep=True)
    cfg.ray.address = "auto"
    path = sweep.out / "configs" / f"{run.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg))
    return path


def connect(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001  (connection, version and auth errors all mean: not reachable)
        raise SweepError(f"--ray-address {address}: no Ray job server answered there ({type(e).__name__}: {e}); "
                         "give the head node's dashboard address, e.g. http://HEAD:8265 (the cluster needs "
                         "ray[default], which runs the job server)") from None


def _status(client, job_id: str) -> str | None:
    """The job's status, or None when the cluster does not know the id (another cluster, restarted)."""
    try:
        return str(client.get_job_status(job_id).value)
    except Exception:  # noqa: BLE001  (unknown id: RuntimeError from the server)
        return None


class JobRunner:
    def __init__(self, sweep: Sweep, address: str, log=print):
        self.sweep, self.address, self.log = sweep, address, log
        self.client = connect(address)
        self.live: dict[str, SweepRun] = {}
        self.queue: list[SweepRun] = []

    def write(self) -> None:
        self.sweep.write("ray_job", ray_address=self.address)

    def sort_runs(self) -> None:
        """Skip finished runs, follow jobs an earlier invocation submitted, queue the rest."""
        previous = self.sweep.previous_records()
        for run in self.sweep.runs:
            prev = previous.get(run.name, {})
            run.record.update({k: list(prev.get(k, [])) for k in ("moved_aside", "resumed_from")})
            status = _status(self.client, prev["job_id"]) if prev.get("job_id") else None
            if is_finished(run.run_dir):
                mark_finished(run, skipped=True)
                run.record["job_id"] = prev.get("job_id")
            elif status in LIVE:
                run.record.update(status="submitted", job_id=prev["job_id"], job_status=status,
                                  entrypoint=prev.get("entrypoint"))
                self.live[run.name] = run
                self.log(f"sweep: {run.name}: job {prev['job_id']} submitted earlier is {status}; following it")
            elif status == "SUCCEEDED" and not run.run_dir.exists():
                # The job finished, but its run directory is not visible here (no shared filesystem).
                # (A directory that is here without summary.json is a run stopped since: queued, to continue.)
                run.record.update(status="finished", job_id=prev["job_id"], job_status=status,
                                  note=f"summary.json not found under {run.run_dir} on this machine")
            else:
                self.queue.append(run)

    def submit(self, run: SweepRun) -> None:
        ckpt = continue_or_move_aside(run, self.log)
        config_file = write_job_config(self.sweep, run)
        entrypoint = job_entrypoint(config_file, run.run_dir if ckpt else None)
        try:
            meta = {"rlscale_sweep": str(self.sweep.out), "rlscale_run": run.name}
            job_id = self._submit_when_ready(entrypoint, meta)
        except Exception as e:  # noqa: BLE001  (the server's refusal, recorded like a failed run)
            run.record.update(status="failed", error=f"submission failed: {type(e).__name__}: {e}")
            self.log(f"sweep: {run.name}: submission failed: {e}")
            return
        run.record.update(status="submitted", job_id=job_id, job_status="PENDING", entrypoint=entrypoint,
                          submitted=datetime.now().isoformat(timespec="seconds"))
        self.live[run.name] = run
        self.log(f"sweep: {run.name}: submitted as job {job_id}: {entrypoint}")

    def _submit_when_ready(self, entrypoint: str, metadata: dict, wait_s: float = AGENT_WAIT_S) -> str:
        """submit_job, retried while the head's job agent is still starting: a fresh head
        answers "No available agent to submit job" for its first seconds."""
        deadline = time.time() + wait_s
        while True:
            try:
                return self.client.submit_job(entrypoint=entrypoint, metadata=metadata)
            except RuntimeError as e:
                if "No available agent" not in str(e) or time.time() > deadline:
                    raise
                time.sleep(2.0)

    def finish(self, run: SweepRun, status: str) -> None:
        job_id = run.record["job_id"]
        run.record.update(job_status=status, ended=datetime.now().isoformat(timespec="seconds"))
        if status == "SUCCEEDED":
            mark_finished(run)
            self.log(f"sweep: {run.name}: job {job_id} succeeded")
            return
        try:
            info = self.client.get_job_info(job_id)
            message = info.message
            tail = self.client.get_job_logs(job_id).splitlines()[-LOG_TAIL_LINES:]
        except Exception as e:  # noqa: BLE001  (the job's record may be gone; say so instead)
            message, tail = f"(job info unavailable: {e})", []
        run.record.update(status="failed", error=f"job {job_id} {status}: {message}", log_tail=tail)
        self.log(f"sweep: {run.name}: job {job_id} {status}: {message}")

    def fill(self, max_running: int | None) -> None:
        while self.queue and (max_running is None or len(self.live) < max_running):
            self.submit(self.queue.pop(0))

    def poll(self) -> None:
        for name, run in list(self.live.items()):
            status = _status(self.client, run.record["job_id"]) or "FAILED"
            run.record["job_status"] = status
            if status in TERMINAL:
                del self.live[name]
                self.finish(run, status)


def run_jobs(sweep: Sweep, address: str, wait: bool, max_running: int | None = None, poll_s: float = 10.0,
             log=print) -> list[SweepRun]:
    """Submit the plan's runs as Ray jobs; with wait, poll until every job has ended.
    Returns the runs that failed (or whose submission failed)."""
    runner = JobRunner(sweep, address, log)
    runner.sort_runs()
    runner.fill(max_running)
    runner.write()
    if not wait:
        if runner.live:
            log(f"sweep: {len(runner.live)} job(s) running on {address}; follow them with "
                f"`rlscale sweep {sweep.file} --ray-address {address} --wait`")
    else:
        while runner.live or runner.queue:
            time.sleep(poll_s)
            runner.poll()
            runner.fill(max_running)
            runner.write()
    return [r for r in sweep.runs if r.record["status"] == "failed"]
