"""Exact resume: a run killed with SIGKILL and continued from its checkpoint logs the same
steps, with the same numbers, as the same run uninterrupted; and the config checks of
--resume. Real runs: local Ray, vLLM, the quickstart task on a briefly pre-trained model."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import ray
import torch

from rlscale.checkpoint import complete_checkpoints, read_loop_state
from rlscale.config import ConfigError, load_config
from rlscale.resume import checkpoint_to_resume, resume_config

ROOT = Path(__file__).resolve().parents[1]
# Everything a step computes; timing fields (time, *_s, idle seconds) are the machine's, not the run's.
COMPARED = ("step", "policy_version", "reward_mean", "reward_std", "entropy", "loss", "grad_norm", "kl_old_new",
            "logprob_diff", "tokens_sampled", "tokens_trained", "cumulative_flops", "response_len_mean",
            "val_mean_at_k", "val_pass_at_k", "val_mean_at_k_se")


@pytest.fixture(autouse=True)
def own_ray():
    """These tests start Ray in this process (the resumed runs): stop it after each, or its
    dashboard agent keeps the agent port a later test's Ray head needs (test_sweep's job mode)."""
    yield
    ray.shutdown()


def overrides(run_dir: Path, cache: Path) -> list[str]:
    return [f"run_dir={run_dir}", f"pretrain.cache_dir={cache}", "pretrain.steps=40", "pretrain.eval_problems=20",
            "steps=6", "eval.every=2", "eval.n_problems=16", "eval.k=2", "rollout.prompts_per_step=8",
            "rollout.group_size=4", "rollout.max_tokens=32", "algo.minibatches=2", "algo.lr=0.01",
            "checkpoint.every=2", "checkpoint.keep=3", "progress=false"]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the run and every process it started (its Ray head and actors): only ours."""
    root = psutil.Process(proc.pid)
    family = [root, *root.children(recursive=True)]
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=10)  # nothing of ours may linger


def check_checkpoints(run_dir: Path, live_hash: str, live_weights: dict) -> None:
    """A finished 6-step run with checkpoint.every=2: what each checkpoint holds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpts = complete_checkpoints(run_dir)
    assert [p.name for p in ckpts] == ["step-000002", "step-000004", "step-000006"]
    mid, last = read_loop_state(ckpts[0]), read_loop_state(ckpts[-1])
    # The final checkpoint holds the learner's state exactly (the live actor's hash).
    assert last.learner_state_hash == live_hash != mid.learner_state_hash
    assert (last.step, last.policy_version, mid.step, mid.policy_version) == (6, 6, 2, 2)
    # The logs' recorded lengths cut them exactly after the checkpoint's step.
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    assert last.metrics_bytes == len(metrics)
    assert [json.loads(line)["step"] for line in metrics[:mid.metrics_bytes].decode().splitlines()] == [0, 1, 2]
    samples = (run_dir / "samples.jsonl").read_bytes()[:mid.samples_bytes].decode().splitlines()
    assert {json.loads(line)["step"] for line in samples} == {1, 2}
    assert [e["step"] for e in mid.evals] == [0, 2] and mid.sampler_rng["bit_generator"] == "PCG64"
    assert mid.sampler_ahead == 0 and mid.totals["flops"] > 0
    # The final policy loads as a Hugging Face model with its tokenizer, equal to the learner's weights.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert Path(summary["final_policy"]) == ckpts[-1] / "policy"
    model = AutoModelForCausalLM.from_pretrained(summary["final_policy"])
    AutoTokenizer.from_pretrained(summary["final_policy"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, live_weights[name]), name
    state = torch.load(ckpts[-1] / "learner_state.pt", weights_only=False)
    assert state["version"] == 6 and state["optimizer"]["state"]


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the run none of the tests below interrupts, with its checkpoints checked."""
    from rlscale.orchestrator import Orchestrator

    root = tmp_path_factory.mktemp("resume")
    whole = root / "whole"
    orch = Orchestrator(load_config("configs/quickstart.yaml", overrides(whole, root / "cache")))
    try:
        orch.run(keep_actors=True)
        live_hash = ray.get(orch.learner.state_hash.remote())
        live_weights = ray.get(orch.learner.state_dict.remote())
    finally:
        orch.stop_actors()
        ray.shutdown()
    check_checkpoints(whole, live_hash, live_weights)
    return root / "cache", whole


def assert_same_steps(run_dir: Path, reference: Path, what: str) -> None:
    runs = rows(run_dir), rows(reference)
    assert [r["step"] for r in runs[0]] == list(range(7))  # contiguous, no duplicates, no gaps
    for a, b in zip(*runs):
        differ = {k: (a.get(k), b.get(k)) for k in COMPARED if a.get(k) != b.get(k)}
        assert not differ, f"step {a['step']}: the {what} run differs from the uninterrupted one: {differ}"
    last, last_ref = (read_loop_state(complete_checkpoints(d)[-1]) for d in (run_dir, reference))
    assert last.learner_state_hash == last_ref.learner_state_hash
    assert last.totals == last_ref.totals


@pytest.mark.integration
def test_a_killed_run_resumes_exactly(tmp_path, uninterrupted):
    from rlscale.orchestrator import Orchestrator

    cache, whole = uninterrupted
    killed = tmp_path / "killed"
    args = overrides(killed, cache)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "rlscale.cli", "run", "configs/quickstart.yaml", *args],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 400
        while not (killed / "checkpoints" / "step-000004" / "loop_state.json").is_file():
            assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before step 4"
            time.sleep(0.2)
    finally:
        kill_tree(proc)
    logged = rows(killed)
    assert not (killed / "summary.json").exists() and logged[-1]["step"] >= 4

    cfg = resume_config(killed, None, ["progress=false"])
    ckpt, start = checkpoint_to_resume(killed, cfg)
    assert start.step == 4
    Orchestrator(cfg).run(resume_from=ckpt)
    info = json.loads((killed / "run.json").read_text())
    assert info["resumed"][0]["from_step"] == 4
    assert_same_steps(killed, whole, "resumed")


@pytest.mark.integration
def test_dead_actors_are_restarted_counted_and_change_nothing(tmp_path, uninterrupted):
    """kill -9 of the rollout worker after step 1, then of the learner after the step-4
    checkpoint: the worker is restarted and its lost work re-run, the learner restored from
    step 4 and steps 5-6 re-run; every step's numbers equal the uninterrupted run's."""
    from rlscale.orchestrator import Orchestrator

    cache, whole = uninterrupted
    run = tmp_path / "run"
    orch = Orchestrator(load_config("configs/quickstart.yaml", overrides(run, cache)))
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(dir=orch.run()), daemon=True)
    thread.start()

    def wait_for(done, what: str) -> None:
        deadline = time.time() + 400
        while not done():
            assert thread.is_alive() and time.time() < deadline, f"the run ended or stalled before {what}"
            time.sleep(0.1)

    wait_for(lambda: (run / "metrics.jsonl").is_file() and len(rows(run)) >= 2, "step 1")
    worker_pid = json.loads((run / "run.json").read_text())["actor_pids"]["rollout_workers"][0]
    os.kill(worker_pid, signal.SIGKILL)
    wait_for(lambda: (run / "checkpoints" / "step-000004" / "loop_state.json").is_file(), "step 4")
    learner_pid = json.loads((run / "run.json").read_text())["actor_pids"]["learner"]
    os.kill(learner_pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert outcome.get("dir") == run, "the run did not finish"

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert [f["actor"] for f in info["failures"]] == ["rollout_worker_0", "learner"]
    assert "step-000004" in info["failures"][1]["action"]
    last = rows(run)[-1]
    assert (last["worker_restarts"], last["learner_restarts"]) == (1, 1) and last["worker_retries"] >= 1
    assert info["failure_counts"]["worker_restarts"] == 1
    assert worker_pid not in info["actor_pids"]["rollout_workers"] and learner_pid != info["actor_pids"]["learner"]
    assert_same_steps(run, whole, "twice-failed")


@pytest.mark.integration
def test_sigterm_leaves_a_resumable_checkpoint_and_status_interrupted(tmp_path, uninterrupted):
    """SIGTERM after steps 0..2 (of 4): the step under way finishes, its checkpoint is written
    (the run has no periodic ones), status interrupted, exit 143, and `--resume` continues
    from it to the end."""
    from rlscale.cli import main

    run = tmp_path / "run"
    # No periodic checkpoints: the only one is the interruption's (the step under way when the
    # signal lands finishes first: signals.finish_step_first).
    args = [a for a in overrides(run, uninterrupted[0]) if not a.startswith(("checkpoint.", "steps="))] + [
        "steps=4", "checkpoint.keep=1"]
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "rlscale.cli", "run", "configs/quickstart.yaml", *args],
                                cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + 400
            while not ((run / "metrics.jsonl").is_file() and len(rows(run)) >= 3):  # steps 0..2 logged
                assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before step 2"
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=180) == 128 + signal.SIGTERM  # a clean stop, not an abort (134)
        finally:
            if proc.poll() is None:
                kill_tree(proc)
    said = stderr.read_text()
    assert f"continue it with: rlscale run --resume {run}" in said
    assert "SIGTERM received" not in said and "Traceback" not in said  # no C++ stack dump, no traceback
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    (ckpt,) = complete_checkpoints(run)
    assert str(ckpt) == info["interrupt_checkpoint"]
    assert read_loop_state(ckpt).step == rows(run)[-1]["step"] >= 2  # the last logged step, whole
    assert main(["run", "--resume", str(run)]) == 0
    assert [r["step"] for r in rows(run)] == list(range(5))
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_resume_refuses_changed_keys_and_a_run_without_checkpoints(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    from rlscale.config import to_yaml

    (run / "config.yaml").write_text(to_yaml(load_config("configs/quickstart.yaml", [f"run_dir={run}"])))
    with pytest.raises(ConfigError, match=r"cannot change mid-run: algo.lr: 0.0001 -> 0.001"):
        resume_config(run, None, ["algo.lr=1e-3"])
    cfg = resume_config(run, None, ["steps=200", "progress=false"])  # extending a run is fine
    assert cfg.steps == 200
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        checkpoint_to_resume(run, cfg)


@pytest.mark.integration
def test_two_fsdp_ranks_and_two_engines_run_the_same_steps(tmp_path, uninterrupted):
    """`learner.num_workers=2 learner.strategy=fsdp` (two learner ranks over gloo) and two
    rollout workers (each step's prompts spread by outstanding tokens) train the quickstart
    like one learner and one engine: the same samples, and each step's update statistics
    equal to float tolerance (measured 2026-11-30, AMD EPYC: within 1e-7 relative). The
    weights go to the engines by the shared_file transfer (the reference used object_store)."""
    from rlscale.orchestrator import Orchestrator

    cache, whole = uninterrupted
    run = tmp_path / "fsdp"
    args = [a for a in overrides(run, cache) if not a.startswith(("steps=", "checkpoint."))]
    Orchestrator(load_config("configs/quickstart.yaml", args + [
        "steps=2", "learner.num_workers=2", "learner.strategy=fsdp", "rollout.weight_transfer=shared_file",
        "rollout.num_workers=2"])).run()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and len(info["actor_pids"]["learner"]) == 2
    assert len(info["actor_pids"]["rollout_workers"]) == 2
    # shared_file: rank 0 wrote each version once under /dev/shm; all of it is gone at the end.
    assert not list(Path("/dev/shm").glob(f"rlscale-weights-{info['actor_pids']['learner'][0]}-learner-*"))
    for a, b in zip(rows(run)[1:], rows(whole)[1:3]):
        assert (a["step"], a["reward_mean"], a["tokens_trained"]) == (b["step"], b["reward_mean"], b["tokens_trained"])
        for k in ("loss", "grad_norm", "entropy", "val_mean_at_k"):
            assert (a[k] is None and b[k] is None) or a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-7), (a["step"], k)
