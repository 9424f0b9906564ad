# The two commands of the README. Each sets itself up on first use.
.PHONY: quickstart test setup
setup:
	@bash scripts/setup_env.sh

quickstart: setup
	.venv/bin/rlscale run configs/quickstart.yaml

test: setup
	.venv/bin/python -m pytest -q tests
