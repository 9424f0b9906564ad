"""The rollout pipeline's staleness bound (rlscale/pipeline.py), without Ray: the gate
that keeps the engines at most k versions ahead, and the filter that drops anything
older, plus the config that selects the mode."""

import time

import pytest

from rlscale.batch import RolloutBatch
from rlscale.config import ConfigError, load_config
from rlscale.pipeline import BatchProducer, drop_stale


def batch_with_versions(versions: list[int]) -> RolloutBatch:
    n = len(versions)
    return RolloutBatch(prompt_ids=[[1]] * n, completion_ids=[[2, 3]] * n, sampling_logprobs=[[-1.0, -1.0]] * n,
                        loss_mask=[[1, 1]] * n, policy_versions=versions, turn_versions=[[v] for v in versions],
                        turn_lens=[[(1, 2)]] * n, turns=[1] * n, prompts=[f"p{i}" for i in range(n)],
                        completions=["c"] * n, truncated=[False] * n, rewards=[float(i % 2) for i in range(n)],
                        reasons=[""] * n, env_names=[None] * n)


def test_drop_stale_keeps_groups_within_the_bound_and_counts_the_rest():
    # Learner at version 5, k = 2: versions 3..5 may be trained, 2 and older may not. The
    # third group holds one sample of version 2 (a multi-turn episode's oldest turn, say):
    # the whole group goes, since its advantages need all G samples.
    batch = batch_with_versions([5, 5, 3, 3, 3, 2, 1, 1])
    kept, dropped = drop_stale(batch, learner_version=5, max_staleness=2, group_size=2)
    assert kept.policy_versions == [5, 5, 3, 3] and kept.prompts == ["p0", "p1", "p2", "p3"]
    assert dropped == 4
    current, dropped = drop_stale(batch, learner_version=5, max_staleness=0, group_size=2)
    assert current.policy_versions == [5, 5] and dropped == 6


def test_drop_stale_with_nothing_stale_returns_the_batch_itself():
    batch = batch_with_versions([3, 3, 2, 2])
    kept, dropped = drop_stale(batch, learner_version=3, max_staleness=1, group_size=2)
    assert kept is batch and dropped == 0


def run_pipeline(k: int, steps: int, learner_s: float) -> list[tuple[int, int]]:
    """Drive a producer as the orchestrator does: each collect records the version the
    engines held when it started; the 'learner' takes learner_s per step, then syncs
    (release). Returns (step, version at collection start) per step."""
    released = {"v": 0}
    started: list[int] = []

    def collect():
        started.append(released["v"])
        time.sleep(0.01)
        return len(started)

    producer = BatchProducer(collect, steps, k).start()
    producer.release(0)
    got = []
    for step in range(1, steps + 1):
        assert producer.next() == step
        got.append((step, started[step - 1]))
        time.sleep(learner_s)  # the update
        released["v"] = step
        producer.release(step)
    producer.stop()
    return got


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_producer_runs_at_most_k_versions_ahead_and_reaches_k_with_a_slow_learner(k):
    got = run_pipeline(k, steps=8, learner_s=0.05)  # the learner is 5x slower than collection
    lags = [(step - 1) - version for step, version in got]  # learner version at the update minus sampler's
    assert max(lags) == k and min(lags) >= 0
    assert lags[k:] == [k] * (8 - k)  # with a slow learner the engines stay exactly k ahead


def test_sync_mode_collects_each_batch_after_the_previous_sync():
    got = run_pipeline(0, steps=5, learner_s=0.0)
    assert got == [(s, s - 1) for s in range(1, 6)]


def test_collection_error_reaches_the_consumer():
    def collect():
        raise ValueError("engine died")

    producer = BatchProducer(collect, 3, 1).start()
    with pytest.raises(ValueError, match="engine died"):
        producer.next()


def test_stop_releases_a_producer_waiting_at_the_gate():
    producer = BatchProducer(lambda: 1, 5, 0).start()
    producer.release(0)
    assert producer.next() == 1  # step 2 now waits for release(1)
    producer.stop()
    producer._thread.join(timeout=5)
    assert not producer._thread.is_alive()


def test_mode_and_staleness_config():
    sync = load_config("configs/quickstart.yaml")
    assert (sync.rollout.mode, sync.algo.max_staleness) == ("sync", 0)
    asy = load_config("configs/quickstart_async.yaml")
    assert (asy.rollout.mode, asy.algo.max_staleness, asy.algo.off_policy.is_level) == ("async", 1, "token")
    assert load_config("configs/quickstart.yaml", ["rollout.mode=async"]).algo.max_staleness == 1
    zero = load_config("configs/quickstart.yaml", ["rollout.mode=async", "algo.max_staleness=0"])
    assert zero.algo.max_staleness == 0  # k=0 means sync, also when asked for as async
    with pytest.raises(ConfigError, match=r"algo.max_staleness=2 needs rollout.mode=async"):
        load_config("configs/quickstart.yaml", ["algo.max_staleness=2"])
    with pytest.raises(ConfigError, match=r"rollout.mode: Input should be 'sync' or 'async'"):
        load_config("configs/quickstart.yaml", ["rollout.mode=pipelined"])
    with pytest.raises(ConfigError, match=r"algo.max_staleness: Input should be greater than or equal to 0"):
        load_config("configs/quickstart.yaml", ["rollout.mode=async", "algo.max_staleness=-1"])


def test_a_checkpoint_of_an_async_run_draws_the_batches_in_flight_again():
    """k = 2: after step 1 the producer has begun drawing batches 2 and 3. The draw state a
    checkpoint of step 1 records is the one before batch 2's draws, so a resume from it draws
    batches 2 and 3 again, with the prompts the uninterrupted run trained on."""
    import numpy as np

    rng = np.random.default_rng(0)
    draws: list[list[int]] = []

    def collect():
        draws.append(rng.integers(0, 1000, 3).tolist())
        return len(draws)

    producer = BatchProducer(collect, 6, 2, sampler_state=lambda: {"sampler_rng": rng.bit_generator.state}).start()
    producer.release(0)
    assert producer.next() == 1
    deadline = time.time() + 5
    while producer.started < 3 and time.time() < deadline:  # released 0, k=2: batches 2, 3 may be drawn
        time.sleep(0.01)
    assert producer.started == 3
    state = producer.sampler_state_before(2, lambda: {"sampler_rng": rng.bit_generator.state})
    producer.stop(wait=True)
    resumed = np.random.default_rng(123)
    resumed.bit_generator.state = state["sampler_rng"]
    assert [resumed.integers(0, 1000, 3).tolist() for _ in range(2)] == draws[1:3]
    # A batch whose draws have not begun: the state now, which its draws will start from.
    assert producer.sampler_state_before(9, lambda: "now") == "now"
