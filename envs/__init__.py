"""Task environments for rlscale: arithmetic problems, strict answer
extraction, sandboxed math-verify scoring and a gymnasium env tying them
together. Knows nothing about the trainer, Ray, vLLM or torch."""

import gymnasium

from .answer import MAX_ANSWER_CHARS, extract_boxed_answer
from .base import SPLITS, TextEnv
from .arith import ArithFamily, ArithProblem, solution_text, split_of
from .math_env import MathEnv
from .verify import MathVerifier, Verdict

ARITH_ENV_ID = "rlscale/Arith-v0"

# Guarded so re-importing (e.g. after importlib.reload) does not re-register.
if ARITH_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ARITH_ENV_ID, entry_point="rlscale_envs.math_env:MathEnv")

__all__ = [
    "ARITH_ENV_ID",
    "MAX_ANSWER_CHARS",
    "ArithFamily",
    "ArithProblem",
    "MathEnv",
    "MathVerifier",
    "SPLITS",
    "TextEnv",
    "Verdict",
    "extract_boxed_answer",
    "solution_text",
    "split_of",
]
