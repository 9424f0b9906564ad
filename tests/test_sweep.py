"""`rlscale sweep`: expansion, naming, validation before anything runs, skipping finished
runs, moving unfinished attempts aside, and the analysis of a sweep directory (fabricated
run directories: test data written in the run-directory format). Then, through local Ray
and vLLM: a 2 x 2 sweep run and analysed end to end, failed runs recorded, and Ray job
mode against a local head with a dashboard."""

import json
import os
import signal
import socket
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import LlamaConfig

from rlscale.cli import main
from rlscale.config import load_config, non_experiment_keys, to_yaml
from rlscale.runlog import METRIC_FIELDS
from rlscale.sweep import check_finished_runs, dir_names, move_aside, plan_lines, plan_sweep

QUICKSTART = Path("configs/quickstart.yaml").resolve()


def sweep_file(tmp_path, body: str, out="out", name="sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"base: {QUICKSTART}\nout: {tmp_path / out}\n{body}")
    return path


def fabricate_run(run_dir: Path, cfg, finished=True, record_keys=True) -> Path:
    """A run directory in the format runlog.py writes (three logged steps)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    info = {"name": cfg.name, "seed": cfg.seed}
    if record_keys:
        info |= {"non_experiment_keys": non_experiment_keys(), "sweep_setting": cfg.sweep_setting}
    (run_dir / "run.json").write_text(json.dumps(info))
    rows = [{f: None for f in METRIC_FIELDS} | {"step": s, "cumulative_flops": s * 1e9, "val_mean_at_k": 0.5}
            for s in range(3)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"final_val_mean_at_k": 0.5, "final_val_mean_at_k_se": 0.05,
                                                          "eval_k": 4}))
    return run_dir


def test_grid_expands_settings_times_seeds_seed_by_seed(tmp_path):
    path = sweep_file(tmp_path, "seeds: [0, 1]\ngrid:\n  algo.lr: [1.0e-4, 3e-4]\n  rollout.group_size: [4, 8]\n"
                                "overrides: {steps: 20, algo.lr: 0.5}\n")
    sweep = plan_sweep(path)
    assert len(sweep.runs) == 8
    assert [r.seed for r in sweep.runs] == [0] * 4 + [1] * 4  # every setting's seed 0 first
    first = sweep.runs[0]
    assert first.name == "lr=0.0001,group_size=4-seed0"
    assert first.setting == "algo.lr=0.0001, rollout.group_size=4"
    cfg = first.config
    # 3e-4 (YAML 1.1 would read a string) is a number; the setting wins over the common overrides.
    assert cfg.algo.lr == 1e-4 and sweep.runs[2].config.algo.lr == 3e-4 and cfg.steps == 20
    assert (cfg.seed, cfg.name, cfg.sweep_setting) == (0, first.name, first.setting)
    assert cfg.run_dir == str(tmp_path / "out" / first.name)
    assert len({r.name for r in sweep.runs}) == 8


def test_list_settings_variants_and_readable_names(tmp_path):
    path = sweep_file(tmp_path, "seeds: [3]\nlist:\n  - {}\n  - {algo.loss: dapo, algo.loss.clip_high: 0.3}\n"
                                "  - {env.kwargs: {max_difficulty: 2, max_operand: 9}}\n")
    runs = plan_sweep(path).runs
    assert [r.name for r in runs] == ["base-seed3", "loss=dapo,clip_high=0.3-seed3",
                                      "max_difficulty=2,max_operand=9-seed3"]
    assert runs[1].config.algo.loss.clip_high == 0.3
    assert runs[2].config.env.kwargs == {"max_difficulty": 2, "max_operand": 9}  # the mapping replaces the base's
    assert runs[2].setting == 'env.kwargs={"max_difficulty":2,"max_operand":9}'
    # Unsafe characters are replaced; names that would clash or run long get a hash of the label.
    names = dir_names([{"env.id": "a/b"}, {"env.id": "a b"}, {"x": "y" * 200}])
    assert all("/" not in n and " " not in n and len(n) <= 80 for n in names) and len(set(names)) == 3


def test_base_is_found_next_to_the_sweep_file_then_from_the_cwd(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.yaml").write_text(QUICKSTART.read_text().replace("steps: 80", "steps: 7"))
    (tmp_path / "sub" / "s.yaml").write_text(f"base: mine.yaml\nout: {tmp_path / 'o'}\n")
    assert plan_sweep(tmp_path / "sub" / "s.yaml").runs[0].config.steps == 7
    (tmp_path / "sub" / "s2.yaml").write_text(f"base: configs/quickstart.yaml\nout: {tmp_path / 'o'}\n")
    assert plan_sweep(tmp_path / "sub" / "s2.yaml").base == QUICKSTART


@pytest.mark.parametrize("body, expected", [
    ("list:\n  - {algo.lr: 1.0e-3}\n  - {algo.lr: -1}\n", r"setting algo.lr=-1 \(list\[1\], seeds 0, 1\).*\n.*algo.lr: "
                                                         r"Input should be greater than 0"),
    ("grid:\n  algo.lossx: [grpo]\n", r"setting algo.lossx=grpo.*\n.*algo.lossx: unknown key; did you mean 'loss'"),
    ("grid:\n  algo.loss: [grpo]\n  algo.loss.clip_high: [0.3]\n", r"algo.loss.clip_high: unknown key"),
    ("grid: {algo.lr: [1]}\nlist: [{algo.lr: 2}]\n", r"grid, list: give one of them"),
    ("grid:\n  seed: [1, 2]\n", r"grid.seed: the sweep sets seed, name, run_dir"),
    ("list: [{algo.lr: 0.1}, {algo.lr: 0.1}]\n", r"list\[1\]: repeats list\[0\]"),
    ("grid:\n  algo.lr: []\n", r"grid.algo.lr: give at least one value"),
    ("seedz: [1]\n", r"seedz: Extra inputs are not permitted"),
])
def test_bad_sweeps_exit_2_naming_the_setting_and_field_before_anything_runs(tmp_path, capsys, body, expected):
    import re

    path = sweep_file(tmp_path, "seeds: [0, 1]\n" + body)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err), err
    assert not (tmp_path / "out").exists()  # nothing written, nothing run


def test_bad_base_and_bad_flags_exit_2(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(f"base: nowhere.yaml\nout: {tmp_path / 'out'}\n")
    assert main(["sweep", str(path)]) == 2
    assert "base: 'nowhere.yaml' not found" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    good = sweep_file(tmp_path, "seeds: [0]\n", name="good.yaml")
    assert main(["sweep", str(good), "--max-running", "2"]) == 2
    assert "--max-running needs --ray-address and --wait" in capsys.readouterr().err
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["sweep", str(good), "--ray-address", f"http://127.0.0.1:{port}"]) == 2
    assert f"--ray-address http://127.0.0.1:{port}: no Ray job server answered" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dry_run_shows_skip_and_move_aside_and_writes_nothing(tmp_path, capsys):
    path = sweep_file(tmp_path, "seeds: [0, 1]\ngrid: {algo.lr: [1.0e-4, 3.0e-4]}\n")
    sweep = plan_sweep(path)
    done, killed = sweep.runs[0], sweep.runs[1]
    fabricate_run(done.run_dir, done.config)
    fabricate_run(killed.run_dir, killed.config, finished=False)
    (killed.run_dir.parent / f"{killed.name}.incomplete-1").mkdir()  # an earlier attempt, kept
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{done.name}  seed 0  algo.lr=0.0001  -> finished: skip" in out
    assert f"move it to {killed.name}.incomplete-2, run again" in out
    assert out.count("-> run\n") == 2
    assert not (tmp_path / "out" / "sweep.json").exists()
    assert plan_lines(sweep)[1:] == out.strip().splitlines()[1:]


def test_move_aside_keeps_the_data(tmp_path):
    sweep = plan_sweep(sweep_file(tmp_path, "seeds: [0]\n"))
    run = sweep.runs[0]
    fabricate_run(run.run_dir, run.config, finished=False)
    moved = move_aside(run, "no complete checkpoint", log=lambda _: None)
    assert moved.name == "base-seed0.incomplete-1" and (moved / "metrics.jsonl").is_file()
    assert not run.run_dir.exists() and run.record["moved_aside"] == ["base-seed0.incomplete-1"]


def test_finished_run_of_another_plan_is_not_skipped_silently(tmp_path, capsys):
    path = sweep_file(tmp_path, "seeds: [0]\noverrides: {steps: 20}\n")
    run = plan_sweep(path).runs[0]
    fabricate_run(run.run_dir, load_config(QUICKSTART, ["steps=10", "progress=false"],
                                           updates=[("run_dir", str(run.run_dir))]))
    with pytest.raises(Exception, match=r"base-seed0: steps: 10 in the run, 20 planned"):
        check_finished_runs(plan_sweep(path))
    assert main(["sweep", str(path)]) == 2  # progress differs too, but that does not matter
    assert "holds finished runs of another plan" in capsys.readouterr().err


def test_analysis_reads_a_sweep_dir_by_its_plan_and_labels_settings(tmp_path):
    from rlscale.analysis.loading import load_runs

    sweep = plan_sweep(sweep_file(tmp_path, "seeds: [0, 1]\ngrid: {algo.lr: [1.0e-4, 3.0e-4]}\n"))
    for run in sweep.runs:
        cfg = run.config.model_copy(deep=True)
        if run.seed == 1:
            cfg.steps, cfg.ray.num_cpus = 30, 3  # not the experiment: still the same setting
        fabricate_run(run.run_dir, cfg)
    sweep.write("local")
    fabricate_run(sweep.out / "lr=0.0001-seed0.incomplete-1", sweep.runs[0].config, finished=False)
    fabricate_run(sweep.out / "stray", sweep.runs[0].config)  # not in sweep.json: not this sweep's
    df = load_runs([sweep.out])
    settings = df.groupby("run")["setting"].first().to_dict()
    assert settings == {r.name: r.setting for r in sweep.runs}
    assert set(settings.values()) == {"algo.lr=0.0001", "algo.lr=0.0003"}
    assert "algo.lr" in df.attrs["config_columns"] and "steps" not in df.attrs["config_columns"]


def test_runs_without_non_experiment_keys_group_on_all_but_name_seed_run_dir(tmp_path):
    from rlscale.analysis.loading import load_runs

    def cfg(**fields):
        return load_config(QUICKSTART, updates=list(fields.items()))

    fabricate_run(tmp_path / "old" / "a", cfg(seed=0, name="a"), record_keys=False)
    fabricate_run(tmp_path / "old" / "b", cfg(seed=1, name="b"), record_keys=False)
    fabricate_run(tmp_path / "old" / "c", cfg(seed=2, name="c", steps=30), record_keys=False)
    fabricate_run(tmp_path / "new" / "d", cfg(seed=0, name="d"))
    fabricate_run(tmp_path / "new" / "e", cfg(seed=1, name="e", steps=30))
    old = load_runs([tmp_path / "old"]).groupby("run")["setting"].first()
    assert old["a"] == old["b"] != old["c"]  # old records: steps counts
    new = load_runs([tmp_path / "new"]).groupby("run")["setting"].first()
    assert new["d"] == new["e"] == "setting0"  # recorded keys: steps does not


# ---------------------------------------------------------------- real runs (Ray + vLLM)

SHORT = "{steps: 6, eval.every: 2, eval.n_problems: 50, rollout.prompts_per_step: 16, progress: false, " \
        "samples_per_step: 1, pretrain.eval_problems: 20, pretrain.cache_dir: %s, checkpoint.every: 2}"


def kill_after_checkpoint(run_dir: Path, step: int) -> None:
    """Leave a finished run as a run killed after its step-`step` checkpoint was written
    (before the next one, and before summary.json) would have left it."""
    from rlscale.checkpoint import checkpoint_dir

    (run_dir / "summary.json").unlink()
    for ckpt in (run_dir / "checkpoints").iterdir():
        if ckpt != checkpoint_dir(run_dir, step):
            shutil.rmtree(ckpt)


@pytest.mark.integration
def test_sweep_runs_skips_and_analyzes_end_to_end(tmp_path, capsys, quickstart_cache):
    from rlscale.analysis.loading import load_runs

    # Two settings, one seed each: every run is a Ray + vLLM start (about 25 s here); the
    # pooling of seeds and the paired comparison run on synthetic sweeps (test_analysis_cli.py).
    path = sweep_file(tmp_path, "seeds: [0]\ngrid: {algo.lr: [1.0e-4, 1.0e-3]}\n"
                                f"overrides: {SHORT % quickstart_cache}\n")
    assert main(["sweep", str(path)]) == 0
    out = tmp_path / "out"
    plan = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in plan["runs"]] == ["finished"] * 2
    assert all(0 <= r["final_val_mean_at_k"] <= 1 and not r["skipped"] for r in plan["runs"])
    names = [r["name"] for r in plan["runs"]]
    assert all((out / n / "summary.json").is_file() for n in names)
    capsys.readouterr()

    t0 = time.time()
    assert main(["sweep", str(path)]) == 0  # everything finished: runs nothing
    assert time.time() - t0 < 20
    assert capsys.readouterr().out.count("finished earlier (summary.json); skipped") == 2
    plan = json.loads((out / "sweep.json").read_text())
    assert all(r["status"] == "finished" and r["skipped"] for r in plan["runs"])
    assert sorted(p.name for p in out.iterdir()) == sorted(["sweep.json", *names])

    assert main(["analyze", str(out), "--out", str(out / "report"), "--n-boot", "50"]) == 0
    assert (out / "report" / "fits.json").is_file() and (out / "report" / "report.md").is_file()
    settings = load_runs([out]).groupby("run")["setting"].first()
    assert settings.to_dict() == {"lr=0.0001-seed0": "algo.lr=0.0001", "lr=0.001-seed0": "algo.lr=0.001"}
    # One seed per setting: each setting's lone run is its unit, compared by the paired
    # bootstrap, or the report says why not (6-step runs: too few evaluations to fit).
    fits = json.loads((out / "report" / "fits.json").read_text())
    units = [k for c in fits["comparison"] for k in (c["a"], c["b"])] + list(fits["comparison_skipped"])
    assert sorted(units) == ["lr=0.0001-seed0", "lr=0.001-seed0"] and not fits["setting_sigmoid"]
    assert set(fits["comparison_skipped"]) <= set(fits["sigmoid_refused"])
    assert all(why.startswith("sigmoid: ") for why in fits["sigmoid_refused"].values())

    # A run killed after its step-4 checkpoint continues from it when the sweep runs again.
    killed = out / "lr=0.001-seed0"
    kill_after_checkpoint(killed, 4)
    capsys.readouterr()
    assert main(["sweep", str(path), "--dry-run"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("lr=0.001-seed0 ")]
    assert line.endswith("algo.lr=0.001  -> unfinished attempt: continues from its checkpoint at step 4")
    assert main(["sweep", str(path)]) == 0
    assert "the unfinished attempt continues from its checkpoint at step 4" in capsys.readouterr().out
    record = next(r for r in json.loads((out / "sweep.json").read_text())["runs"] if r["name"] == killed.name)
    assert record["status"] == "finished" and record["resumed_from"] == ["step-000004"]
    assert not list(out.glob("*.incomplete-*"))
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # the log was cut back to step 4 and continued


@pytest.mark.integration
def test_failed_runs_are_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    """A model directory with a config but no weights passes validation and fails when the
    learner loads it; an earlier unfinished attempt is moved aside first."""
    broken = tmp_path / "broken_model"
    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=100).save_pretrained(broken)
    path = sweep_file(tmp_path, f"seeds: [0]\nlist: [{{algo.lr: 1.0e-3}}, {{algo.lr: 3.0e-3}}]\n"
                                f"overrides: {{model.path: {broken}, progress: false}}\n")
    first = plan_sweep(path).runs[0]
    fabricate_run(first.run_dir, first.config, finished=False)
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err
    assert "2 run(s) failed" in err and "lr=0.001-seed0:" in err and "lr=0.003-seed0:" in err
    runs = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed", "failed"]
    assert all(r["error"] and r["traceback"] for r in runs)
    assert runs[0]["moved_aside"] == ["lr=0.001-seed0.incomplete-1"]
    assert (tmp_path / "out" / "lr=0.001-seed0.incomplete-1" / "metrics.jsonl").is_file()


HEAD = """
import signal, sys, ray
ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=int(sys.argv[1]))
print("ready", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exiting runs ray.shutdown: stops what this process started
signal.pause()
"""


@pytest.fixture
def ray_head(tmp_path):
    """A local Ray head with the dashboard's job server, in a process of its own, stopped by its pid.
    Token auth off: the test's client and the head share no token; the dashboard listens on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "head.log"
    env = os.environ | {"RAY_AUTH_MODE": "disabled", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-c", HEAD, str(port)], env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while "ready" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.integration
def test_ray_job_mode_submits_follows_and_skips(tmp_path, capsys, ray_head, quickstart_cache):
    path = sweep_file(tmp_path, "seeds: [0]\noverrides: {steps: 2, eval.every: 2, eval.n_problems: 16, "
                                "rollout.prompts_per_step: 8, progress: false, checkpoint.every: 1, "
                                f"pretrain.cache_dir: {quickstart_cache}}}\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--ray-address", ray_head]) == 0  # submit, do not wait
    first = json.loads((out / "sweep.json").read_text())["runs"][0]
    assert first["status"] == "submitted" and first["job_id"]
    assert first["entrypoint"] == f"rlscale run {out / 'configs' / 'base-seed0.yaml'}"
    job_cfg = load_config(out / "configs" / "base-seed0.yaml")
    assert job_cfg.ray.address == "auto" and job_cfg.run_dir == str(out / "base-seed0")
    # Following the job: the same job id, not a second submission.
    assert main(["sweep", str(path), "--ray-address", ray_head, "--wait", "--poll-s", "2"]) == 0, \
        capsys.readouterr().err
    run = json.loads((out / "sweep.json").read_text())["runs"][0]
    assert run["job_id"] == first["job_id"] and run["job_status"] == "SUCCEEDED" and run["status"] == "finished"
    assert (out / "base-seed0" / "summary.json").is_file()
    assert json.loads((out / "base-seed0" / "run.json").read_text())["sweep_setting"] == "base"
    assert main(["sweep", str(path), "--ray-address", ray_head, "--wait"]) == 0
    assert json.loads((out / "sweep.json").read_text())["runs"][0]["skipped"] is True
    # A job killed after its step-1 checkpoint: the next job continues the run from it.
    kill_after_checkpoint(out / "base-seed0", 1)
    assert main(["sweep", str(path), "--ray-address", ray_head, "--wait", "--poll-s", "2"]) == 0, \
        capsys.readouterr().err
    run = json.loads((out / "sweep.json").read_text())["runs"][0]
    assert run["entrypoint"] == f"rlscale run --resume {out / 'base-seed0'} {out / 'configs' / 'base-seed0.yaml'}"
    assert run["status"] == "finished" and run["resumed_from"] == ["step-000001"]
    assert not list(out.glob("*.incomplete-*"))


# ---------------------------------------------------------------- a pre-training sweep (torch, no Ray)

def test_pretrain_sweep_records_zoo_models_reuses_the_cache_and_analyzes(tmp_path, capsys):
    cache = tmp_path / "cache"
    path = sweep_file(tmp_path, "task: pretrain\nseeds: [0, 1]\ngrid: {model.zoo_size: [xs]}\n"
                                f"overrides: {{pretrain.steps: 6, pretrain.warmup_steps: 2, pretrain.eval_problems: 2, "
                                f"pretrain.cache_dir: {cache}}}\n")
    assert main(["sweep", str(path), "--ray-address", "http://127.0.0.1:1"]) == 2
    assert "task: pretrain, which runs on this machine" in capsys.readouterr().err
    assert main(["sweep", str(path)]) == 0
    out = tmp_path / "out"
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["mode"] == "pretrain" and [r["status"] for r in plan["runs"]] == ["finished", "finished"]
    for record, seed in zip(plan["runs"], (0, 1)):
        run_dir = out / record["name"]
        zoo = json.loads((run_dir / "zoo.json").read_text())
        assert zoo["size"] == "xs" and zoo["reused_from_cache"] is False and zoo["pretrain"]["steps"] == 6
        assert zoo["pretrain"]["seed"] == seed and Path(zoo["zoo_dir"]).name.startswith(f"xs-seed{seed}-")
        assert Path(zoo["zoo_dir"]).parent == cache / "zoo" and (Path(zoo["zoo_dir"]) / "model.safetensors").is_file()
        assert (run_dir / "pretrain_metrics.jsonl").read_text() == (Path(zoo["zoo_dir"]) / "pretrain_metrics.jsonl").read_text()
        assert record["size"] == "xs" and record["tokens"] == 6 * 32 * 128  # the quickstart's batch and seq_len
        rows = [json.loads(line) for line in (run_dir / "pretrain_metrics.jsonl").read_text().splitlines()]
        assert all(r["solution_loss"] > 0 and r["val_loss"] > 0 for r in rows)
    capsys.readouterr()

    # Again: nothing to do. A record removed: the model comes from the cache, not trained again.
    shutil.rmtree(out / plan["runs"][1]["name"])
    assert main(["sweep", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "recorded earlier; skipped" in printed and "(in the cache)" in printed and "zoo: pre-training" not in printed
    assert json.loads((out / plan["runs"][1]["name"] / "zoo.json").read_text())["reused_from_cache"] is True

    # The analysis of the sweep directory: the pre-training laws (one size: refusals, with reasons).
    # The cache's checkpoints given too are the same models: each is counted once.
    assert main(["analyze", str(out), "--zoo", str(cache / "zoo"), "--out", str(tmp_path / "report"),
                 "--n-boot", "20"]) == 0
    printed = capsys.readouterr().out
    assert "ZOO: 2 model(s)" in printed
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Chinchilla" in report and "zoo_frontier.png" in report and (tmp_path / "report" / "fits.json").is_file()
    fits = json.loads((tmp_path / "report" / "fits.json").read_text())
    assert fits["zoo"]["models"] == sorted(r["name"] for r in plan["runs"])
    assert "at least 3 sizes" in fits["zoo"]["frontier_refused"] or "at least 3" in fits["zoo"]["frontier_refused"]

    # A changed plan does not skip the models of the old one.
    path.write_text(path.read_text().replace("pretrain.steps: 6", "pretrain.steps: 7"))
    assert main(["sweep", str(path)]) == 2
    assert "pretrain.steps: 6 in the run, 7 planned" in capsys.readouterr().err


def test_a_stopped_pretrain_sweep_says_so_and_how_to_continue(tmp_path):
    """SIGTERM during pre-training: exit 143, the model recorded as interrupted, no half model
    in the cache, and the message says to run the same command again."""
    path = sweep_file(tmp_path, "task: pretrain\nseeds: [0]\n"
                                f"overrides: {{pretrain.steps: 100000, pretrain.cache_dir: {tmp_path / 'cache'}}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "rlscale.cli", "sweep", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("zoo: pre-training"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert f"interrupted. Finished runs are kept" in err and f"run `rlscale sweep {path}` again" in err
    assert "Traceback" not in err
    (record,) = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    assert record["status"] == "interrupted"
    assert not [p for p in (tmp_path / "cache" / "zoo").iterdir() if not p.name.endswith(".tmp")]
