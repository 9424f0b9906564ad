"""The optional TensorBoard and W&B copies of metrics.jsonl (issue 12, part 5): each backend's
files read back with its own reader hold the rows' numbers at their steps; re-run steps
(a rewind mid-run, a --resume) are handled as metric_writers.py documents; a missing package
is a config error before the run starts; a failing writer never stops the run. No Ray."""

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import psutil
import pytest

from rlscale.config import ConfigError, load_config
from rlscale.metric_writers import TensorBoardWriter, make_writers
from rlscale.preflight import preflight
from rlscale.runlog import METRIC_FIELDS, RunLog

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs/quickstart.yaml"


def _cfg(run_dir, *overrides):
    return load_config(QUICKSTART, [f"run_dir={run_dir}", "progress=false", *overrides])


def _row(step: int, salt: float = 0.0) -> dict:
    """A row shaped like the quickstart's: numbers, nulls, mappings (the lag histogram,
    per-env rewards), a recipe stat beyond METRIC_FIELDS, val_* on evaluation steps only.
    `salt` tells a re-run step's values from the first ones."""
    row = dict.fromkeys(METRIC_FIELDS) | {
        "step": step, "policy_version": step, "time": 1796082428.0 + step, "policy_lag_mean": 0.0,
        "policy_lag_max": 0, "policy_lag_hist": {"0": 64}, "stale_dropped": 0, "reward_mean": 0.1 * step + salt,
        "reward_std": 0.124, "entropy": 2.97 - 0.01 * step, "response_len_mean": 32.078125, "truncated_frac": 0.39,
        "prompts_skipped": 0, "turns_mean": 1.0, "reward_by_env": {"rlscale/Arith-v0": 0.1 * step + salt},
        "kl_old_new": 0.0, "loss": -0.0234 * step - salt, "grad_norm": 0.1233, "tokens_sampled": 2053 + step,
        "cumulative_flops": 4004517120 * step, "step_s": 0.68, "cumulative_s": 0.68 * step,
        "worker_restarts": 0, "worker_retries": 0, "learner_restarts": 0, "clip_frac": 0.0}
    if step % 2 == 0:
        row |= {"val_mean_at_k": 0.5 + salt, "val_pass_at_k": 0.75, "val_n_problems": 16}
    return row


def _expected(rows: list[dict]) -> dict[str, dict[int, float]]:
    """tag -> {step: value}: each number of a row under its key (key/subkey inside a
    mapping); nulls, `step` and `time` left out."""
    out: dict[str, dict[int, float]] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("step", "time"):
                continue
            for tag, v in (value.items() if isinstance(value, dict) else [(key, value)]):
                if isinstance(v, (int, float)):
                    out.setdefault(key if tag == key else f"{key}/{tag}", {})[row["step"]] = v
    return out


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _run_with_a_rewind(run_dir, cfg) -> tuple[list[dict], list[dict], tuple[int, int]]:
    """Steps 0-3, then a rewind to step 1 (the learner restored from its checkpoint) and
    steps 2-3 again; the run is then interrupted. Returns the first rows, the re-run rows
    and the log sizes at step 1 (the checkpoint's)."""
    log = RunLog(run_dir, cfg)
    first = [_row(s) for s in range(4)]
    for row in first[:2]:
        log.log_step(row)
    sizes = log.metrics_bytes(), log.samples_bytes()
    for row in first[2:]:
        log.log_step(row)
    log.rewind(*sizes)
    rerun = [_row(s, salt=1.0) for s in (2, 3)]
    for row in rerun:
        log.log_step(row)
    log.close("interrupted")
    return first, rerun, sizes


def _resume(run_dir, cfg, sizes) -> list[dict]:
    """`--resume` from the step-1 checkpoint: steps 2-4. Returns their rows."""
    log = RunLog.reopen(run_dir, cfg, *sizes, from_step=1)
    resumed = [_row(s, salt=2.0) for s in (2, 3, 4)]
    for row in resumed:
        log.log_step(row)
    log.close("finished")
    return resumed


def _tensorboard_scalars(run_dir) -> dict[str, dict[int, float]]:
    """tag -> {step: value} as TensorBoard's reader shows them; a step shown twice fails."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert len(set(steps)) == len(steps), f"{tag}: steps {steps}"
        out[tag] = {e.step: e.value for e in events.Scalars(tag)}
    return out


def test_tensorboard_holds_the_rows_and_shows_re_run_steps_as_metrics_jsonl(tmp_path):
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, "logging.tensorboard=true")
    first, rerun, sizes = _run_with_a_rewind(run_dir, cfg)
    for phase in ("rewind", "resume"):
        if phase == "resume":
            resumed = _resume(run_dir, cfg, sizes)
        written = _tensorboard_scalars(run_dir)
        # Each step once, with the value metrics.jsonl holds (the re-run one); float32 in TensorBoard.
        expected = _expected(_metrics(run_dir))
        assert written.keys() == expected.keys(), phase
        for tag, by_step in expected.items():
            assert written[tag] == pytest.approx(by_step, rel=1e-6), (phase, tag)
    assert [r["step"] for r in _metrics(run_dir)] == [0, 1, 2, 3, 4]
    assert {"policy_version", "reward_by_env/rlscale/Arith-v0", "policy_lag_hist/0", "clip_frac"} <= written.keys()
    assert "time" not in written and "kl_ref" not in written  # a wall time; null on every row
    assert written["val_mean_at_k"].keys() == {0, 2, 4}  # evaluation steps only
    assert written["loss"][1] == pytest.approx(first[1]["loss"])
    assert written["reward_mean"][3] == pytest.approx(resumed[1]["reward_mean"]) != rerun[1]["reward_mean"]


# --- wandb --------------------------------------------------------------------------------

def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens: any request fails at once


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    """wandb's own files under tmp_path, and W&B's server a closed local port."""
    for var in [v for v in os.environ if v.startswith("WANDB_")]:
        monkeypatch.delenv(var)
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / sub))
    monkeypatch.setenv("WANDB_BASE_URL", _closed_port_url())
    monkeypatch.setenv("WANDB_SILENT", "true")


def _wandb_records(path: Path):
    """The records of a .wandb transaction log: a 7-byte header (':W&B', magic, version),
    then LevelDB's log format (32 KiB blocks of chunks: crc32c, length, type: 1 full,
    2 first, 3 middle, 4 last), each record a wandb_internal Record protobuf. wandb 0.31
    ships no Python reader for it any more (wandb-core, in Go, reads it for `wandb sync`)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, record = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        record = chunk if kind in (1, 2) else record + chunk
        if kind in (1, 4):
            yield Record.FromString(record)


def _wandb_offline_runs(run_dir: Path) -> list[tuple[str, dict[str, dict[int, float]]]]:
    """Each offline-run-* directory, oldest first: (run id, tag -> {step: value})."""
    runs = []
    for d in sorted((run_dir / "wandb").glob("offline-run-*")):
        (log,) = d.glob("*.wandb")
        run_id, history = None, {}
        for record in _wandb_records(log):
            if record.HasField("run"):
                run_id = record.run.run_id
            if record.HasField("history"):
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    if not key.startswith("_"):  # wandb's own _step, _runtime, _timestamp
                        history.setdefault(key, {})[record.history.step.num] = json.loads(item.value_json)
        runs.append((run_id, history))
    return runs


def _wandb_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "wandb" in p.name()]


def test_wandb_offline_run_holds_the_rows_and_a_resume_continues_its_id(tmp_path, wandb_home):
    run_dir = tmp_path / "run"
    cfg = _cfg(run_dir, "logging.wandb=true")
    first, rerun, sizes = _run_with_a_rewind(run_dir, cfg)
    resumed = _resume(run_dir, cfg, sizes)
    deadline = time.time() + 10
    while _wandb_processes() and time.time() < deadline:
        time.sleep(0.1)
    assert not _wandb_processes(), "close() left wandb-core running"

    run_id = (run_dir / "wandb" / "rlscale_run_id").read_text().strip()
    (id_a, before), (id_b, after) = _wandb_offline_runs(run_dir)
    assert id_a == id_b == run_id  # the resume continued the same W&B run
    # W&B's history only moves forward: the re-run steps 2-3 were skipped, its first values stay.
    assert before == _expected(first), "exact: wandb stores the float64 values as JSON"
    assert after == _expected(resumed)
    assert before["reward_mean"][2] != rerun[0]["reward_mean"]
    # metrics.jsonl has the re-run values; it is the record.
    assert _metrics(run_dir) == json.loads(json.dumps(first[:2] + resumed))


def test_wandb_writer_sends_nothing_over_the_network(tmp_path):
    """A whole process (its exit too: wandb flushes its own telemetry then) with W&B's server
    and every HTTP(S) proxy pointed at a local listener that records any connection."""
    hits = []
    server = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{server.getsockname()[1]}"

    def listen():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2)
                hits.append(conn.recv(200))

    threading.Thread(target=listen, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k.lower() != "no_proxy"}
    env |= {"WANDB_BASE_URL": url, "HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
            "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_CONFIG_DIR": str(tmp_path / "config")}
    script = ("import sys\n"
              "from rlscale.config import load_config\n"
              "from rlscale.runlog import METRIC_FIELDS, RunLog\n"
              "cfg = load_config('configs/quickstart.yaml', [f'run_dir={sys.argv[1]}', 'logging.wandb=true'])\n"
              "log = RunLog(sys.argv[1], cfg)\n"
              "for s in range(3):\n"
              "    log.log_step(dict.fromkeys(METRIC_FIELDS) | {'step': s, 'policy_version': s, 'loss': 0.5 * s})\n"
              "log.close('finished')\n")
    try:
        res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    assert res.returncode == 0, res.stderr
    assert hits == []
    assert res.stdout == "" and "wandb" not in res.stderr  # the run's terminal stays its own


# --- errors ---------------------------------------------------------------------------------

BACKENDS = [("logging.tensorboard", "tensorboard", "torch.utils.tensorboard"), ("logging.wandb", "wandb", "wandb")]


@pytest.mark.parametrize("field, package, module", BACKENDS)
def test_a_missing_package_is_a_config_error_naming_the_field(field, package, module, tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = _cfg(tmp_path / "run", f"{field}=true")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else find_spec(name, *a))
    with pytest.raises(ConfigError) as before_the_run:
        preflight(cfg)
    message = str(before_the_run.value)
    assert f"{field}=true" in message and f"pip install {package}" in message and ".[logging]" in message
    # RunLog (a caller without preflight) refuses too, before it writes anything.
    monkeypatch.setitem(sys.modules, module, None)  # `import` raises ImportError
    with pytest.raises(ConfigError, match=f"{field}=true needs the {package} package"):
        RunLog(tmp_path / "run", cfg)
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_failing_writer_warns_once_and_the_run_goes_on(tmp_path, monkeypatch):
    def full_disk(self, row):
        raise OSError(28, "No space left on device")

    run_dir = tmp_path / "run"
    log = RunLog(run_dir, _cfg(run_dir, "logging.tensorboard=true"))
    log.log_step(_row(0))
    monkeypatch.setattr(TensorBoardWriter, "_write", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2, 3):
            log.log_step(_row(step))
        log.close("finished")
    assert [str(w.message).split(":")[0] for w in caught] == ["logging.tensorboard"]
    assert "No space left on device" in str(caught[0].message) and "metrics.jsonl is complete" in str(caught[0].message)
    assert [r["step"] for r in _metrics(run_dir)] == [0, 1, 2, 3]


def test_a_writer_that_cannot_start_is_left_out(tmp_path, wandb_home, monkeypatch):
    import wandb

    def refused(**kwargs):
        raise wandb.errors.CommError("could not start")

    monkeypatch.setattr(wandb, "init", refused)
    with pytest.warns(RuntimeWarning, match="logging.wandb: could not start"):
        writers = make_writers(_cfg(tmp_path / "run", "logging.wandb=true", "logging.tensorboard=true"),
                               tmp_path / "run")
    assert [w.field for w in writers] == ["logging.tensorboard"]
    for w in writers:
        w.close()
    assert not _wandb_processes()
