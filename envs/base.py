"""The contract every rlscale environment follows.

An environment is a ``gymnasium.Env`` whose observation is prompt text, whose action is
completion text and whose reward comes from verification. ``info`` carries the verdict
details, at least ``reason`` (why the reward is what it is).

The trainer never calls ``reset``/``step`` in its hot loop: it draws problems with
``reset(seed=...)`` + ``.problem`` and scores hundreds of completions per step with one
``score_many`` call. ``step`` goes through that same ``score_many``, so both paths give
the same reward.

Multi-turn: an environment with ``max_turns > 1`` may answer a completion with
``feedback(...)``, a new observation (e.g. the failing tests). The episode then continues:
the policy sees prompt + completion + feedback and writes the next completion. Feedback
text is the environment's, not the policy's, so the learner masks it out of the loss.

Problems are plain picklable objects with a ``prompt: str`` attribute; they travel
between processes (the trainer sends them to rollout workers).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

SPLITS = ("train", "val")
# Printable ASCII plus newline and tab: everything prompts and well-formed completions use.
CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n\t"


class Problem(Protocol):
    prompt: str


class TextEnv(gymnasium.Env):
    """Base class: subclasses implement ``sample_problem`` and ``score_many``; multi-turn
    ones also set ``max_turns`` and implement ``feedback``."""

    metadata = {"render_modes": []}
    max_turns: int = 1

    def __init__(self, split: str = "train", max_completion_chars: int = 256, max_prompt_chars: int = 4096):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if max_completion_chars <= 0:
            raise ValueError(f"max_completion_chars must be > 0, got {max_completion_chars}")
        self.split = split
        self.max_completion_chars = int(max_completion_chars)
        self.observation_space = spaces.Text(max_length=max_prompt_chars, min_length=0, charset=CHARSET)
        self.action_space = spaces.Text(max_length=self.max_completion_chars, min_length=0, charset=CHARSET)
        self._problem: Any = None
        self._turn = 0

    # ---- what subclasses provide -------------------------------------------------------
    def sample_problem(self, rng: np.random.Generator) -> Problem:
        """One problem of ``self.split``, drawn with ``rng`` (deterministic given its seed)."""
        raise NotImplementedError

    def score_many(self, problems: Sequence[Any], completions: Sequence[str]) -> list[tuple[float, dict[str, Any]]]:
        """(reward, info) per (problem, completion) pair, in order; info has ``reason``."""
        raise NotImplementedError

    def feedback(self, problem: Any, completion: str, reward: float, info: dict[str, Any], turn: int) -> str | None:
        """Multi-turn only: the next observation after ``completion`` scored ``reward`` on
        turn ``turn`` (0-based), or None to end the episode. Single-turn envs end at once."""
        return None

    def problem_info(self, problem: Any) -> dict[str, Any]:
        """What ``reset`` reports about a problem in ``info``."""
        return {}

    def distinct_problems_at_most(self) -> int | None:
        """An upper bound on the distinct prompts of ``self.split``, or None when unknown;
        lets a caller refuse a request for more distinct problems at once."""
        return None

    # ---- the gymnasium API, on top of the above ----------------------------------------
    @property
    def problem(self) -> Any:
        """The problem of the current episode (None before reset / after it ends)."""
        return self._problem

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        problem = (options or {}).get("problem")
        if problem is None:
            problem = self.sample_problem(self.np_random)
        info = self.problem_info(problem)  # may reject a problem of the wrong kind
        self._problem, self._turn = problem, 0
        return problem.prompt, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._problem is None:
            raise RuntimeError(f"{type(self).__name__}.step() called without an active episode: call reset() first")
        problem = self._problem
        reward, info = self.score_many([problem], [action])[0]
        turn, self._turn = self._turn, self._turn + 1
        next_obs = self.feedback(problem, action, reward, info, turn) if self._turn < self.max_turns else None
        if next_obs is None:
            self._problem = None  # the episode is over
            return "", reward, True, False, info
        return next_obs, reward, False, False, info
