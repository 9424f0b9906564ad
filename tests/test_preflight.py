"""Every late input of `rlscale run` fails in seconds, before torch, vLLM or Ray are imported
and before Ray starts: exit 2 and a message naming the field (issue 11, part 5)."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rlscale.cli import main
from rlscale.config import load_config

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs/quickstart.yaml")


def _model_dir(path: Path, weights=True, tokenizer=True) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    if weights:
        (path / "model.safetensors").write_bytes(b"not really weights")
    if tokenizer:
        (path / "tokenizer.json").write_text("{}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def _cases(tmp: Path) -> dict:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return {
        "weights": ([f"model.path={_model_dir(tmp / 'noweights', weights=False)}"], "model.path", "no weights"),
        "tokenizer": ([f"model.path={_model_dir(tmp / 'notok', tokenizer=False)}"], "model.path", "no tokenizer"),
        "run_dir_file": ([f"run_dir={a_file}"], "run_dir", "is a file"),
        "run_dir_unwritable": ([f"run_dir={a_file}/sub"], "run_dir", "not a writable directory"),
        "ray_hostport": ([f"ray.address=127.0.0.1:{_free_port()}"], "ray.address", "cannot connect"),
        "ray_client": ([f"ray.address=ray://127.0.0.1:{_free_port()}"], "ray.address", "cannot connect"),
        "val_problems": (["env.kwargs.max_difficulty=1", "eval.n_problems=300"], "eval.n_problems=300",
                         "distinct problems"),
        # 8403 in the quickstart's split: drawing could not settle this in seconds, the env's count does.
        "val_problems_large": (["eval.n_problems=20000"], "eval.n_problems=20000", "at most 8403 distinct problems"),
    }


@pytest.mark.parametrize("case", ["weights", "tokenizer", "run_dir_file", "run_dir_unwritable", "ray_hostport",
                                  "ray_client", "val_problems", "val_problems_large"])
def test_bad_input_fails_fast_through_the_cli(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    overrides, field, fragment = _cases(tmp_path)[case]
    t0 = time.time()
    assert main(["run", QUICKSTART, *overrides]) == 2
    err = capsys.readouterr().err
    assert field in err and fragment in err, err
    assert time.time() - t0 < 5


def test_ray_auto_without_a_cluster(tmp_path, capsys, monkeypatch):
    """'auto' resolves as ray.init does: RAY_ADDRESS, then <RAY_TMPDIR>/ray/ray_current_cluster,
    then a raylet's --gcs-address; a recorded but dead cluster is an unreachable address."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_free_port()}")
    assert main(["run", QUICKSTART, "ray.address=auto"]) == 2
    assert "ray.address=auto (found 127.0.0.1:" in capsys.readouterr().err
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    assert main(["run", QUICKSTART]) == 2  # null uses RAY_ADDRESS too, as ray.init does
    assert "ray.address=null (RAY_ADDRESS=127.0.0.1:" in capsys.readouterr().err


def test_a_ray_job_with_a_working_dir_needs_an_absolute_run_dir(tmp_path, capsys, monkeypatch):
    """Ray runs a job's entrypoint in its temporary copy of the working dir: a relative
    run_dir (or the default, runs/NAME-TIME) would be written there and deleted with it."""
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}, "metadata": {}}))
    for args in ([], ["run_dir=runs/x"]):
        assert main(["run", QUICKSTART, *args]) == 2
        err = capsys.readouterr().err
        assert "temporary copy of its working_dir" in err and "run_dir=/shared/runs/NAME" in err, err
    # An absolute run_dir passes this check (and then fails on the next: no Ray cluster there).
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_free_port()}")
    assert main(["run", QUICKSTART, f"run_dir={tmp_path / 'run'}"]) == 2
    assert "cannot connect to 127.0.0.1" in capsys.readouterr().err


def test_subprocess_exits_2_in_seconds_without_heavy_imports(tmp_path):
    """The installed command, timed end to end (interpreter start included)."""
    bad = _model_dir(tmp_path / "m", weights=False)
    t0 = time.time()
    res = subprocess.run([str(ROOT / ".venv/bin/rlscale"), "run", QUICKSTART, f"model.path={bad}",
                          f"run_dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=60)
    wall = time.time() - t0
    assert res.returncode == 2, res.stderr
    assert "model.path" in res.stderr and "Traceback" not in res.stderr
    assert wall < 5, wall
    assert not (tmp_path / "run").exists()  # nothing written


def test_preflight_imports_nothing_heavy():
    code = "import sys, rlscale.preflight, rlscale.cli; print(sorted({'torch', 'vllm', 'ray', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_env_kwarg_did_you_mean(capsys):
    assert main(["run", QUICKSTART, "env.kwargs.max_difficulti=2"]) == 2
    assert "env.kwargs.max_difficulti: did you mean 'max_difficulty'?" in capsys.readouterr().err


def test_good_model_dir_passes(tmp_path):
    from rlscale.preflight import check_model_files

    check_model_files(str(_model_dir(tmp_path / "ok")))


def test_switching_env_id_names_the_kwargs_kept_from_the_file(capsys):
    """env.id switched by an override keeps the file's env.kwargs (written for the old env):
    the error says which keys came from where and gives the whole-mapping override."""
    assert main(["run", QUICKSTART, "env.id=rlscale/ProceduralCode-v0", "env.kwargs.n_examples=3"]) == 2
    err = capsys.readouterr().err
    assert "env.kwargs: min_difficulty, max_difficulty, max_operand came from" in err
    assert "written for rlscale/Arith-v0" in err and "'env.kwargs={n_examples: 3}'" in err
    # The mapping it suggests replaces the old one: the same switch then passes the config checks.
    cfg = load_config(QUICKSTART, ["env.id=rlscale/ProceduralCode-v0", "env.kwargs={n_examples: 3}"])
    assert cfg.env.kwargs == {"n_examples": 3}


def test_an_uncached_hub_id_without_network_fails_fast(monkeypatch, capsys):
    """No network (here: the hub endpoint a closed local port): a hub id not in the HF cache
    is refused at once, exit 2, naming model.path, instead of minutes of download retries."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    t0 = time.time()
    assert main(["run", QUICKSTART, "model.path=nobody-here/no-such-model"]) == 2
    assert time.time() - t0 < 5
    err = capsys.readouterr().err
    assert "model.path='nobody-here/no-such-model' is not a local directory, not in the Hugging Face cache" in err
    assert "http://127.0.0.1:9 is unreachable" in err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["run", QUICKSTART, "model.path=nobody-here/no-such-model"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_a_cached_hub_id_without_network_runs_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from rlscale.preflight import check_hub_id

    snapshot = tmp_path / "models--someorg--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--someorg--tiny" / "refs").mkdir()
    (tmp_path / "models--someorg--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    check_hub_id("someorg/tiny")
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # transformers and vLLM then never wait on the network
