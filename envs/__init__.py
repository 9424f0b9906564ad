"""Task environments for rlscale, registered with gymnasium on import:

    rlscale/Arith-v0         procedural arithmetic (math_env.py), optionally multi-turn
    rlscale/ReasoningGym-v0  reasoning-gym's procedural tasks (reasoning_gym_env.py)
    rlscale/MathJSONL-v0     user JSONL datasets, GSM8K or MATH style (jsonl_math.py)
    rlscale/Mix-v0           a weighted mixture of any of them (mix.py)
    + the code environments of ``rlscale_envs.code`` (HumanEval, code JSONL, procedural)

Strict answer extraction (answer.py), sandboxed math-verify scoring (verify.py).
Knows nothing about the trainer, Ray, vLLM or torch. See docs/envs-math.md."""

from .answer import MAX_ANSWER_CHARS, extract_boxed_answer
from .base import SPLITS, TextEnv
from .arith import ArithFamily, ArithProblem, solution_text, split_of
from .math_env import MathEnv
from .registry import (
    ARITH_ENV_ID,
    ENTRY_POINTS,
    MATH_JSONL_ENV_ID,
    MIX_ENV_ID,
    REASONING_GYM_ENV_ID,
    UnknownEnvError,
    make_text_env,
    register,
    rlscale_env_ids,
)
from .verify import MathVerifier, Verdict

register(ENTRY_POINTS)

from . import code as _code  # noqa: E402  (after the math ids, which code envs may mix with)

_code.register()

__all__ = [
    "ARITH_ENV_ID",
    "MATH_JSONL_ENV_ID",
    "MIX_ENV_ID",
    "REASONING_GYM_ENV_ID",
    "UnknownEnvError",
    "make_text_env",
    "rlscale_env_ids",
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
