"""CodeEnv: the gymnasium environment every code task family shares.

Observation: the task prompt. Action: the completion (see ``problem.extract_program``
for how code is taken from it). Reward: 1.0 iff the program passes every one of the
task's tests in the sandbox, else 0.0; ``info`` says why (``reason``), how many tests
passed, and the first failures (without expected values).

Multi-turn (``max_turns > 1``): a completion that does not pass is answered with the
failing tests' summary (``feedback``): which tests failed and how (wrong answer,
the exception the code raised, timeout), the value the code returned, never the
expected value, so the policy cannot copy answers into its next attempt. A pass ends
the episode; the episode's reward is its last attempt's.

Scoring runs through one ``SandboxPool`` per environment instance, created on first
use (drawing problems needs none), so one call scores a whole step concurrently.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ..base import TextEnv
from ..sandbox import SandboxLimits, SandboxPool, TestJob
from .problem import CodeProblem, extract_program

log = logging.getLogger(__name__)

MAX_FEEDBACK_FAILURES = 3
_REASON_OF_STATUS = {"passed": "passed", "failed": "failed_tests"}
_KIND_TEXT = {"wrong_answer": "wrong answer", "exception": "raised", "timeout": "timed out", "crashed": "crashed"}


class CodeEnv(TextEnv):
    def __init__(
        self,
        split: str = "train",
        max_completion_chars: int = 4096,
        max_turns: int = 1,
        limits: dict | None = None,
        max_workers: int | None = None,
        sandbox_backend: str = "auto",
        sandbox_uids: list[int] | None = None,
        max_prompt_chars: int = 8192,
    ):
        super().__init__(split, max_completion_chars, max_prompt_chars)
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be an integer >= 1 (1 = single-turn), got {max_turns!r}")
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                        or max_workers < 1):
            raise ValueError(f"max_workers must be an integer >= 1 or null (one per CPU), got {max_workers!r}")
        self.max_turns = max_turns
        self.limits = SandboxLimits.from_dict(limits)  # bad limits fail here, not mid-run
        self._pool_args = {"limits": self.limits, "max_workers": max_workers, "backend": sandbox_backend}
        if sandbox_uids is not None:  # [first uid, count] for a root trainer; default 64000-64511
            self._pool_args["uid_range"] = tuple(sandbox_uids)
        if sandbox_backend not in ("auto", "bwrap", "fallback"):
            raise ValueError(f"sandbox_backend must be 'auto', 'bwrap' or 'fallback', got {sandbox_backend!r}")
        self._pool: SandboxPool | None = None

    # ---- what each family provides -----------------------------------------------------
    @property
    def problems(self) -> Sequence[CodeProblem]:
        """Problems of ``self.split`` (dataset families); procedural ones generate instead."""
        raise NotImplementedError

    def sample_problem(self, rng: np.random.Generator) -> CodeProblem:
        problems = self.problems
        return problems[int(rng.integers(len(problems)))]

    def distinct_problems_at_most(self) -> int | None:
        try:
            return len({p.prompt for p in self.problems})
        except NotImplementedError:  # a procedural family
            return None

    # ---- scoring --------------------------------------------------------------------
    @property
    def pool(self) -> SandboxPool:
        if self._pool is None:
            self._pool = SandboxPool(**self._pool_args)
        return self._pool

    def problem_info(self, problem: CodeProblem) -> dict[str, Any]:
        if not isinstance(problem, CodeProblem):
            raise TypeError(f"options['problem'] must be a CodeProblem, got {type(problem)!r}")
        return {"task_id": problem.task_id, "entry_point": problem.entry_point, "n_tests": len(problem.tests),
                "difficulty": problem.difficulty}

    def score_many(self, problems: Sequence[CodeProblem], completions: Sequence[str]) -> list[tuple[float, dict]]:
        if len(problems) != len(completions):
            raise ValueError(f"got {len(problems)} problems but {len(completions)} completions")
        extracted = [extract_program(p, c, self.max_completion_chars) for p, c in zip(problems, completions)]
        to_run = [i for i, (program, _) in enumerate(extracted) if program is not None]
        jobs = [TestJob(extracted[i][0], (problems[i].entry_point,), problems[i].tests, problems[i].setup,
                        problems[i].labels) for i in to_run]
        verdict_of = dict(zip(to_run, self.pool.run_tests_many(jobs) if jobs else []))
        results = []
        for i, problem in enumerate(problems):
            info: dict[str, Any] = {"task_id": problem.task_id, "passed": 0, "total": len(problem.tests),
                                    "failures": [], "message": ""}
            verdict = verdict_of.get(i)
            if verdict is None:
                info["reason"] = extracted[i][1]
                results.append((0.0, info))
                continue
            info.update(reason=_REASON_OF_STATUS.get(verdict.status, verdict.status), passed=verdict.passed,
                        failures=list(verdict.failures[:MAX_FEEDBACK_FAILURES]), message=verdict.message,
                        seconds=verdict.seconds)
            if verdict.status in ("sandbox_error", "test_setup_error"):
                log.warning("%s on %s: %s", verdict.status, problem.task_id, verdict.message)
            results.append((1.0 if verdict.all_passed else 0.0, info))
        return results

    # ---- multi-turn -----------------------------------------------------------------
    def feedback(self, problem: CodeProblem, completion: str, reward: float, info: dict, turn: int) -> str | None:
        if reward >= 1.0:
            return None
        return failure_feedback(problem, info)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        super().close()


def failure_feedback(problem: CodeProblem, info: dict) -> str:
    """What the policy reads after a failed attempt: no expected values, ever."""
    reason = info.get("reason", "failed_tests")
    lines = []
    if reason == "failed_tests":
        lines.append(f"Your code failed {info['total'] - info['passed']} of {info['total']} tests.")
        for failure in info.get("failures", [])[:MAX_FEEDBACK_FAILURES]:
            what = _KIND_TEXT.get(failure.get("kind"), failure.get("kind", "failed"))
            detail = f": {failure['detail']}" if failure.get("detail") else ""
            lines.append(f"- {failure.get('label', 'a test')}: {what}{detail}")
    elif reason in ("load_error", "missing_function", "timeout", "crashed"):
        lines.append(f"Your code did not run ({reason.replace('_', ' ')}): {info.get('message', '')}".rstrip(": "))
    else:
        lines.append(f"Your answer could not be tested ({reason.replace('_', ' ')}).")
    lines.append(f"Write the complete corrected function `{problem.entry_point}` in one ```python block.")
    return "\n\n" + "\n".join(lines) + "\n"
