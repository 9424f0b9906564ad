# The two commands of the README. Each sets itself up on first use.
.PHONY: quickstart test test-slurm setup
setup:
	@bash scripts/setup_env.sh

# Pre-train xs (cached), run GRPO, then fit the run's curves into <run_dir>/report/.
# The extrapolation check fits the first half of the run's compute and scores the
# prediction on every later evaluation against persistence.
quickstart: setup
	@run=runs/quickstart-$$(date +%Y%m%d-%H%M%S); \
	.venv/bin/rlscale run configs/quickstart.yaml run_dir=$$run && \
	.venv/bin/rlscale analyze $$run --out $$run/report --fit-until 0.5

test: setup
	.venv/bin/python -m pytest -q tests

# scripts/slurm/launch.sh under a real slurmctld and two slurmd on this machine (about 80 s;
# installs Debian's SLURM and munge when run as root). Kept out of `make test` for time.
test-slurm: setup
	@bash scripts/setup_test_tools.sh
	RLSCALE_SLURM_TEST=1 .venv/bin/python -m pytest -q tests/test_slurm.py
