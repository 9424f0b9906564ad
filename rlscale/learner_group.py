"""learner.num_workers ranks (learner_rank.py) that the orchestrator drives as one learner.

The ranks are gang-scheduled in one Ray placement group: all of them start, or the run
stops with a message saying what could not be placed. Each method call of the group goes
to every rank (their collectives need all of them) and hands the orchestrator rank 0's
result, as an object ref, exactly as a single Learner actor's call would.
"""

from __future__ import annotations

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .learner_rank import LearnerRank

PLACEMENT_WAIT_S = 300


class LearnerGroupError(RuntimeError):
    """The learner group could not be placed or started."""


class _OnEveryRank:
    """group.<method>.remote(...): the call on every rank; rank 0's result ref."""

    def __init__(self, group: "LearnerGroup", name: str):
        self.group, self.name = group, name

    def remote(self, *args):
        args = [a if isinstance(a, ray.ObjectRef) else ray.put(a) for a in args]  # one copy for all ranks
        refs = [getattr(rank, self.name).remote(*args) for rank in self.group.ranks]
        self.group.check_others(refs[1:])
        return refs[0]


class LearnerGroup:
    def __init__(self, num_ranks: int, strategy: str, resources: dict, learner_args: tuple):
        """resources: one rank's, as actor_resources gives (num_cpus, num_gpus)."""
        bundle = {"CPU": resources.get("num_cpus", 1)} | ({"GPU": resources["num_gpus"]}
                                                          if resources.get("num_gpus") else {})
        self.placement = placement_group([bundle] * num_ranks, strategy="PACK")
        ready, _ = ray.wait([self.placement.ready()], timeout=PLACEMENT_WAIT_S)
        if not ready:
            remove_placement_group(self.placement)
            raise LearnerGroupError(
                f"learner.num_workers={num_ranks}: Ray could not reserve {num_ranks} x {bundle} for the learner "
                f"ranks within {PLACEMENT_WAIT_S} s (cluster: {ray.cluster_resources()}); lower learner.num_workers "
                "or add nodes")
        self.ranks = [
            # No restarts: a rank that dies breaks the process group; the run stops, --resume continues it.
            ray.remote(LearnerRank).options(
                max_restarts=0, **resources,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=i),
            ).remote(i, num_ranks, strategy, *learner_args)
            for i in range(num_ranks)
        ]
        addr, port = ray.get(self.ranks[0].address.remote())
        ray.get([rank.setup.remote(addr, port) for rank in self.ranks])
        self._others: list = []

    def __getattr__(self, name: str) -> _OnEveryRank:
        if name.startswith("_"):
            raise AttributeError(name)
        return _OnEveryRank(self, name)

    def check_others(self, refs: list) -> None:
        """Keep the other ranks' results; raise the first error among those that are done
        (rank 0's own error reaches the caller through its ref)."""
        self._others += list(refs)
        if not self._others:
            return
        done, self._others = ray.wait(self._others, num_returns=len(self._others), timeout=0)
        ray.get(done)

    @property
    def actor_ids(self) -> list[str]:
        return [rank._actor_id.hex() for rank in self.ranks]

    def kill(self) -> None:
        for rank in self.ranks:
            try:
                ray.kill(rank)
            except Exception:  # noqa: BLE001 - already gone
                pass
        remove_placement_group(self.placement)
