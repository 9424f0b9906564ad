"""Synthetic run directories and zoo checkpoints drawn from known laws, in the exact format
rlscale writes (rlscale/runlog.py). For tests, the benchmark and trying the analysis
without running anything: the fits should give back the laws put in here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config import load_config, non_experiment_keys, to_yaml
from ..runlog import METRIC_FIELDS
from .pretrain_laws import chinchilla_curve
from .sigmoid import sigmoid_curve


def write_run(run_dir, *, A=0.7, B=1.5, c_mid=2e13, r0=0.1, steps=200, eval_every=10, flops_per_step=1e12,
              n_params=137_856, n_problems=200, k=4, prompts=32, group=8, entropy_a=0.25, seed=0,
              accuracy_at=None, overrides: tuple[str, ...] = ()) -> Path:
    """An RL run whose validation accuracy follows ScaleRL's sigmoid in cumulative FLOPs (or
    `accuracy_at(C)` if given) and whose training reward and entropy follow Cui et al.'s
    R = -a exp(H) + b, with binomial evaluation noise of eval.n_problems x k samples."""
    if accuracy_at is None:
        def accuracy_at(c):
            return float(sigmoid_curve([A, B, c_mid], [c], r0)[0]) if c > 0 else r0
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cfg = load_config(None, [f"name={run_dir.name}", f"seed={seed}", f"steps={steps}", f"run_dir={run_dir}",
                             f"eval.every={eval_every}", f"eval.n_problems={n_problems}", f"eval.k={k}",
                             f"rollout.prompts_per_step={prompts}", f"rollout.group_size={group}", *overrides])
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    (run_dir / "run.json").write_text(json.dumps({
        "name": run_dir.name, "seed": seed, "command": ["synthetic"], "host": "synthetic",
        "non_experiment_keys": non_experiment_keys(), "sweep_setting": cfg.sweep_setting,
        "model": {"source": "zoo", "zoo_size": cfg.model.zoo_size},
        "model_shape": {"n_params": n_params, "n_layers": 2, "d_attn": 64, "n_params_total": n_params}}))
    entropy_b = accuracy_at(1e30) + entropy_a  # R(H = 0) = b - a: entropy runs out at the ceiling
    rows, cum, t = [], 0.0, 0.0
    for step in range(steps + 1):
        row = {key: None for key in METRIC_FIELDS} | {"step": step, "policy_version": step}
        if step > 0:
            cum += flops_per_step * rng.uniform(0.9, 1.1)
            t += 2.0
            p = accuracy_at(cum)
            reward = rng.binomial(prompts * group, p) / (prompts * group)
            entropy = float(np.log(max(entropy_b - p, 1e-3) / entropy_a) + rng.normal(0, 0.02))
            row |= {"reward_mean": reward, "reward_std": float(np.sqrt(reward * (1 - reward))),
                    "entropy": entropy, "response_len_mean": 30 + 10 * p + rng.normal(0, 1),
                    "truncated_frac": 0.0, "kl_ref": 0.05 * step / steps, "kl_old_new": 1e-3,
                    "clip_frac": 0.02 + 0.01 * rng.random(), "loss": 0.0, "grad_norm": 1.0,
                    "step_flops": flops_per_step, "rollout_s": 1.5, "step_s": 2.0}
        row |= {"time": 1.7e9 + t, "cumulative_flops": cum, "cumulative_s": t}
        if step % eval_every == 0 or step == steps:
            p = accuracy_at(cum)
            row["val_mean_at_k"] = rng.binomial(n_problems * k, p) / (n_problems * k)
            row["val_pass_at_k"] = min(1.0, 1 - (1 - p) ** k)
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = [r for r in rows if r["val_mean_at_k"] is not None]
    (run_dir / "summary.json").write_text(json.dumps({
        "steps": steps, "base_val_mean_at_k": evals[0]["val_mean_at_k"],
        "final_val_mean_at_k": evals[-1]["val_mean_at_k"], "eval_k": k, "eval_problems": n_problems,
        "total_flops": cum}))
    return run_dir


# Chinchilla-like constants for character-level arithmetic models of 1e5-1e7 parameters.
ZOO_LAW = (0.45, 60.0, 400.0, 0.35, 0.4)  # E, A, B, alpha, beta
ZOO_SIZES = {"xs": 137_856, "s": 820_000, "m": 2_600_000, "l": 6_100_000}


def write_zoo_model(cache_dir, size: str, *, n_params: int | None = None, steps=3000, log_every=25,
                    tokens_per_step=4096, law=ZOO_LAW, gamma=4.0, l0=1.4, noise=0.01, seed=0,
                    prompt_floor: float | None = None) -> Path:
    """A zoo checkpoint directory (metrics and base evaluation only, no weights) whose
    validation loss follows L(N, D) and whose accuracy follows 1 / (1 + exp(gamma (L - l0))).
    With `prompt_floor`, the law's loss is logged as `solution_loss` and `val_loss` is it plus
    that floor (the prompts' unpredictable operands), as rlscale/pretrain.py logs them; the
    directory then names its steps, so that one size can have several token budgets."""
    n = n_params or ZOO_SIZES[size]
    out = Path(cache_dir) / (f"{size}-seed{seed}-synthetic" + ("" if prompt_floor is None else f"-{steps}"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + n)
    rows = []
    for step in range(log_every, steps + 1, log_every):
        tokens = step * tokens_per_step
        loss = float(chinchilla_curve(law, np.array([[n, tokens]]))[0] * np.exp(rng.normal(0, noise)))
        rows.append({"step": step, "n_params": n, "n_params_total": n + 5000, "tokens": tokens,
                     "flops": 6 * n * tokens, "train_loss": loss, "val_loss": loss + (prompt_floor or 0)}
                    | ({} if prompt_floor is None else {"solution_loss": loss}))
    acc = float(1 / (1 + np.exp(gamma * (loss - l0))))  # from the last (final) loss of the law
    (out / "pretrain_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "base_eval.json").write_text(json.dumps({
        "size": size, "n_params": n, "tokens": rows[-1]["tokens"], "final_val_loss": rows[-1]["val_loss"],
        "heldout_accuracy_greedy": min(1.0, acc * 1.5), "heldout_accuracy_sampled": acc,
        "settings": {"seed": seed}}))
    (out / "done.json").write_text("{}")
    return out
