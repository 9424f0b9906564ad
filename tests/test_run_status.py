"""run.json's status: running, then finished, failed (with the error) or interrupted; a run
dir whose run logged no step can be used again (issue 11, part 4). No Ray is started."""

import json
import os
import signal
from pathlib import Path

import pytest

from rlscale.config import load_config
from rlscale.runlog import RunLog, logged_steps

ROOT = Path(__file__).resolve().parents[1]


def _cfg(run_dir):
    return load_config(ROOT / "configs/quickstart.yaml", [f"run_dir={run_dir}", "progress=false"])


def _info(run_dir) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


@pytest.fixture
def orchestrator(monkeypatch):
    """An Orchestrator whose model resolves at once and whose actor start is replaced by the test."""
    import rlscale.orchestrator as orch_mod

    monkeypatch.setattr(orch_mod, "resolve_model", lambda cfg, log=print: ("/no/model", {"source": "test"}))
    return orch_mod.Orchestrator


def test_status_running_then_failed_with_error(tmp_path, orchestrator, monkeypatch):
    seen = {}

    def fail(self, model_path):
        seen["status"] = _info(tmp_path / "run")["status"]
        raise RuntimeError("the engine could not load model.safetensors\nsecond line")

    monkeypatch.setattr(orchestrator, "_start_actors", fail)
    with pytest.raises(RuntimeError):
        orchestrator(_cfg(tmp_path / "run"), log=lambda *a: None).run()
    info = _info(tmp_path / "run")
    assert seen["status"] == "running"
    assert info["status"] == "failed" and info["error_type"] == "RuntimeError"
    assert info["error"] == "the engine could not load model.safetensors"
    log = (tmp_path / "run" / "error.log").read_text()
    assert info["error_log"] == str(tmp_path / "run" / "error.log")
    assert log.startswith("Traceback") and "second line" in log and "in fail" in log
    assert not (tmp_path / "run" / "summary.json").exists()
    # The failed start logged no step: the same run_dir is free for the next attempt.
    assert not logged_steps(tmp_path / "run")
    RunLog(tmp_path / "run", _cfg(tmp_path / "run")).close()
    assert _info(tmp_path / "run")["status"] == "running"  # closed without a status: as it was


def test_sigterm_marks_interrupted(tmp_path, orchestrator, monkeypatch):
    def terminated(self, model_path):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(orchestrator, "_start_actors", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        orchestrator(_cfg(tmp_path / "run"), log=lambda *a: None).run()
    info = _info(tmp_path / "run")
    assert info["status"] == "interrupted" and "error" not in info
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's only


def test_reuse_dir_without_steps_but_never_one_with_steps(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("")
    log = RunLog(run_dir, _cfg(run_dir))  # empty metrics.jsonl: not a run
    log.log_step({k: None for k in __import__("rlscale.runlog").runlog.METRIC_FIELDS} | {"step": 0})
    log.close("finished")
    assert _info(run_dir)["status"] == "finished"
    with pytest.raises(FileExistsError, match="already holds a run"):
        RunLog(run_dir, _cfg(run_dir))
    assert logged_steps(run_dir) and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    from rlscale.cli import main

    assert main(["run", str(ROOT / "configs/quickstart.yaml"), f"run_dir={run_dir}"]) == 2  # found by preflight


def test_analysis_shows_status(tmp_path):
    from rlscale.analysis.loading import load_run

    run_dir = tmp_path / "run"
    log = RunLog(run_dir, _cfg(run_dir))
    log.log_step({k: None for k in __import__("rlscale.runlog").runlog.METRIC_FIELDS} | {"step": 0})
    log.close("failed", ValueError("boom"))
    assert set(load_run(run_dir)["status"]) == {"failed"}
    info = _info(run_dir)
    del info["status"]  # a run from before status was recorded
    (run_dir / "run.json").write_text(json.dumps(info))
    assert set(load_run(run_dir)["status"]) == {"unfinished"}


def test_cli_reports_a_failed_or_stopped_run_in_a_few_lines(tmp_path, orchestrator, monkeypatch, capsys):
    """`rlscale run`: a run that fails prints its one-line error and where the traceback is,
    exit 1; one stopped by SIGTERM says how to continue it, exit 143 (128 + SIGTERM)."""
    from rlscale.cli import main

    def fail(self, model_path):
        raise RuntimeError("rollout worker 0 died and was restarted 3 time(s)\nmore")

    monkeypatch.setattr(orchestrator, "_start_actors", fail)
    assert main(["run", str(ROOT / "configs/quickstart.yaml"), f"run_dir={tmp_path / 'a'}"]) == 1
    err = capsys.readouterr().err
    assert f"run {tmp_path / 'a'} failed: RuntimeError: rollout worker 0 died" in err
    assert f"traceback is in {tmp_path / 'a' / 'error.log'}" in err and "Traceback" not in err

    monkeypatch.setattr(orchestrator, "_start_actors", lambda self, m: os.kill(os.getpid(), signal.SIGTERM))
    assert main(["run", str(ROOT / "configs/quickstart.yaml"), f"run_dir={tmp_path / 'b'}"]) == 143
    assert f"continue it with: rlscale run --resume {tmp_path / 'b'}" in capsys.readouterr().err
    assert _info(tmp_path / "b")["status"] == "interrupted"


def test_a_signal_during_a_step_waits_for_its_end_and_a_second_one_does_not():
    from rlscale.signals import Terminated, finish_step_first

    before = signal.getsignal(signal.SIGTERM)
    notes, done = [], []
    with pytest.raises(Terminated):
        with finish_step_first(lambda: notes.append("held")) as held:
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the rest of the step ran")
            assert held == [signal.SIGTERM]
    assert done and notes == ["held"] and signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(KeyboardInterrupt):
        with finish_step_first():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # insists: stops here
            done.append("not reached")
    assert done == ["the rest of the step ran"]
    with finish_step_first() as held:  # no signal: nothing happens
        pass
    assert held == []
