"""Child side of ``MathVerifier`` (loaded by file path inside the isolated child of
``isolated.py``, so no relative imports and only the stdlib at top level).

Scores ``(gold, answer)`` items with math-verify, both parsed as ``\\boxed{<text>}``,
and returns ``(1.0 | 0.0, reason)`` with reason ``correct``, ``wrong`` or
``parse_failed``. math-verify's own timeouts are disabled: they use SIGALRM, and the
parent enforces the deadline by killing this process instead.
"""

from __future__ import annotations


def _wrap(text: str) -> str:
    return "\\boxed{" + text + "}"


def make_scorer(spec):
    import logging

    from math_verify import parse, verify

    # The "timeouts disabled" warnings are expected here: the parent times us.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    parse(_wrap("1"), parsing_timeout=None)  # warm up sympy/antlr before the clock starts

    def score(item):
        gold, answer = item
        gold_parsed = parse(_wrap(gold), parsing_timeout=None)
        answer_parsed = parse(_wrap(answer), parsing_timeout=None)
        if not gold_parsed or not answer_parsed:
            return 0.0, "parse_failed"
        if verify(gold_parsed, answer_parsed, timeout_seconds=None):
            return 1.0, "correct"
        return 0.0, "wrong"

    return score
