"""The README's cluster commands, run as written on a real two-node Ray on this machine:
`ray start --head`, a second `ray start --address` with its own CPU and temp dir, then
`ray job submit ... -- rlscale run`. The learner and the rollout worker each need the one CPU
a node offers, so Ray has to place them on different nodes; run.json says where they ran.

Only the Ray processes this test started are stopped: each node's `ray start --block`
gets SIGTERM by pid (it stops its own node's processes), and anything left that names the
test's own temp dirs is killed by pid. Never `ray stop`, which stops every Ray on the host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl", "samples.jsonl", "summary.json", "checkpoints")
# The README's config, shortened to two steps on the random-weight xs model (no pre-training).
TEST_OVERRIDES = ["steps=2", "eval.every=2", "eval.n_problems=16", "eval.k=2", "eval.final_n_problems=16",
                  "rollout.prompts_per_step=8", "checkpoint.every=1"]


def readme_cluster_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Cluster\n"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def readme_commands() -> dict[str, list[str]]:
    """The block's set-up lines and its three commands, each split into words (comments
    dropped, continuation lines joined)."""
    lines = readme_cluster_block().replace("\\\n", " ").splitlines()
    words = [shlex.split(line, comments=True) for line in lines]
    words = [w for w in words if w]
    by_start = {"head": ["ray", "start", "--head"], "worker": ["ray", "start", "--address=HEAD:6379"],
                "submit": ["ray", "job", "submit"], "activate": [".", ".venv/bin/activate"],
                "auth": ["export", "RAY_AUTH_MODE=token"]}
    found = {name: [w for w in words if w[:len(start)] == start] for name, start in by_start.items()}
    assert all(len(v) == 1 for v in found.values()), f"README's cluster block changed: {found}"
    return {name: v[0] for name, v in found.items()}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def substitute(words: list[str], table: dict[str, str]) -> list[str]:
    out = []
    for w in words:
        for old, new in table.items():
            w = w.replace(old, new)
        out.append(w)
    return out


def ray_env(token: str) -> dict[str, str]:
    """The README's set-up lines: the venv activated (its bin first on PATH) and token auth,
    with a token of this test's own instead of ~/.ray/auth_token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(VENV_BIN.parent),
               RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    return env


def cluster_nodes(dashboard: str, env: dict) -> list[dict]:
    out = subprocess.run([str(VENV_BIN / "ray"), "list", "nodes", "--address", dashboard, "--format", "json",
                          "--filter", "state=ALIVE"], env=env, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip().startswith("[") else []


def stop_own_ray(node_procs: list[subprocess.Popen], temp_dirs: list[str]) -> list[str]:
    """SIGTERM each node's `ray start --block` (by pid), wait, then kill by pid whatever is
    left that names one of this test's temp dirs. Returns the leftovers' command lines."""
    for p in node_procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in node_procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    time.sleep(2)
    return kill_leftovers(temp_dirs)


def kill_leftovers(temp_dirs: list[str]) -> list[str]:
    """Kill, by pid, every process whose command line names one of this test's temp dirs
    (nobody else's can); returns their command lines."""
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if any(d in cmd for d in temp_dirs):
            left.append(cmd[:200])
            try:
                proc.kill()
            except psutil.Error:
                pass
    return left


@pytest.mark.integration
def test_readme_cluster_commands_run_a_job_across_two_ray_nodes(tiny_model, tmp_path):
    cmds = readme_commands()
    token = secrets.token_hex(32)
    env = ray_env(token)
    # Short temp dirs: Ray's unix sockets live under them (108-byte path limit).
    head_tmp, node_tmp = tempfile.mkdtemp(prefix="rls-head-"), tempfile.mkdtemp(prefix="rls-node-")
    port, dash, agent_head, agent_node, client = free_ports(5)
    run_dir = tmp_path / "shared" / "runs" / "quickstart"
    table = {"HEAD:6379": f"127.0.0.1:{port}", "http://HEAD:8265": f"http://127.0.0.1:{dash}",
             "--port=6379": f"--port={port}", "--dashboard-port=8265": f"--dashboard-port={dash}",
             "/shared/runs/quickstart": str(run_dir)}
    # What only a shared test host needs: one CPU per node (so the two actors must go to
    # different nodes), ports of its own, temp dirs of its own.
    head_cmd = substitute(cmds["head"], table) + [
        "--num-cpus=1", f"--temp-dir={head_tmp}", f"--dashboard-agent-listen-port={agent_head}",
        f"--ray-client-server-port={client}", "--disable-usage-stats"]
    node_cmd = substitute(cmds["worker"], table) + [
        "--num-cpus=1", f"--temp-dir={node_tmp}", f"--dashboard-agent-listen-port={agent_node}",
        '--resources={"second_node": 1}', "--disable-usage-stats"]
    # The working dir: a copy of the checkout's tracked files without .gitignore, plus a
    # venv, a runs/ and a cache that must not travel (runtime_env.yaml's excludes).
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for rel in tracked:
        if rel != ".gitignore" and (ROOT / rel).is_file():
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, checkout / rel)
    for junk in (".venv/bin/junk", "runs/old/metrics.jsonl", ".cache/rlscale/junk", "reports/junk.pdf"):
        (checkout / junk).parent.mkdir(parents=True, exist_ok=True)
        (checkout / junk).write_text("must not be uploaded\n")
    submit_cmd = substitute(cmds["submit"], table) + [
        f"model.path={tiny_model}", f"pretrain.cache_dir={tmp_path / 'cache'}"] + TEST_OVERRIDES
    assert submit_cmd[submit_cmd.index("--") + 1] == "rlscale"

    procs: list[subprocess.Popen] = []
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("head", "node")}
    try:
        procs.append(subprocess.Popen(head_cmd, env=env, cwd=checkout, stdout=logs["head"],
                                      stderr=subprocess.STDOUT, start_new_session=True))
        dashboard = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 120
        while len(cluster_nodes(dashboard, env)) < 1 and time.time() < deadline:
            assert procs[0].poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(2)
        procs.append(subprocess.Popen(node_cmd, env=env, cwd=checkout, stdout=logs["node"],
                                      stderr=subprocess.STDOUT, start_new_session=True))
        while len(nodes := cluster_nodes(dashboard, env)) < 2 and time.time() < deadline:
            assert procs[1].poll() is None, (tmp_path / "node.log").read_text()[-3000:]
            time.sleep(2)
        assert len(nodes) == 2, "the second Ray node did not join"

        job = subprocess.run(submit_cmd, env=env, cwd=checkout, capture_output=True, text=True, timeout=420)
        assert job.returncode == 0, (job.stdout + job.stderr)[-6000:]

        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished"
        for name in RUN_FILES:
            assert (run_dir / name).exists(), f"{name} missing from {sorted(os.listdir(run_dir))}"
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if r.get("reward_mean") is not None] == [1, 2]
        node_ids = {n["node_id"] for n in nodes}
        learner_node, (worker_node,) = info["actor_nodes"]["learner"], info["actor_nodes"]["rollout_workers"]
        assert {learner_node, worker_node} == node_ids, (info["actor_nodes"], node_ids)

        # What travelled: the package Ray unpacked on the head holds the code, not the junk.
        # (session_latest links to the session dir)
        (package,) = [p for p in Path(head_tmp).glob("session_2*/runtime_resources/working_dir_files/_ray_pkg_*")
                      if p.is_dir()]
        uploaded = {p.relative_to(package).parts[0] for p in package.rglob("*")}
        assert {"rlscale", "envs", "configs", "pyproject.toml"} <= uploaded
        assert not uploaded & {".venv", "runs", ".cache", "reports"}, uploaded
    finally:
        left = stop_own_ray(procs, [head_tmp, node_tmp])
        for f in logs.values():
            f.close()
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(node_tmp, ignore_errors=True)
    assert not left, f"Ray processes outlived their `ray start --block`: {left}"


def test_a_local_run_starts_its_own_ray_whatever_ray_start_recorded(monkeypatch):
    """ray.address null starts a Ray of the run's own, even where a `ray start` on this host
    recorded its cluster (RAY_TMPDIR/ray/ray_current_cluster; plain ray.init() would join
    that one, or fail when it is gone)."""
    import ray

    from rlscale.config import load_config
    from rlscale.raystart import init_ray

    tmp = tempfile.mkdtemp(prefix="rls-rec-")  # short: Ray's sockets live under it
    try:
        (Path(tmp) / "ray").mkdir()
        (Path(tmp) / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_ports(1)[0]}")
        monkeypatch.setenv("RAY_TMPDIR", tmp)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        init_ray(load_config(str(ROOT / "configs" / "quickstart.yaml"), ["ray.num_cpus=1"]))
        assert ray.cluster_resources().get("CPU") == 1
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
