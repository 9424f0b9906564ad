"""Rollout load balancing (worker_pool.LeastOutstandingTokens) and the rollout-side
placement settings. The balancer is driven here by a simulated clock: two engines, one
three times faster, and chunks of unequal length, as on a host whose engines differ."""

import heapq

import pytest

from rlscale.config import ConfigError, load_config
from rlscale.device import actor_resources, vllm_engine_kwargs
from rlscale.worker_pool import LeastOutstandingTokens


def simulate(chunk_tokens: list[int], speeds: list[float], in_flight: int = 2) -> tuple[list[int], float]:
    """Each engine works through its calls one at a time at `speed` tokens/s; the next
    chunk goes where the balancer says whenever a call ends. Returns tokens per engine and
    the time the last call ended."""
    balancer = LeastOutstandingTokens(len(speeds), in_flight)
    busy_until = [0.0] * len(speeds)
    todo, events, now = list(range(len(chunk_tokens)))[::-1], [], 0.0
    while todo or events:
        while todo and (w := balancer.pick()) is not None:
            i = todo.pop()
            balancer.add(w, chunk_tokens[i])
            busy_until[w] = max(busy_until[w], now) + chunk_tokens[i] / speeds[w]
            heapq.heappush(events, (busy_until[w], w, i))
        now, w, i = heapq.heappop(events)
        balancer.done(w, chunk_tokens[i])
    return balancer.assigned, now


def test_a_faster_engine_is_given_more_tokens_and_the_step_ends_sooner():
    chunks = [300, 100, 500, 200, 400, 100, 300, 200] * 2
    assigned, t_balanced = simulate(chunks, speeds=[3.0, 1.0])
    assert sum(assigned) == sum(chunks)
    assert assigned[0] > 2 * assigned[1]  # about 3:1, as the speeds
    # Equal prompt counts (half the chunks to each engine): the slow engine sets the pace.
    half = len(chunks) // 2
    t_even = max(sum(chunks[:half]) / 3.0, sum(chunks[half:]) / 1.0)
    assert t_balanced < 0.7 * t_even


def test_equal_engines_get_equal_shares_and_never_more_than_in_flight_calls():
    balancer = LeastOutstandingTokens(3, in_flight=2)
    for _ in range(6):
        balancer.add(balancer.pick(), 100)
    assert balancer.calls == [2, 2, 2] and balancer.pick() is None
    balancer.done(1, 100)
    assert balancer.pick() == 1


def test_tensor_parallel_engines_take_that_many_gpus():
    cfg = load_config("configs/quickstart.yaml", ["rollout.tensor_parallel_size=2"])
    kwargs = vllm_engine_kwargs(True, cfg.rollout, "bfloat16")
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["distributed_executor_backend"] == "mp"
    assert actor_resources(True, cfg.rollout.tensor_parallel_size) == {"num_gpus": 2, "num_cpus": 1}
    assert "tensor_parallel_size" not in vllm_engine_kwargs(True, load_config("configs/quickstart.yaml").rollout,
                                                            "bfloat16")
    with pytest.raises(ConfigError, match="rollout.tensor_parallel_size=2 .*ray.use_gpu=no"):
        load_config("configs/quickstart.yaml", ["rollout.tensor_parallel_size=2", "ray.use_gpu='no'"])
