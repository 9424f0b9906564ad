"""Sample filtering, applied by the orchestrator between scoring and the update.
Pure numpy: no torch, no Ray.

- DAPO dynamic sampling (Yu et al. 2025, Eq. 11): a group whose G rewards are all equal
  has zero advantage under every group estimator and only dilutes the batch; drop it
  and sample fresh prompts until the batch holds prompts_per_step informative groups.
- ScaleRL's no-positive-resampling (Khatri et al. 2025, Sec. 3.2): a prompt whose pass
  rate in a step reaches the threshold is retired and never drawn again.
"""

from __future__ import annotations

import numpy as np


def informative_groups(rewards: np.ndarray) -> np.ndarray:
    """rewards [n_groups, G] -> bool [n_groups]: True where the rewards differ."""
    r = np.asarray(rewards, dtype=np.float64)
    return r.max(axis=1) > r.min(axis=1)


class PromptRetirement:
    """The set of retired prompts (by prompt text) and the threshold that retires them."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.retired: set[str] = set()

    def is_retired(self, prompt: str) -> bool:
        return prompt in self.retired

    def update(self, prompts: list[str], rewards: np.ndarray) -> int:
        """Retire every prompt whose group pass rate (mean reward, rewards [n, G] in
        [0, 1]) reached the threshold. Returns how many were newly retired."""
        rates = np.asarray(rewards, dtype=np.float64).mean(axis=1)
        new = {p for p, rate in zip(prompts, rates) if rate >= self.threshold} - self.retired
        self.retired |= new
        return len(new)
