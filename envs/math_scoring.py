"""What every gold-answer math environment shares: strict extraction + math-verify
scoring in one batch, and the "try again" feedback of multi-turn episodes.

Used by ``MathEnv`` (arithmetic) and ``MathJSONLEnv`` (user datasets); the
reasoning-gym adapter extracts the same way but scores with reasoning-gym.
"""

from __future__ import annotations

from typing import Any, Sequence

from .answer import MAX_ANSWER_CHARS, extract_boxed_answer
from .base import TextEnv
from .verify import MathVerifier

# What the policy sees after a wrong or malformed answer in a multi-turn episode. It
# names the reason (a fixed vocabulary, see answer.py / verify.py) and never the gold.
RETRY_FEEDBACK = "\nThat is not correct ({reason}). Try again.\nA: "


def score_against_gold(
    verifier: MathVerifier,
    golds: Sequence[str],
    completions: Sequence[str],
    max_completion_chars: int,
    max_answer_chars: int = MAX_ANSWER_CHARS,
) -> list[tuple[float, str | None, str]]:
    """(reward, extracted answer, reason) per completion; reward is 1.0 only when the
    completion's single ``\\boxed{}`` verifies equal to its gold. One verifier round trip."""
    if len(golds) != len(completions):
        raise ValueError(f"got {len(golds)} problems but {len(completions)} completions")
    extracted = [extract_boxed_answer(str(c), max_completion_chars, max_answer_chars) for c in completions]
    to_verify = [i for i, (_, reason) in enumerate(extracted) if reason == "ok"]
    verdicts = verifier.verify_many([(golds[i], extracted[i][0]) for i in to_verify])
    verdict_of = dict(zip(to_verify, verdicts))
    results = []
    for i, (answer, reason) in enumerate(extracted):
        correct = False
        if i in verdict_of:
            correct, reason = verdict_of[i].correct, verdict_of[i].reason
        results.append((1.0 if correct else 0.0, answer, reason))
    return results


def check_max_turns(max_turns: Any) -> int:
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ValueError(f"max_turns must be an integer >= 1 (1 = single-turn), got {max_turns!r}")
    return max_turns


def retry_feedback(reward: float, info: dict[str, Any]) -> str | None:
    """Multi-turn rule shared by the math envs: a full-credit answer ends the episode,
    anything else is answered with RETRY_FEEDBACK."""
    if reward >= 1.0:
        return None
    return RETRY_FEEDBACK.format(reason=info.get("reason", "wrong"))


class GoldAnswerEnv(TextEnv):
    """A math env whose problems carry a gold ``answer``: strict extraction, math-verify
    scoring, and the "try again" multi-turn rule. Subclasses add the problem source and
    ``score_many`` (to choose what ``info`` reports)."""

    def __init__(self, split: str, max_completion_chars: int, max_prompt_chars: int,
                 verifier: MathVerifier | None, verifier_timeout_s: float, max_turns: int):
        super().__init__(split, max_completion_chars, max_prompt_chars)
        self.max_turns = check_max_turns(max_turns)
        self._owns_verifier = verifier is None
        # Cheap: the verifier's child process starts on first use.
        self.verifier = verifier if verifier is not None else MathVerifier(verifier_timeout_s)

    def score_gold(self, golds: Sequence[str], completions: Sequence[str],
                   max_answer_chars: int = MAX_ANSWER_CHARS) -> list[tuple[float, str | None, str]]:
        return score_against_gold(self.verifier, golds, completions, self.max_completion_chars, max_answer_chars)

    def feedback(self, problem, completion, reward, info, turn) -> str | None:
        return retry_feedback(reward, info)

    def close(self) -> None:
        if self._owns_verifier:
            self.verifier.close()
        super().close()
