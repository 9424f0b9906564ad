"""Adapter for reasoning-gym's procedural task families (``rlscale/ReasoningGym-v0``).

Problems come from ``reasoning_gym.create_dataset(name, seed=..., size=..., **config)``;
the task's config is either given directly (``config``) or produced by the task's
curriculum (``difficulty`` = the curriculum's global level, ``curriculum`` =
per-attribute levels on top, ``curriculum_mode`` = how range attributes map to
config ranges), see docs/envs-math.md.

Splits: the train split is the ``size`` items of the dataset seeded ``seed``; the val
split is the ``val_size`` items of a second dataset seeded ``val_seed`` (default
``seed + size``, so the per-item seeds ``seed + idx`` of the two never overlap), minus
every item whose question also occurs among the train items (a small problem space
can repeat questions under different seeds). Building the val split therefore
generates all train items once.

Scoring: the completion's answer is extracted with the strict ``\\boxed{}`` rule of
``answer.py`` and scored by the task's own ``score_answer`` in an isolated child
process (``isolated.py``): some tasks run sympy's ``parse_expr`` (an ``eval``) on the
answer, which hostile answers can hang or abuse. reasoning-gym gives partial credit
(e.g. ``len(gold) / len(answer)`` when the gold is a substring of the answer, 0.01
for any attempt at countdown), which would pay for hedging inside the box, so the
reward is 1.0 when ``score_answer`` returns 1.0 and 0.0 otherwise; with
``partial_credit=True`` it is the score itself, clipped to [0, 1].
``info["score"]`` always carries the raw score.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .answer import MAX_ANSWER_CHARS, extract_boxed_answer
from .base import TextEnv
from .isolated import IsolatedScorer
from .math_scoring import check_max_turns, retry_feedback

DEFAULT_PROMPT_TEMPLATE = "Q: {question}\nPut the final answer in \\boxed{}.\nA: "
CURRICULUM_MODES = ("inclusive", "upper_bound", "last_k")
GOLD_CHECK_ITEMS = 50  # train items whose gold length is checked against max_answer_chars
_CHILD_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reasoning_gym_child.py")


@dataclass(frozen=True)
class ReasoningGymProblem:
    prompt: str
    question: str
    answer: str  # reasoning-gym's reference answer (some tasks accept others too)
    entry: dict  # the full reasoning-gym item, which score_answer needs
    task: str
    index: int


def _fail(name: str, what: str) -> ValueError:
    return ValueError(f"reasoning-gym task {name!r}: {what}")


def build_task_config(name: str, config: dict | None, difficulty: int | None, curriculum: dict | None,
                      curriculum_mode: str, curriculum_k: int | None):
    """The task's config dataclass (without seed/size), from fields and/or curriculum."""
    from reasoning_gym.coaching.base_curriculum import DefaultCurriculumContext, RangeAttributeMode
    from reasoning_gym.factory import CURRICULA, DATASETS, create_curriculum

    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known tasks: {', '.join(sorted(DATASETS))}"
        raise ValueError(f"unknown reasoning-gym task name {name!r}; {hint}")
    config_cls = DATASETS[name][1]
    fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]
    config = dict(config or {})
    bad = sorted(set(config) - set(fields))
    if bad:
        raise _fail(name, f"unknown config field(s) {bad} (seed and size are set by the env's own "
                          f"seed/size/val_seed/val_size); its fields: {', '.join(fields)}")
    if difficulty is None and not curriculum:
        return config_cls(**config)
    if name not in CURRICULA:
        raise _fail(name, "has no curriculum, so difficulty/curriculum cannot be used; set config fields instead")
    if curriculum_mode not in CURRICULUM_MODES:
        raise _fail(name, f"curriculum_mode must be one of {CURRICULUM_MODES}, got {curriculum_mode!r}")
    cur = create_curriculum(name)
    attrs = cur.attributes
    controlled = {n for a in attrs.values()
                  for n in (getattr(a, "lower_field_name", None), getattr(a, "upper_field_name", None),
                            getattr(a, "field_name", None)) if n}
    clash = sorted(set(config) & controlled)
    if clash:
        raise _fail(name, f"config field(s) {clash} are set by the curriculum; drop them or drop difficulty/curriculum")
    try:
        if difficulty is not None:
            top = max(len(a.levels) for a in attrs.values()) - 1
            if isinstance(difficulty, bool) or not isinstance(difficulty, int) or not 0 <= difficulty <= top:
                raise ValueError(f"difficulty must be an integer in 0..{top}, got {difficulty!r}")
            cur.set_global_level(difficulty)
        for attr, level in (curriculum or {}).items():
            if attr not in attrs:
                raise ValueError(f"unknown curriculum attribute {attr!r}; attributes: {', '.join(attrs)}")
            cur.set_attr_level(attr, level)
        context = DefaultCurriculumContext(RangeAttributeMode(curriculum_mode), curriculum_k)
        return cur.generate_configuration(defaults=config, context=context)
    except (ValueError, KeyError, TypeError) as e:
        raise _fail(name, str(e)) from None


def make_dataset(name: str, config, seed: int, size: int):
    from reasoning_gym import create_dataset

    try:
        return create_dataset(name, **{**vars(config), "seed": seed, "size": size})
    except (AssertionError, ValueError, TypeError) as e:  # reasoning-gym validates with assert
        raise _fail(name, f"config rejected: {e or type(e).__name__} (config: {vars(config)})") from None


class ReasoningGymEnv(TextEnv):
    def __init__(
        self,
        split: str = "train",
        name: str | None = None,
        seed: int = 0,
        size: int = 1000,
        val_size: int = 200,
        val_seed: int | None = None,
        config: dict | None = None,
        difficulty: int | None = None,
        curriculum: dict | None = None,
        curriculum_mode: str = "inclusive",
        curriculum_k: int | None = None,
        partial_credit: bool = False,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        max_completion_chars: int = 2048,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        scorer_timeout_s: float = 5.0,
        max_turns: int = 1,
    ):
        super().__init__(split, max_completion_chars, max_prompt_chars=16384)
        if not name or not isinstance(name, str):
            raise ValueError("rlscale/ReasoningGym-v0 needs name=<reasoning-gym task>, e.g. name: chain_sum")
        for key, value, low in (("size", size, 1), ("val_size", val_size, 1), ("max_answer_chars", max_answer_chars, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        if "{question}" not in prompt_template:
            raise ValueError(f"prompt_template must contain {{question}}, got {prompt_template!r}")
        val_seed = seed + size if val_seed is None else val_seed
        if val_seed < seed + size and seed < val_seed + val_size:
            raise ValueError(f"val_seed={val_seed}: the val items' seeds {val_seed}..{val_seed + val_size - 1} overlap "
                             f"the train items' seeds {seed}..{seed + size - 1}; leave val_seed unset")
        self.name, self.partial_credit = name, bool(partial_credit)
        self.max_turns = check_max_turns(max_turns)
        self.prompt_template, self.max_answer_chars = prompt_template, max_answer_chars
        self.config = build_task_config(name, config, difficulty, curriculum, curriculum_mode, curriculum_k)
        self.train_data = make_dataset(name, self.config, seed, size)
        if split == "train":
            self.data, self.indices = self.train_data, list(range(size))
            self._check_gold_lengths(range(min(size, GOLD_CHECK_ITEMS)))
        else:
            train_questions = {self.train_data[i]["question"] for i in range(size)}
            self.data = make_dataset(name, self.config, val_seed, val_size)
            self.indices = [i for i in range(val_size) if self.data[i]["question"] not in train_questions]
            self.n_val_dropped = val_size - len(self.indices)
            if not self.indices:
                raise _fail(name, f"all {val_size} val items also occur among the {size} train items (the task's "
                                  "problem space is too small); raise the difficulty or lower size")
            self._check_gold_lengths(self.indices)
        # Cheap: the child process starts on the first score_many.
        self.scorer = IsolatedScorer(_CHILD_FILE, (name, self.config), timeout_s=scorer_timeout_s)

    def _check_gold_lengths(self, indices) -> None:
        longest = max(len(str(self.data[i]["answer"])) for i in indices)
        if longest > self.max_answer_chars:
            raise _fail(self.name, f"reference answers run to {longest} characters, over max_answer_chars="
                                   f"{self.max_answer_chars}, so correct answers would score 0; set "
                                   f"max_answer_chars >= {longest}")

    def problem_at(self, index: int) -> ReasoningGymProblem:
        entry = self.data[index]
        question = entry["question"]
        return ReasoningGymProblem(self.prompt_template.replace("{question}", question), question,
                                   str(entry["answer"]), entry, self.name, index)

    def sample_problem(self, rng: np.random.Generator) -> ReasoningGymProblem:
        return self.problem_at(self.indices[int(rng.integers(len(self.indices)))])

    def problem_info(self, problem: ReasoningGymProblem) -> dict[str, Any]:
        if not isinstance(problem, ReasoningGymProblem):
            raise TypeError(f"options['problem'] must be a ReasoningGymProblem, got {type(problem)!r}")
        return {"gold": problem.answer, "task": problem.task, "index": problem.index}

    def score_many(self, problems: Sequence[ReasoningGymProblem], completions: Sequence[str]):
        if len(problems) != len(completions):
            raise ValueError(f"got {len(problems)} problems but {len(completions)} completions")
        extracted = [extract_boxed_answer(str(c), self.max_completion_chars, self.max_answer_chars)
                     for c in completions]
        for i, (answer, reason) in enumerate(extracted):
            if reason == "ok" and "__" in answer:
                # Dunder access is how an answer fed to eval reaches the interpreter;
                # no reasoning-gym answer needs it.
                extracted[i] = (answer, "unsafe_answer")
        todo = [i for i, (_, reason) in enumerate(extracted) if reason == "ok"]
        scores = dict(zip(todo, self.scorer.score_many([(extracted[i][0], problems[i].entry) for i in todo])))
        results = []
        for i, (p, (answer, reason)) in enumerate(zip(problems, extracted)):
            score = None
            if i in scores:
                score, reason = scores[i]
                if score is not None and not math.isfinite(score):
                    score, reason = None, "scorer_error: non-finite score"
            reward = 0.0
            if score is not None:
                reward = min(max(score, 0.0), 1.0) if self.partial_credit else float(score >= 1.0)
                reason = "correct" if score >= 1.0 else ("partial" if score > 0 else "wrong")
            results.append((reward, {"answer": answer, "gold": p.answer, "reason": reason, "score": score,
                                     "task": p.task}))
        return results

    def feedback(self, problem, completion, reward, info, turn) -> str | None:
        return retry_feedback(reward, info)

    def close(self) -> None:
        self.scorer.close()
        super().close()
