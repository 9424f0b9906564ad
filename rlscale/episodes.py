"""Episode bookkeeping for the rollout worker (pure Python: no vLLM, no torch).

An episode is one sampled answer to a prompt, or, for a multi-turn environment, the
alternation  answer, env feedback, answer, feedback, ...  up to ``env.max_turns``
answers. Its trajectory is ``prompt_ids + completion_ids`` where ``completion_ids``
interleaves the engine's sampled tokens with the environment's feedback tokens, and
``loss_mask`` marks which is which (1 = sampled by the policy, 0 = written by the
environment). The learner trains on, and measures entropy/KL/logprob gaps over, the
mask-1 tokens only; the sampling logprobs of feedback tokens are 0.0 placeholders.

Token ids are kept exactly as generated: the next turn's prompt is the id list
``context_ids`` itself, never a re-tokenisation of the decoded text.

Episode reward: the environment's reward for the episode's last answer (the math
envs end an episode at the first correct answer, so that is 1.0 iff some turn was
correct).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .batch import RolloutBatch

FEEDBACK_LOGPROB = 0.0  # placeholder for env-written tokens; masked out everywhere


@dataclass
class Episode:
    problem: Any
    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    sampling_logprobs: list[float] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    transcript: str = ""  # answers and feedback as text, for samples.jsonl
    last_answer: str = ""  # the latest turn's completion text: what the env scores
    turn_lens: list[tuple[int, int]] = field(default_factory=list)  # (context tokens, generated tokens) per turn
    truncated: bool = False  # the latest turn stopped at its token limit
    turn_versions: list[int] = field(default_factory=list)  # the policy version that sampled each turn
    reward: float = 0.0
    reason: str = ""
    info: dict = field(default_factory=dict)

    @property
    def context_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    @property
    def policy_version(self) -> int:
        """The oldest policy version that sampled any turn: what staleness is judged by."""
        return min(self.turn_versions, default=0)

    @property
    def turns(self) -> int:
        return len(self.turn_lens)

    def add_turn(self, token_ids, logprobs, text: str, truncated: bool, policy_version: int = 0) -> None:
        token_ids, logprobs = list(token_ids), list(logprobs)
        if len(token_ids) != len(logprobs):
            raise ValueError(f"a turn has {len(token_ids)} tokens but {len(logprobs)} logprobs")
        self.turn_lens.append((len(self.prompt_ids) + len(self.completion_ids), len(token_ids)))
        self.turn_versions.append(policy_version)
        self.completion_ids += token_ids
        self.sampling_logprobs += logprobs
        self.loss_mask += [1] * len(token_ids)
        self.transcript += text
        self.last_answer, self.truncated = text, truncated

    def add_feedback(self, token_ids: list[int], text: str) -> None:
        self.completion_ids += token_ids
        self.sampling_logprobs += [FEEDBACK_LOGPROB] * len(token_ids)
        self.loss_mask += [0] * len(token_ids)
        self.transcript += text

    def room(self, max_episode_tokens: int | None, max_model_len: int) -> int:
        """Tokens the episode may still add (feedback and answers): what is left of its
        budget and of the engine's context."""
        left = max_model_len - len(self.prompt_ids) - len(self.completion_ids)
        if max_episode_tokens is not None:
            left = min(left, max_episode_tokens - len(self.completion_ids))
        return left

    def next_turn_max_tokens(self, max_tokens: int, max_episode_tokens: int | None, max_model_len: int) -> int:
        """Tokens the next answer may use: the per-turn cap, or less if room is short."""
        return min(max_tokens, self.room(max_episode_tokens, max_model_len))


def collate(episodes: list[Episode]) -> RolloutBatch:
    """The typed per-episode lists the orchestrator and learner consume."""
    return RolloutBatch(
        prompt_ids=[e.prompt_ids for e in episodes],
        completion_ids=[e.completion_ids for e in episodes],
        sampling_logprobs=[e.sampling_logprobs for e in episodes],
        loss_mask=[e.loss_mask for e in episodes],
        policy_versions=[e.policy_version for e in episodes],
        turn_versions=[e.turn_versions for e in episodes],
        turn_lens=[e.turn_lens for e in episodes],
        turns=[e.turns for e in episodes],
        prompts=[e.prompt for e in episodes],
        completions=[e.transcript for e in episodes],
        truncated=[e.truncated for e in episodes],
        rewards=[float(e.reward) for e in episodes],
        reasons=[str(e.reason) for e in episodes],
        env_names=[e.info.get("env") for e in episodes],
    )
