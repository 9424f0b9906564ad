"""The rollout workers as one pool that survives a worker's death.

Every call to a rollout worker goes through here. Ray restarts a dead worker (the actor's
max_restarts = ray.worker_max_restarts); its __init__ reloads the base model, so before
anything else it is given the policy every other engine holds (the last synced weights,
as the weight transfer published them: an object ref or a shared file, so the learner is
not asked again mid-update), then checked, and the lost call is re-run on it. The same
call gives the same result on the restarted engine: sampling is seeded per request
(collect.py), not by the engine's history.

A worker that dies more often than its restarts allow stops the run, with a clear message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from .rollout import WorkerRestartedError


RESTART_WAIT_S = 900  # for Ray to bring a dead worker back (its engine loads the model again)


def when_restarted(call: Callable[[], Any], wait_s: float = RESTART_WAIT_S):
    """call() once the actor it calls is back: while Ray restarts a dead actor, calls to it
    fail at once with ActorUnavailableError (and its __init__ may load a model for minutes).
    Raises ActorDiedError when Ray gave up on it (max_restarts used up), or the last
    ActorUnavailableError after wait_s."""
    deadline = time.time() + wait_s
    while True:
        try:
            return call()
        except ActorUnavailableError:
            if time.time() > deadline:
                raise
            time.sleep(1.0)


class RolloutWorkerLostError(RuntimeError):
    """A rollout worker died and could not be brought back."""


class LeastOutstandingTokens:
    """Which worker gets the next chunk of work: the one with the fewest outstanding tokens
    (the estimated tokens of its calls not yet finished), among those with fewer than
    `in_flight` calls. A worker that finishes sooner (a faster engine, shorter answers)
    is thus given more, where equal prompt counts would wait on the slowest."""

    def __init__(self, n_workers: int, in_flight: int):
        self.in_flight = in_flight
        self.tokens = [0] * n_workers  # outstanding, per worker
        self.calls = [0] * n_workers
        self.assigned = [0] * n_workers  # tokens given to each worker so far

    def pick(self) -> int | None:
        free = [w for w in range(len(self.tokens)) if self.calls[w] < self.in_flight]
        return min(free, key=lambda w: (self.tokens[w], w)) if free else None

    def add(self, worker: int, tokens: int) -> None:
        self.tokens[worker] += tokens
        self.calls[worker] += 1
        self.assigned[worker] += tokens

    def done(self, worker: int, tokens: int) -> None:
        self.tokens[worker] -= tokens
        self.calls[worker] -= 1


@dataclass
class WorkerCall:
    """One submitted call, enough to submit it again."""

    worker: int
    method: str
    args: tuple
    ref: Any = None


@dataclass
class WorkerFailure:
    """One death of a rollout worker, as recorded in run.json's `failures`."""

    worker: int
    method: str
    error: str


class WorkerPool:
    def __init__(self, handles: list, max_restarts: int, verify: Callable[[int], None] | None = None,
                 on_failure: Callable[[WorkerFailure], None] | None = None):
        """verify(i): raises when worker i, just restored, does not hold the synced policy.
        on_failure: told of every death (run.json's record)."""
        self.handles, self.max_restarts = handles, max_restarts
        self.verify, self.on_failure = verify, on_failure
        self.pids = ray.get([h.pid.remote() for h in handles])
        self.nodes = ray.get([h.node_id.remote() for h in handles])  # Ray node ids (run.json)
        self.restarts = 0  # worker deaths survived (a new process took over)
        self.retries = 0  # calls re-run after their worker died
        self._deaths = [0] * len(handles)
        self._lost = [False] * len(handles)
        # (version, worker method, its argument): how the engines were given the policy
        # (weight_transfer.py); version 0 with no method: the base weights a worker starts with.
        self._synced: tuple[int, str | None, Any] = (0, None, None)
        self._locks = [threading.Lock() for _ in handles]  # the producer thread and the loop both call

    def __len__(self) -> int:
        return len(self.handles)

    def set_synced(self, version: int, method: str, arg) -> None:
        """The policy every engine is being given (worker.<method>(arg, version)): what a
        restarted worker gets. An object ref keeps one copy of the weights in Ray's object
        store; a shared file stays until the learner writes three newer versions."""
        self._synced = (version, method, arg)

    def submit(self, i: int, method: str, *args) -> WorkerCall:
        call = WorkerCall(i, method, args)
        call.ref = getattr(self.handles[i], method).remote(*args)
        return call

    def submit_all(self, method: str, per_worker_args: list[tuple]) -> list[WorkerCall]:
        return [self.submit(i, method, *args) for i, args in enumerate(per_worker_args)]

    def gather(self, calls: list[WorkerCall]) -> list:
        """Each call's result, in order. A call whose worker died (or was restarted under it)
        is re-run on the restarted worker once it holds the synced policy."""
        out = []
        for call in calls:
            for attempt in range(self.max_restarts + 2):
                try:
                    out.append(ray.get(call.ref))
                    break
                except (RayActorError, WorkerRestartedError) as e:
                    if attempt == self.max_restarts + 1:  # failing again and again, restarts or not
                        raise RolloutWorkerLostError(self._lost_message(call.worker, str(e)[:300])) from e
                    self._restore(call, e)
                    call.ref = getattr(self.handles[call.worker], call.method).remote(*call.args)
                    self.retries += 1
        return out

    def call_all(self, method: str, per_worker_args: list[tuple]) -> list:
        return self.gather(self.submit_all(method, per_worker_args))

    def map_balanced(self, method: str, chunks: list[tuple], tokens: list[int],
                     in_flight: int = 2) -> tuple[list, list[int]]:
        """worker.<method>(*chunk) for every chunk, spread by LeastOutstandingTokens
        (tokens: each chunk's estimate). Two calls in flight per worker: one running, one
        queued, so an engine never waits on the driver between chunks. Returns the results
        in chunk order (whatever ran where) and the worker that ran each chunk."""
        if len(self) == 1:  # nothing to balance: the calls in order, as call_all makes them
            return self.gather([self.submit(0, method, *chunk) for chunk in chunks]), [0] * len(chunks)
        balancer = LeastOutstandingTokens(len(self), in_flight)
        results: list = [None] * len(chunks)
        ran_on = [0] * len(chunks)
        todo, running = list(range(len(chunks)))[::-1], {}
        while todo or running:
            while todo and (w := balancer.pick()) is not None:
                i = todo.pop()
                balancer.add(w, tokens[i])
                call = self.submit(w, method, *chunks[i])
                running[call.ref] = (call, i)
            (ready,), _ = ray.wait(list(running), num_returns=1)
            call, i = running.pop(ready)
            results[i], ran_on[i] = self.gather([call])[0], call.worker  # a dead worker's chunk is re-run
            balancer.done(call.worker, tokens[i])
        return results, ran_on

    def _restore(self, call: WorkerCall, error: BaseException) -> None:
        """Bring worker call.worker back: wait for Ray's restart, give it the synced policy,
        verify it. Counted once per new process (two threads may meet the same death)."""
        i = call.worker
        with self._locks[i]:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if self._lost[i]:
                raise RolloutWorkerLostError(self._lost_message(i, first_line)) from error
            pid = self._give_synced_policy(i, first_line)
            if pid != self.pids[i]:
                self.pids[i] = pid
                self.nodes[i] = ray.get(self.handles[i].node_id.remote())  # Ray may restart it elsewhere
                self._deaths[i] += 1
                self.restarts += 1
                if self.on_failure:
                    self.on_failure(WorkerFailure(i, call.method, f"{type(error).__name__}: {first_line}"[:300]))
            if self.verify:
                self.verify(i)

    def _give_synced_policy(self, i: int, error: str) -> int:
        """Wait while Ray restarts worker i (calls meanwhile fail with ActorUnavailableError;
        a model's engine takes a while to start), then give it the synced policy. Returns the
        worker's pid. ActorDiedError: Ray gave up on it (max_restarts used up)."""
        version, method, arg = self._synced
        handle = self.handles[i]
        try:
            return when_restarted(lambda: (ray.get(getattr(handle, method).remote(arg, version) if method
                                                   else handle.keep_base_weights.remote()),
                                           ray.get(handle.pid.remote()))[1])
        except RayActorError as e:
            self._lost[i] = True
            raise RolloutWorkerLostError(self._lost_message(i, error)) from e

    def _lost_message(self, i: int, error: str) -> str:
        return (f"rollout worker {i} died and was restarted {self._deaths[i]} time(s) "
                f"(ray.worker_max_restarts={self.max_restarts}); it cannot be brought back, so the run stops "
                f"(continue it with `rlscale run --resume RUN_DIR`). Last error: {error}")
