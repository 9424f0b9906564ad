"""scripts/slurm/launch.sh under a real SLURM: Debian's slurmctld and two slurmd (nodes n1
and n2, one CPU each) on this machine, with their own munge daemon, config and ports.
`sbatch --nodes=2 --wait` runs the launcher, which starts a Ray head and a Ray worker as
job steps and submits the run as a Ray job. Needs root and Debian's slurmctld, slurmd,
slurm-client and munge; `make test-slurm` installs them where it can
(scripts/setup_test_tools.sh) and runs it (about 80 s: `make test` skips it, for time).

Also checked without SLURM: the launcher's commands (RLSCALE_LAUNCH_DRY_RUN) are the
README's cluster commands, with the allocation's nodes, CPUs and GPUs filled in.
Every daemon this test starts is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from test_cluster import ROOT, TEST_OVERRIDES, VENV_BIN, free_ports, kill_leftovers, readme_commands

LAUNCHER = ROOT / "scripts" / "slurm" / "launch.sh"
SLURM_TOOLS = ("slurmctld", "slurmd", "sbatch", "sinfo", "munged")


def slurm_conf(d: Path, ctld_port: int, node_ports: list[int]) -> str:
    nodes = "\n".join(f"NodeName=n{i} NodeHostname=localhost NodeAddr=127.0.0.1 Port={p} CPUs=1 RealMemory=2000"
                      for i, p in enumerate(node_ports, 1))
    return f"""ClusterName=rlscaletest
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
{nodes}
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def launcher_dry_run(env_extra: dict, args: list[str], tmp_path: Path) -> list[list[str]]:
    """launch.sh's commands for a 3-node allocation, with a stand-in for SLURM's `scontrol
    show hostnames` (the one SLURM command the launcher runs itself before srun)."""
    bin_dir = tmp_path / "standin-bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\n# stand-in for SLURM's scontrol\nprintf 'n1\\nn2\\nn3\\n'\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RLSCALE_LAUNCH_DRY_RUN": "1",
                        "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_ID": "42", "SLURM_SUBMIT_DIR": str(ROOT)} | env_extra
    out = subprocess.run(["bash", str(LAUNCHER), *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines()]


def test_the_launcher_runs_the_readme_cluster_commands_on_its_allocation(tmp_path):
    cmds = launcher_dry_run({"SLURM_CPUS_ON_NODE": "8", "SLURM_GPUS_ON_NODE": "2", "RLSCALE_HEAD_IP": "10.0.0.7",
                             "RLSCALE_RUNS": "/shared/runs"},
                            ["configs/quickstart.yaml", "algo.loss=dapo"], tmp_path)
    readme = readme_commands()
    step = ["srun", "--nodes=1", "--ntasks=1", "--overlap"]
    resources = ["--num-cpus=8", "--num-gpus=2", "--block"]
    assert cmds[0] == step + ["-w", "n1", *readme["head"][:3], "--node-ip-address=10.0.0.7",
                              *readme["head"][3:-1], *resources]
    worker = [w.replace("HEAD", "10.0.0.7") for w in readme["worker"][:-1]] + resources
    assert cmds[1:3] == [step + ["-w", "n2", *worker], step + ["-w", "n3", *worker]]
    assert cmds[3] == [w.replace("HEAD", "10.0.0.7").replace("/shared/runs/quickstart", "/shared/runs/quickstart-42")
                       for w in readme["submit"]] + ["algo.loss=dapo"]
    assert len(cmds) == 4


class SlurmOnThisMachine:
    """slurmctld + slurmd n1, n2 + munged, each a child of this test, in one temp dir."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="rls-slurm-"))  # short: munge's socket path
        self.dir.chmod(0o711)  # munged wants its socket's directory searchable by all
        ctld, n1, n2 = free_ports(3)
        (self.dir / "state").mkdir()
        (self.dir / "munge.key").write_bytes(os.urandom(128))
        (self.dir / "munge.key").chmod(0o600)
        (self.dir / "slurm.conf").write_text(slurm_conf(self.dir, ctld, [n1, n2]))
        self.env = os.environ | {"SLURM_CONF": str(self.dir / "slurm.conf")}
        self.procs: list[subprocess.Popen] = []
        d = self.dir
        self._start(["munged", "-F", f"--socket={d}/munge.sock", f"--key-file={d}/munge.key",
                     f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"])
        time.sleep(0.5)
        self._start(["slurmctld", "-D", "-i"])
        time.sleep(1)
        self._start(["slurmd", "-D", "-N", "n1"])
        self._start(["slurmd", "-D", "-N", "n2"])

    def _start(self, cmd: list[str]) -> None:
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True))

    def wait_idle(self, n: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            assert not dead, f"{dead} exited; logs in {self.dir}"
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True, text=True)
            if sum(line.split()[-1] == "idle" for line in out.stdout.splitlines()) == n:
                return
            time.sleep(1)
        raise AssertionError(f"SLURM nodes not idle: {out.stdout} {out.stderr}; logs in {self.dir}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.integration
@pytest.mark.skipif(os.environ.get("RLSCALE_SLURM_TEST") != "1",
                    reason="about 80 s, kept out of `make test` for time: run `make test-slurm`")
@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in SLURM_TOOLS),
                    reason="needs root and Debian's slurmctld, slurmd, slurm-client, munge "
                           "(scripts/setup_test_tools.sh installs them as root)")
def test_sbatch_launch_sh_runs_a_job_across_two_slurm_nodes(tiny_model, tmp_path):
    slurm = SlurmOnThisMachine()
    ray_tmp = slurm.dir / "ray"  # RAY_TMPDIR: this test's Ray session files, not /tmp/ray
    port, dash = free_ports(2)
    runs = tmp_path / "runs"
    env = {k: v for k, v in slurm.env.items() if not k.startswith(("RAY_", "SLURM_JOB", "VIRTUAL_ENV"))} | {
        "RLSCALE_RUNS": str(runs), "RAY_PORT": str(port), "RAY_DASHBOARD_PORT": str(dash),
        "RAY_TMPDIR": str(ray_tmp), "PATH": os.environ["PATH"].replace(f"{VENV_BIN}{os.pathsep}", "")}
    out = slurm.dir / "job.out"
    try:
        slurm.wait_idle(2)
        job = subprocess.run(["sbatch", "--wait", "--nodes=2", f"--output={out}", str(LAUNCHER),
                              "configs/quickstart.yaml", f"model.path={tiny_model}",
                              f"pretrain.cache_dir={tmp_path / 'cache'}", *TEST_OVERRIDES],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
        log = out.read_text() if out.exists() else ""
        assert job.returncode == 0, (job.stdout + job.stderr + log)[-6000:]
        (run_dir,) = runs.iterdir()
        assert run_dir.name.startswith("quickstart-")
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished" and (run_dir / "summary.json").exists()
        learner, (worker,) = info["actor_nodes"]["learner"], info["actor_nodes"]["rollout_workers"]
        assert learner != worker, "the learner and the rollout worker shared a node"
        assert "Job 'raysubmit_" in log and "succeeded" in log, log[-3000:]
    finally:
        slurm.stop()
        left = kill_leftovers([str(slurm.dir)])
        shutil.rmtree(slurm.dir, ignore_errors=True)
    assert not left, f"processes outlived the allocation: {left}"
