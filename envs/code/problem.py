"""What every code task shares: the problem record, the train/val split and the strict
rule that turns a completion into the program the sandbox runs."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# A fenced block: ``` or ```python / ```py / ```python3, a newline, the code, ```.
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S)
EXTRACTION_REASONS = ("too_long", "empty", "unclosed_code_block", "multiple_code_blocks")


@dataclass(frozen=True)
class CodeProblem:
    """One code task. ``prompt`` is all the policy sees; the tests stay with the judge."""

    task_id: str
    prompt: str
    entry_point: str  # the function the tests call
    tests: tuple[str, ...]  # trusted snippets run by the judge; all must pass
    setup: str = ""  # trusted code the judge runs before the tests
    labels: tuple[str, ...] = ()  # how feedback names each test (never its expected value)
    program_prefix: str | None = None  # HumanEval style: the prompt a function body continues
    reference: str | None = None  # a complete reference program, for checks; never shown
    difficulty: int | None = None


def split_of(key: str, val_fraction: float) -> str:
    """'val' for a stable ``val_fraction`` share of keys, else 'train'. A hash of the key
    alone, so the split never depends on order, seeds or which other rows exist."""
    digest = hashlib.sha256(f"rlscale-code-split:{key}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def check_val_fraction(val_fraction) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")
    return float(val_fraction)


def extract_program(problem: CodeProblem, completion: str, max_chars: int) -> tuple[str | None, str]:
    """(program, "ok") or (None, reason). The rule, strictly:

    1. A completion longer than ``max_chars`` characters scores 0 ("too_long").
    2. If it contains ```, it must hold exactly one closed fenced block (```, ```python,
       ```py or ```python3 on its own line); the code is that block's content and the
       text around it is ignored. One lone ``` is "unclosed_code_block", more than one
       block "multiple_code_blocks". Without ```, the code is the completion verbatim.
    3. Code that is only whitespace is "empty".
    4. HumanEval-style problems (``program_prefix`` set): code with a line starting
       ``def <entry_point>(`` is a complete function and runs after the prompt (whose
       imports and helpers it may use); otherwise it is the function's body and is
       appended to the prompt as is, as in the HumanEval paper. Other problems: the
       code is the whole program.
    """
    text = str(completion)
    if len(text) > max_chars:
        return None, "too_long"
    fences = text.count("```")
    if fences:
        blocks = _FENCE.findall(text)
        if fences % 2 or not blocks:
            return None, "unclosed_code_block"
        if fences > 2:
            return None, "multiple_code_blocks"
        code = blocks[0]
    else:
        code = text
    if not code.strip():
        return None, "empty"
    if problem.program_prefix is None:
        return code, "ok"
    if re.search(rf"^def[ \t]+{re.escape(problem.entry_point)}[ \t]*\(", code, re.M):
        return problem.program_prefix + "\n\n" + code, "ok"
    return problem.program_prefix + code, "ok"
