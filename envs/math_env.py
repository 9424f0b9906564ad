"""Single-step gymnasium environment over the arithmetic task family.

Observation: the prompt text. Action: the completion text. Reward: 1.0 if the
completion's single ``\\boxed{}`` answer verifies against the gold answer,
else 0.0 (see ``answer.py`` for the strict format rule). Every episode ends
after one step.

The trainer scores hundreds of completions per step, so ``score_many`` sends
them to the verifier in one batch; ``step`` goes through the same code path.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .answer import extract_boxed_answer
from .arith import ArithFamily, ArithProblem
from .base import TextEnv
from .verify import MathVerifier

MAX_PROMPT_CHARS = 64  # longest prompt (difficulty 6, 3-digit operands) is ~34


class MathEnv(TextEnv):
    def __init__(
        self,
        split: str = "train",
        min_difficulty: int = 1,
        max_difficulty: int = 3,
        max_operand: int | None = None,
        max_completion_chars: int = 256,
        verifier: MathVerifier | None = None,
        verifier_timeout_s: float = 2.0,
    ):
        super().__init__(split, max_completion_chars, MAX_PROMPT_CHARS)
        self.family = ArithFamily(min_difficulty, max_difficulty, max_operand)
        self._owns_verifier = verifier is None
        # Cheap: the verifier's child process starts on first use.
        self.verifier = verifier if verifier is not None else MathVerifier(verifier_timeout_s)

    def sample_problem(self, rng: np.random.Generator) -> ArithProblem:
        return self.family.sample(rng, self.split)

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
        extracted = [
            extract_boxed_answer(str(c), self.max_completion_chars) for c in completions
        ]
        to_verify = [i for i, (_, reason) in enumerate(extracted) if reason == "ok"]
        verdicts = self.verifier.verify_many(
            [(problems[i].answer, extracted[i][0]) for i in to_verify]
        )
        verdict_of = dict(zip(to_verify, verdicts))

        results = []
        for i, (problem, (answer, reason)) in enumerate(zip(problems, extracted)):
            correct = False
            if i in verdict_of:
                correct, reason = verdict_of[i].correct, verdict_of[i].reason
            info = {
                "answer": answer,
                "gold": problem.answer,
                "reason": reason,
                "difficulty": problem.difficulty,
            }
            results.append((1.0 if correct else 0.0, info))
        return results

    def close(self) -> None:
        if self._owns_verifier:
            self.verifier.close()
        super().close()
