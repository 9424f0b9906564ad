#!/usr/bin/env bash
# What `make test-slurm` needs beyond .venv: Debian's SLURM daemons and munge, so that
# tests/test_slurm.py runs scripts/slurm/launch.sh under a real slurmctld and two slurmd
# on this machine. Installed only as root with apt (CI); elsewhere that test is skipped
# and says what to install. Quick when already installed.
set -euo pipefail
need=(slurmctld slurmd sbatch munged)
missing=0
for tool in "${need[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing=1; done
((missing)) || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing slurmctld, slurmd, slurm-client and munge (apt) for tests/test_slurm.py"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge; } \
    >/dev/null 2>&1 || echo "setup: could not install SLURM; tests/test_slurm.py will be skipped" >&2
else
  echo "setup: SLURM not found; tests/test_slurm.py will be skipped (install Debian's slurmctld slurmd slurm-client munge)" >&2
fi
