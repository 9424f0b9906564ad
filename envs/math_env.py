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

import gymnasium
from gymnasium import spaces

from .answer import extract_boxed_answer
from .arith import SPLITS, ArithFamily, ArithProblem
from .verify import MathVerifier

# Printable ASCII plus newline: everything prompts and well-formed completions use.
CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"
MAX_PROMPT_CHARS = 64  # longest prompt (difficulty 6, 3-digit operands) is ~34


class MathEnv(gymnasium.Env):
    metadata = {"render_modes": []}

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
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if max_completion_chars <= 0:
            raise ValueError(f"max_completion_chars must be > 0, got {max_completion_chars}")
        self.split = split
        self.family = ArithFamily(min_difficulty, max_difficulty, max_operand)
        self.max_completion_chars = int(max_completion_chars)
        self._owns_verifier = verifier is None
        # Cheap: the verifier's child process starts on first use.
        self.verifier = verifier if verifier is not None else MathVerifier(verifier_timeout_s)
        self.observation_space = spaces.Text(
            max_length=MAX_PROMPT_CHARS, min_length=0, charset=CHARSET
        )
        self.action_space = spaces.Text(
            max_length=self.max_completion_chars, min_length=0, charset=CHARSET
        )
        self._problem: ArithProblem | None = None

    @property
    def problem(self) -> ArithProblem | None:
        """The problem of the current episode (None before reset / after step)."""
        return self._problem

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        problem = (options or {}).get("problem")
        if problem is None:
            problem = self.family.sample(self.np_random, self.split)
        elif not isinstance(problem, ArithProblem):
            raise TypeError(f"options['problem'] must be an ArithProblem, got {type(problem)!r}")
        self._problem = problem
        info = {"answer": problem.answer, "gold": problem.answer, "difficulty": problem.difficulty}
        return problem.prompt, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._problem is None:
            raise RuntimeError("MathEnv.step() called without an active episode: call reset() first")
        problem, self._problem = self._problem, None  # single-step episode is now over
        reward, info = self.score(problem, action)
        return "", reward, True, False, info

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
