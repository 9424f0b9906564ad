# The two commands of the README. Each sets itself up on first use.
.PHONY: quickstart test setup
setup:
	@bash scripts/setup_env.sh

# Pre-train xs (cached), run GRPO, then fit the run's curves into <run_dir>/report/.
# The extrapolation check fits the first 75% of the run's compute: the quickstart's curve
# only starts to level off after ~60 steps, and before that the asymptote is undetermined.
quickstart: setup
	@run=runs/quickstart-$$(date +%Y%m%d-%H%M%S); \
	.venv/bin/rlscale run configs/quickstart.yaml run_dir=$$run && \
	.venv/bin/rlscale analyze $$run --out $$run/report --fit-until 0.75

test: setup
	.venv/bin/python -m pytest -q tests
