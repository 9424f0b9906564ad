"""Child side of the reasoning-gym scorer (loaded by file path inside the isolated
child of ``isolated.py``, so no relative imports).

The child rebuilds the task's dataset from its name and config object and scores
``(answer, entry)`` items with the dataset's own ``score_answer``.
"""

from __future__ import annotations


def make_scorer(spec):
    import reasoning_gym

    name, config = spec
    dataset = reasoning_gym.create_dataset(name, **vars(config))

    def score(item):
        answer, entry = item
        # float() here: a tuple from foreign code must not pass as (score, reason).
        return float(dataset.score_answer(answer, entry))

    return score
