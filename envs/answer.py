"""Strict final-answer extraction from a completion.

The rule: a completion of at most ``max_chars`` characters must contain exactly
one ``\\boxed{...}``; its content (braces may nest, e.g. ``\\boxed{\\frac{1}{2}}``),
stripped of surrounding whitespace, must be non-empty and at most 64 characters
(``max_answer_chars``; environments whose gold answers are longer, e.g. some
reasoning-gym tasks, raise it explicitly).

Strictness is deliberate: a policy that hedges with several boxes, never
commits, or rambles past the length budget gets reward 0 rather than partial
credit, so it cannot game the verifier.

Braces are matched LaTeX-style: a backslash escapes the next character, so
``\\{`` and ``\\}`` are literal braces that do not open or close a group.

``extract_boxed_answer`` returns ``(answer, reason)``; ``answer`` is None unless
``reason == "ok"``. Reasons other than "ok" score 0:
  "completion_too_long"  len(text) > max_chars (checked first)
  "no_answer"            no ``\\boxed{``
  "multiple_answers"     more than one ``\\boxed{``
  "unbalanced_braces"    the box never closes
  "empty_answer"         the box holds only whitespace
  "answer_too_long"      the box holds more than ``max_answer_chars`` (default 64)
"""

from __future__ import annotations

BOX_OPEN = "\\boxed{"
MAX_ANSWER_CHARS = 64

ANSWER_REASONS = (
    "ok",
    "no_answer",
    "multiple_answers",
    "unbalanced_braces",
    "empty_answer",
    "answer_too_long",
    "completion_too_long",
)


def _matching_close(text: str, start: int) -> int | None:
    """Index of the ``}`` closing a group whose content starts at ``start``."""
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # escaped character (\{, \}, \\ ...) never changes depth
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed_answer(
    text: str, max_chars: int, max_answer_chars: int = MAX_ANSWER_CHARS
) -> tuple[str | None, str]:
    """Return ``(answer, "ok")`` or ``(None, reason)``; see the module docstring."""
    if len(text) > max_chars:
        return None, "completion_too_long"
    count = text.count(BOX_OPEN)
    if count == 0:
        return None, "no_answer"
    if count > 1:
        return None, "multiple_answers"
    start = text.index(BOX_OPEN) + len(BOX_OPEN)
    end = _matching_close(text, start)
    if end is None:
        return None, "unbalanced_braces"
    answer = text[start:end].strip()
    if not answer:
        return None, "empty_answer"
    if len(answer) > max_answer_chars:
        return None, "answer_too_long"
    return answer, "ok"
