"""User-provided math datasets in JSONL (``rlscale/MathJSONL-v0``), scored with math-verify.

One JSON object per line (blank lines are skipped), in either style:
  GSM8K: ``{"question": ..., "answer": "...worked solution...\\n#### 42"}``; the gold is
         the text after the last ``####`` (thousands separators removed). An ``answer``
         without ``####`` is taken as the final answer itself.
  MATH:  ``{"problem": ..., "solution": "... \\boxed{\\frac{1}{2}} ..."}``; the gold is the
         content of the solution's last ``\\boxed{}``, or the record's own ``answer``
         field when it has one (as MATH-500 does).

Splits: with ``path`` one file is split by a stable hash of the question text
(``val_fraction`` of questions go to val, the same ones on every machine and run);
with ``train_path`` + ``val_path`` each file is one split, and train records whose
question also occurs in the val file are dropped, so the splits never share a question.

Reward: 1.0 when the completion holds exactly one ``\\boxed{}`` whose content
math-verify judges equal to the gold (strict rule of answer.py), else 0.0. Any
problem with the file (missing, unreadable, bad JSON, missing or empty fields, gold
too long, empty split) raises ``DatasetError`` naming the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .answer import MAX_ANSWER_CHARS, _matching_close
from .math_scoring import GoldAnswerEnv
from .verify import MathVerifier

DEFAULT_PROMPT_TEMPLATE = "Q: {question}\nPut the final answer in \\boxed{}.\nA: "
BOX_OPENERS = ("\\boxed{", "\\fbox{")


class DatasetError(ValueError):
    """A problem with a user's dataset file, worded so they can fix it."""


@dataclass(frozen=True)
class JSONLProblem:
    prompt: str
    question: str
    answer: str  # the gold final answer
    source: str  # "file:line", for tracing a sample back to its record


def split_of_question(question: str, val_fraction: float) -> str:
    """Stable: a blake2b hash of the whitespace-normalised question."""
    key = " ".join(question.split()).encode("utf-8")
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8, person=b"rlscale-jsonl").digest(), "big")
    return "val" if bucket % 1_000_000 < val_fraction * 1_000_000 else "train"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (the MATH convention), or None."""
    found = [(text.rfind(opener), opener) for opener in BOX_OPENERS if opener in text]
    if not found:
        return None
    at, opener = max(found)
    start = at + len(opener)
    end = _matching_close(text, start)
    return text[start:end].strip() if end is not None else None


def _text(record: dict, key: str, where: str, numbers_ok: bool = False) -> str:
    value = record.get(key)
    if numbers_ok and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _gold_of(record: dict, where: str) -> tuple[str, str]:
    """(question, gold answer) of one record, or DatasetError."""
    if "question" in record:  # GSM8K style
        if "answer" not in record:
            raise DatasetError(f"{where}: GSM8K-style record (has 'question') lacks the field 'answer'")
        question, answer = _text(record, "question", where), _text(record, "answer", where, numbers_ok=True)
        gold = answer.rsplit("####", 1)[1] if "####" in answer else answer
        gold = gold.strip().replace(",", "")
        if not gold:
            raise DatasetError(f"{where}: field 'answer' has nothing after its '####'")
        return question, gold
    if "problem" in record:  # MATH style
        question = _text(record, "problem", where)
        if "answer" in record:
            return question, _text(record, "answer", where, numbers_ok=True).strip()
        if "solution" not in record:
            raise DatasetError(f"{where}: MATH-style record (has 'problem') needs a field 'solution' with a "
                               "\\boxed{} answer, or a field 'answer'")
        gold = last_boxed(_text(record, "solution", where))
        if not gold:
            raise DatasetError(f"{where}: field 'solution' has no complete, non-empty \\boxed{{...}}; "
                               "add one or give the record an 'answer' field")
        return question, gold
    raise DatasetError(f"{where}: no field 'question' (GSM8K style) or 'problem' (MATH style); "
                       f"the record has {sorted(record)}")


def read_records(path: str | Path, max_answer_chars: int) -> list[tuple[str, str, str]]:
    """(question, gold, "file:line") for every record of a JSONL file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"dataset file {str(p)!r} not found; pass an existing JSONL file "
                           "(one JSON object per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"dataset file {p}: cannot read it as UTF-8 text ({e})") from None
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{p}, line {n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                               "each line must hold one JSON object") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
        question, gold = _gold_of(record, where)
        if len(gold) > max_answer_chars:
            raise DatasetError(f"{where}: the gold answer has {len(gold)} characters, over max_answer_chars="
                               f"{max_answer_chars}; correct answers could never score; raise max_answer_chars")
        records.append((question, gold, f"{p.name}:{n}"))
    if not records:
        raise DatasetError(f"dataset file {p} holds no records; add one JSON object per line")
    return records


class MathJSONLEnv(GoldAnswerEnv):
    def __init__(
        self,
        split: str = "train",
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        val_fraction: float = 0.1,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        max_completion_chars: int = 2048,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        verifier: MathVerifier | None = None,
        verifier_timeout_s: float = 2.0,
        max_turns: int = 1,
    ):
        super().__init__(split, max_completion_chars, 65536, verifier, verifier_timeout_s, max_turns)
        one_file = path is not None and train_path is None and val_path is None
        two_files = path is None and train_path is not None and val_path is not None
        if not (one_file or two_files):
            raise DatasetError("rlscale/MathJSONL-v0 needs either path=<file.jsonl> (split by question hash) "
                               "or both train_path and val_path")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
            raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        if "{question}" not in prompt_template:
            raise DatasetError(f"prompt_template must contain {{question}}, got {prompt_template!r}")
        self.max_answer_chars = max_answer_chars
        if path is not None:
            records = [r for r in read_records(path, max_answer_chars) if split_of_question(r[0], val_fraction) == split]
            origin = f"{path} (val_fraction={val_fraction})"
        else:
            records = read_records(val_path, max_answer_chars)
            origin = str(val_path)
            if split == "train":
                val_questions = {" ".join(q.split()) for q, _, _ in records}
                records = [r for r in read_records(train_path, max_answer_chars)
                           if " ".join(r[0].split()) not in val_questions]
                origin = f"{train_path} (minus questions that are also in {val_path})"
        if not records:
            raise DatasetError(f"the {split} split of {origin} is empty; add records or change val_fraction")
        self.problems = [JSONLProblem(prompt_template.replace("{question}", q), q, gold, src)
                         for q, gold, src in records]

    def sample_problem(self, rng: np.random.Generator) -> JSONLProblem:
        return self.problems[int(rng.integers(len(self.problems)))]

    def distinct_problems_at_most(self) -> int | None:
        return len({p.prompt for p in self.problems})

    def problem_info(self, problem: JSONLProblem) -> dict[str, Any]:
        if not isinstance(problem, JSONLProblem):
            raise TypeError(f"options['problem'] must be a JSONLProblem, got {type(problem)!r}")
        return {"gold": problem.answer, "source": problem.source}

    def score_many(self, problems: Sequence[JSONLProblem], completions: Sequence[str]):
        scored = self.score_gold([p.answer for p in problems], completions, self.max_answer_chars)
        return [(reward, {"answer": answer, "gold": p.answer, "reason": reason, "source": p.source})
                for p, (reward, answer, reason) in zip(problems, scored)]
