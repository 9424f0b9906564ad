"""Gymnasium environment over the arithmetic task family.

Observation: the prompt text. Action: the completion text. Reward: 1.0 if the
completion's single ``\\boxed{}`` answer verifies against the gold answer,
else 0.0 (see ``answer.py`` for the strict format rule).

With ``max_turns=1`` (the default) every episode ends after one step. With
``max_turns > 1`` a wrong or malformed answer is answered with
``"\\nThat is not correct (<reason>). Try again.\\nA: "`` (never the gold) and the
policy answers again, up to ``max_turns`` answers; a correct answer ends the
episode. The episode reward is the reward of its last turn: 1.0 iff some turn was
correct (per-step rewards are 0 until then, so their sum is the same number).

The trainer scores hundreds of completions per step, so ``score_many`` sends
them to the verifier in one batch; ``step`` goes through the same code path.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .arith import ArithFamily, ArithProblem
from .math_scoring import GoldAnswerEnv
from .verify import MathVerifier

MAX_PROMPT_CHARS = 64  # longest prompt (difficulty 6, 3-digit operands) is ~34


class MathEnv(GoldAnswerEnv):
    def __init__(
        self,
        split: str = "train",
        min_difficulty: int = 1,
        max_difficulty: int = 3,
        max_operand: int | None = None,
        max_completion_chars: int = 256,
        verifier: MathVerifier | None = None,
        verifier_timeout_s: float = 2.0,
        max_turns: int = 1,
    ):
        super().__init__(split, max_completion_chars, MAX_PROMPT_CHARS, verifier, verifier_timeout_s, max_turns)
        self.family = ArithFamily(min_difficulty, max_difficulty, max_operand)

    def sample_problem(self, rng: np.random.Generator) -> ArithProblem:
        return self.family.sample(rng, self.split)

    def distinct_problems_at_most(self) -> int | None:
        return self.family.distinct_at_most(self.split)

    def problem_info(self, problem: ArithProblem) -> dict[str, Any]:
        if not isinstance(problem, ArithProblem):
            raise TypeError(f"options['problem'] must be an ArithProblem, got {type(problem)!r}")
        return {"answer": problem.answer, "gold": problem.answer, "difficulty": problem.difficulty}

    def score(self, problem: ArithProblem, completion: str) -> tuple[float, dict[str, Any]]:
        return self.score_many([problem], [completion])[0]

    def score_many(
        self, problems: Sequence[ArithProblem], completions: Sequence[str]
    ) -> list[tuple[float, dict[str, Any]]]:
        """(reward, info) per completion; one verifier round trip for the batch."""
        if len(problems) != len(completions):
            raise ValueError(
                f"got {len(problems)} problems but {len(completions)} completions"
            )
        scored = self.score_gold([p.answer for p in problems], completions)
        return [
            (reward, {"answer": answer, "gold": p.answer, "reason": reason, "difficulty": p.difficulty})
            for p, (reward, answer, reason) in zip(problems, scored)
        ]
