"""One rank of a sharded learner: the Learner (learner.py) on its share of every batch,
its gradients combined with the other ranks' through torch.distributed (gloo on CPU,
NCCL on GPU). learner_group.py places the ranks and makes them look like one learner.

    ddp   every rank holds the whole policy and optimizer. After each backward the ranks'
          gradients are averaged in one flat all-reduce (torch's DDP reducer would need
          every forward to pass through its wrapper, which the fp32 LM head and PPO's value
          head do not), so every rank takes the same optimizer step.
    fsdp  FSDP2 `fully_shard` on each decoder layer and on the root: parameters, gradients
          and AdamW state are sharded; a layer's weights are all-gathered for its forward
          and backward only, and gradients are reduce-scattered (averaged).

Exactness (the one-rank update, to float tolerance): every rank holds the whole batch's
tokens and masks. The no-grad pass is split by rows and all-gathered, so advantages and
their batch statistics are computed on the whole batch, identically on every rank. Each
minibatch's prompt groups are split over the ranks; each rank's loss is its terms over the
*whole* minibatch's aggregation denominator (algos/primitives.aggregation_denominator),
times the number of ranks, so the averaged gradient is exactly the sum over all tokens
that one rank would take.
"""

from __future__ import annotations

import datetime
import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist

from .learner import Learner, hash_state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class LearnerRank(Learner):
    def __init__(self, rank: int, world: int, strategy: str, *learner_args):
        """Only records its place: the process group needs rank 0's address first (setup)."""
        self.rank, self.world, self.strategy = rank, world, strategy
        self._learner_args = learner_args

    def address(self) -> tuple[str, int]:
        """Where rank 0 listens for the others (called on rank 0 before setup)."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def setup(self, master_addr: str, master_port: int) -> None:
        """Join the process group, then build the learner (loads the policy, shards it)."""
        use_gpu = self._learner_args[3]
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = master_addr, str(master_port)
        dist.init_process_group("nccl" if use_gpu else "gloo", rank=self.rank, world_size=self.world,
                                timeout=datetime.timedelta(minutes=10))
        super().__init__(*self._learner_args)
        if not use_gpu:  # the ranks of one host share its cores
            torch.set_num_threads(max(1, torch.get_num_threads() // self.world))

    # ---- the Learner's hooks --------------------------------------------------------------
    def _shard(self, params: list) -> list:
        if self.strategy == "ddp":
            return params
        from torch.distributed.fsdp import fully_shard

        for layer in self.policy.base_model.layers:
            fully_shard(layer)
        fully_shard(self.policy)
        return list(self.policy.parameters())

    def _local_rows(self, n_rows: int) -> np.ndarray:
        return np.array_split(np.arange(n_rows), self.world)[self.rank]

    def _gather_rows(self, local: torch.Tensor | None, n_rows: int) -> torch.Tensor | None:
        if local is None:
            return None
        sizes = [len(part) for part in np.array_split(np.arange(n_rows), self.world)]
        padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=local.dtype, device=self.device)
        padded[: len(local)] = local.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)]).cpu()

    def _local_groups(self, groups: np.ndarray) -> np.ndarray:
        return np.array_split(groups, self.world)[self.rank]

    def _after_backward(self) -> None:
        if self.strategy != "ddp":
            return  # FSDP2 averaged the gradients in its reduce-scatter
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        params = [p for g in self.opt.param_groups for p in g["params"]]
        for p in params:
            if p.grad is None:  # same graph on every rank, but keep the all-reduce aligned regardless
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world
        for g, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(averaged)

    def _sum_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(keys, t.cpu().tolist()))

    # ---- whole-state views: collective under FSDP, rank 0's result is the group's --------
    def _full_model_state(self) -> dict[str, torch.Tensor]:
        if self.strategy == "ddp":
            return {k: v.detach().cpu() for k, v in self.policy.state_dict().items()}
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def _full_optimizer_state(self) -> dict:
        if self.strategy == "ddp":
            return self.opt.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(self.policy, self.opt,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def weight_tensors(self):
        """As Learner.weight_tensors; under fsdp each parameter is all-gathered in turn
        (every rank must iterate), so one full parameter at a time exists outside its shards."""
        if self.strategy == "ddp":
            yield from super().weight_tensors()
            return
        from torch.distributed.tensor import DTensor

        for name, value in self.policy.state_dict().items():
            full = value.full_tensor() if isinstance(value, DTensor) else value
            yield name, full.detach().to("cpu")

    def writes_weights(self) -> bool:
        return self.rank == 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        full = self._full_model_state()
        return {k: v.contiguous() for k, v in full.items()} if self.rank == 0 else {}

    def save_checkpoint(self, path: str) -> str:
        """As Learner.save_checkpoint, written by rank 0 from the gathered state."""
        if self.strategy == "ddp":
            return super().save_checkpoint(path) if self.rank == 0 else self.state_hash()
        model, optim = self._full_model_state(), self._full_optimizer_state()
        if self.rank == 0:
            from safetensors.torch import save_file

            policy_dir = os.path.join(path, "policy")
            os.makedirs(policy_dir, exist_ok=True)
            self.policy.config.save_pretrained(policy_dir)  # its own architectures, not the FSDP class's
            if getattr(self.policy.config, "tie_word_embeddings", False):
                model.pop("lm_head.weight", None)  # the embedding's tensor again
            save_file({k: v.contiguous() for k, v in model.items()}, os.path.join(policy_dir, "model.safetensors"))
            torch.save({"optimizer": optim, "version": self.version, "torch_rng": torch.get_rng_state(),
                        "value_head": None, "strategy": "fsdp"}, os.path.join(path, "learner_state.pt"))
        return self._hash(model, optim)

    def load_checkpoint(self, path: str) -> str:
        if self.strategy == "ddp":
            return super().load_checkpoint(path)  # every rank loads the whole state
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
        )
        from transformers import AutoModelForCausalLM

        full = StateDictOptions(full_state_dict=True)
        trained = AutoModelForCausalLM.from_pretrained(os.path.join(path, "policy"), dtype=self.policy.dtype)
        set_model_state_dict(self.policy, trained.state_dict(), options=full)
        state = torch.load(os.path.join(path, "learner_state.pt"), map_location="cpu", weights_only=False)
        set_optimizer_state_dict(self.policy, self.opt, optim_state_dict=state["optimizer"], options=full)
        self.version = state["version"]
        torch.set_rng_state(state["torch_rng"].cpu())
        return self.state_hash()

    def state_hash(self) -> str:
        if self.strategy == "ddp":
            return super().state_hash()
        return self._hash(self._full_model_state(), self._full_optimizer_state())

    def _hash(self, model: dict, optim: dict) -> str:
        """sha256 over the gathered policy, the optimizer state (by parameter name) and the
        version: equal hashes mean equal learner state, whatever the sharding. Rank 0's: the
        gathered state lives there only (cpu_offload), the other ranks return ""."""
        if self.rank != 0:
            return ""
        # JSON: a tuple setting (betas) comes back from set_optimizer_state_dict as a list.
        return hash_state(self.version, sorted(model.items()), optim["state"],
                          json.dumps(optim["param_groups"], sort_keys=True, default=str))
