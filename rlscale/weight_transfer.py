"""How the learner's new policy reaches the rollout engines: one class per backend
(rollout.weight_transfer). Each publishes a version and says which rollout-worker method
installs it, with what argument; the orchestrator calls it on every worker (through the
worker pool, which also gives it to a restarted worker) and then checks every engine's
probe logprobs against the learner's, whatever the backend.

    object_store  the learner's state dict goes through Ray's object store; each worker
                  writes its own copy (to /dev/shm when it has room) and its engine reloads
                  from it. Works across hosts; costs one serialised copy plus one file per
                  worker per sync.
    shared_file   the learner (rank 0) writes the weights once, as safetensors, under
                  rollout.weight_dir (null: /dev/shm), and every engine reloads from that
                  file. Learner and engines must see the directory: one host (/dev/shm), or
                  a filesystem they share.

Not here yet: vLLM's NCCL weight transfer (init_weight_transfer_engine / update_weights),
which needs CUDA vLLM.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray


class StaleWeightsError(RuntimeError):
    """The rollout engine is not sampling from the policy the learner holds."""


class WeightTransfer:
    name = ""

    def publish(self, learner, version: int) -> tuple[str, Any]:
        """Make `version` (the learner's current policy) available to the engines; returns
        (rollout-worker method, argument): worker.<method>(argument, version) installs it."""
        raise NotImplementedError


class ObjectStoreTransfer(WeightTransfer):
    name = "object_store"

    def publish(self, learner, version: int) -> tuple[str, Any]:
        return "load_weights", learner.state_dict.remote()


class SharedFileTransfer(WeightTransfer):
    name = "shared_file"

    def __init__(self, weight_dir: str | None):
        self.weight_dir = weight_dir

    def publish(self, learner, version: int) -> tuple[str, Any]:
        return "load_weights_from", ray.get(learner.write_weights.remote(self.weight_dir, version))


def make_weight_transfer(name: str, weight_dir: str | None) -> WeightTransfer:
    if name == "shared_file":
        return SharedFileTransfer(weight_dir)
    return ObjectStoreTransfer()


class WeightSync:
    """Mixed into Orchestrator: the sync of one version to every engine, then the proof that
    each engine holds it. Uses its learner, pool, weight_transfer, probe_ids, cfg and the
    last_* probe and timing state."""

    def _sync_weights(self, version: int) -> dict:
        """Push learner weights to every engine, then prove the engines really changed.
        Also reports how long the engines sat idle since the previous sync."""
        method, weights = self.weight_transfer.publish(self.learner, version)  # weight_transfer.py
        # The learner's probe of these very weights: what a restarted engine is checked against.
        self.synced_learner_probe = np.array(ray.get(self.learner.probe_logprobs.remote(self.probe_ids)))
        self.pool.set_synced(version, method, weights)
        busy = self.pool.call_all(method, [(weights, version)] * len(self.pool))
        now = time.time()
        # A restarted engine's busy seconds begin again at 0.
        idle = [max(0.0, now - self.last_sync_time - (b - (prev if b >= prev else 0.0)))
                for b, prev in zip(busy, self.last_engine_busy)]
        self.last_sync_time, self.last_engine_busy = now, busy
        return self.check_engines(version) | {"engine_idle_s": float(np.mean(idle))}

    def check_engines(self, version: int) -> dict:
        """Compare each engine's logprobs on a fixed probe text with the learner's.
        Stale weights show up two ways: the engine's probe did not move although the
        learner's did, or the two disagree by more than rollout.stale_tolerance."""
        learner_probe = np.array(ray.get(self.learner.probe_logprobs.remote(self.probe_ids)))
        engine_probes = [np.array(p) for p in self.pool.call_all("probe_logprobs", [()] * len(self.pool))]
        learner_shift = float(np.abs(learner_probe - self.last_learner_probe).mean())
        engine_shift = min(float(np.abs(e - prev).mean()) for e, prev in zip(engine_probes, self.last_engine_probes))
        gap = max(float(np.abs(e - learner_probe).mean()) for e in engine_probes)
        tol = self.cfg.rollout.stale_tolerance
        if gap > tol or (learner_shift > 1e-6 and engine_shift < 0.01 * learner_shift):
            raise StaleWeightsError(
                f"rollout engine weights are stale after the sync to policy version {version}: the engine's probe "
                f"logprobs moved by {engine_shift:.2e} while the learner's moved by {learner_shift:.2e}, and they "
                f"now differ by {gap:.2e} (rollout.stale_tolerance={tol}). The engine did not load the new "
                "weights: check the weight-reload path for this vLLM version.")
        self.last_learner_probe, self.last_engine_probes = learner_probe, engine_probes
        return {"sync_probe_diff": gap, "engine_probe_shift": engine_shift, "learner_probe_shift": learner_shift}
