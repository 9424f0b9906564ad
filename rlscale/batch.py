"""What crosses a Ray boundary between the roles: plain typed dataclasses (no torch).

    RolloutWorker.generate  -> RolloutBatch   (episodes, scored, grouped by prompt)
    Orchestrator            -> TrainBatch     (what the learner needs of them)
    Learner.update          -> UpdateResult   (stats, compute, per-sample advantages)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class RolloutBatch:
    """Per-episode lists, grouped by prompt: episodes g*G .. g*G+G-1 answer prompt g."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # sampled tokens interleaved with env feedback (multi-turn)
    sampling_logprobs: list[list[float]]  # the engine's logprob of each completion token (behaviour policy)
    loss_mask: list[list[int]]  # 1 = sampled by the policy, 0 = env feedback
    policy_versions: list[int]  # the oldest policy version that generated any turn of the episode
    turn_versions: list[list[int]]  # the version that sampled each turn (async: weights may change between turns)
    turn_lens: list[list[tuple[int, int]]]  # (context tokens, generated tokens) per turn
    turns: list[int]
    prompts: list[str]
    completions: list[str]
    truncated: list[bool]
    rewards: list[float]
    reasons: list[str]
    env_names: list[str | None]
    rollout_s: float = 0.0
    reward_s: float = 0.0

    def __len__(self) -> int:
        return len(self.rewards)

    @staticmethod
    def _lists() -> list[str]:
        return [f.name for f in fields(RolloutBatch) if f.name not in ("rollout_s", "reward_s")]

    @classmethod
    def concat(cls, parts: list["RolloutBatch"]) -> "RolloutBatch":
        """One batch from several (workers, or dynamic-sampling rounds); seconds add up
        as the slowest part's, since parts run in parallel per round."""
        data = {name: [x for p in parts for x in getattr(p, name)] for name in cls._lists()}
        return cls(**data, rollout_s=max((p.rollout_s for p in parts), default=0.0),
                   reward_s=max((p.reward_s for p in parts), default=0.0))

    def select(self, indices: list[int]) -> "RolloutBatch":
        data = {name: [getattr(self, name)[i] for i in indices] for name in self._lists()}
        return RolloutBatch(**data, rollout_s=self.rollout_s, reward_s=self.reward_s)


@dataclass
class TrainBatch:
    """The learner's input: n_groups * group_size samples, grouped by prompt."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    behaviour_logprobs: list[list[float]]  # the engine's sampling logprobs (TIS, logprob_diff)
    loss_mask: list[list[int]]
    rewards: list[float]
    policy_versions: list[int]
    group_size: int

    @classmethod
    def from_rollouts(cls, batch: RolloutBatch, group_size: int) -> "TrainBatch":
        return cls(batch.prompt_ids, batch.completion_ids, batch.sampling_logprobs, batch.loss_mask,
                   batch.rewards, batch.policy_versions, group_size)


@dataclass
class UpdateResult:
    policy_version: int  # the learner's version after this update
    entropy: float  # mean token entropy of the pre-update policy on the batch's policy tokens
    logprob_diff: float  # mean |engine logprob - learner logprob| on the same tokens (async: plus the lag's drift)
    kl_ref: float | None  # k3 KL to the reference policy (None when no reference is built)
    loss: float
    grad_norm: float
    tokens_trained: int
    learner_s: float
    flops: int  # FLOPs of every pass this update ran (compute.py)
    policy_lag_mean: float  # learner version before the update minus each sample's policy version
    policy_lag_max: int
    advantages: list[float]  # per sample: mean advantage over its policy tokens
    algo_stats: dict[str, float] = field(default_factory=dict)  # the recipe's own named stats
