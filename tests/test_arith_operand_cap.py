"""The arithmetic family's max_operand knob (single-digit tasks for the tiniest models)."""

import gymnasium
import pytest

import rlscale_envs  # noqa: F401
from rlscale_envs.arith import ArithFamily, parse_expression


def test_max_operand_caps_every_operand_and_keeps_splits_apart():
    family = ArithFamily(1, 3, max_operand=9)
    train = family.problems(300, seed=0, split="train")
    val = family.problems(100, seed=0, split="val")
    for p in train + val:
        operands, _ = parse_expression(p.expression)
        assert all(0 <= x <= 9 for x in operands), p.expression
    assert {p.difficulty for p in train} == {1, 2, 3}
    assert not {p.expression for p in train} & {p.expression for p in val}


def test_default_operands_are_unchanged():
    seen = [x for p in ArithFamily(1, 1).problems(200, seed=1, split="train")
            for x in parse_expression(p.expression)[0]]
    assert max(seen) > 9  # two-digit operands still appear without the cap


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "9"])
def test_bad_max_operand_is_refused(bad):
    with pytest.raises(ValueError, match="max_operand"):
        ArithFamily(1, 3, max_operand=bad)


def test_env_kwarg_reaches_the_family():
    env = gymnasium.make("rlscale/Arith-v0", split="val", max_operand=5)
    try:
        for seed in range(20):
            env.reset(seed=seed)
            assert max(parse_expression(env.unwrapped.problem.expression)[0]) <= 5
    finally:
        env.close()
