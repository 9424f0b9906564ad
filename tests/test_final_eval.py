"""eval.final_n_problems: the final evaluation on a superset of the curve's problems."""

import numpy as np
import pytest

from rlscale.collect import draw_problems
from rlscale.config import ConfigError, load_config
from rlscale.orchestrator import Orchestrator
from rlscale_envs import make_text_env

QUICKSTART = "configs/quickstart.yaml"


def test_final_problems_must_be_a_superset_and_exist(capsys):
    with pytest.raises(ConfigError, match=r"eval.final_n_problems=100 must be >= eval.n_problems=200"):
        load_config(QUICKSTART, ["eval.final_n_problems=100"])
    # One-step single-digit chains: 200 expressions, about 20 of them in the validation split.
    with pytest.raises(ConfigError, match=r"eval.final_n_problems=300: the validation split of rlscale/Arith-v0 "
                                          r"with these env.kwargs holds at most \d+ distinct problems"):
        load_config(QUICKSTART, ["env.kwargs.max_difficulty=1", "eval.n_problems=10", "eval.final_n_problems=300"])
    from rlscale.cli import main

    assert main(["run", QUICKSTART, "eval.final_n_problems=50"]) == 2
    assert "eval.final_n_problems=50 must be >=" in capsys.readouterr().err
    assert load_config(QUICKSTART, ["eval.final_n_problems=2500"]).eval.final_n_problems == 2500


def test_the_curves_problems_are_the_first_of_the_final_draw():
    env = make_text_env("rlscale/Arith-v0", {"max_difficulty": 3, "max_operand": 9}, "val")
    curve = draw_problems(env, 200, 1234, distinct=True)
    final = draw_problems(env, 2500, 1234, distinct=True)
    assert [p.prompt for p in final[:200]] == [p.prompt for p in curve]
    assert len({p.prompt for p in final}) == 2500


def test_eval_rows_describe_the_curves_problems_and_add_the_final_set():
    orch = Orchestrator(load_config(QUICKSTART, ["eval.k=4", "eval.final_n_problems=2500"]))
    orch.n_curve_problems = 200
    rng = np.random.default_rng(0)
    # Worst case for the SE: the k samples of a problem agree, so a problem scores 0 or 1.
    rewards = [[float(x)] * 4 for x in rng.random(2500) < 0.5]
    row = orch._eval_fields(rewards)
    assert row["val_n_problems"] == 200 and row["final_eval_n_problems"] == 2500
    assert row["val_mean_at_k"] == pytest.approx(np.mean([r[0] for r in rewards[:200]]))
    assert row["final_eval_mean_at_k"] == pytest.approx(np.mean([r[0] for r in rewards]))
    assert row["final_eval_mean_at_k_se"] <= 0.0101 < row["val_mean_at_k_se"]
    # An evaluation of the curve's problems only (every one but the last) has no final_eval_* fields.
    assert not any(k.startswith("final_eval") for k in orch._eval_fields(rewards[:200]))
