"""Seconds per RL step and per 1,000 sampled tokens, start-up, and time to a training-
reward target: rlscale in sync mode and async at k = 1, 2, 4, against a plain colocated
loop of transformers `generate` + a torch GRPO update (the loop a user writes for
themselves), on the quickstart's model, task and batch (32 prompts x 8, 48 tokens).

Every configuration runs as its own process, one after another, in this one run of the
script, so the ratios compare like with like on the same (shared, noisy) machine:

    start-up       process start -> first RL step starts (imports, Ray, engines, model)
    s/step         median step wall time over steps 3..N (the first two warm up)
    s/1k tokens    total loop seconds per 1,000 policy-sampled tokens
    to target      process start -> the step where the 5-step mean training reward first
                   reaches --target (start-up included)
    final val      mean@4 on the quickstart's 200 validation problems after the last step

rlscale runs skip the step-0 evaluation (eval.at_start=false) and evaluate once at the
end; the colocated loop evaluates with `generate` the same way. The zoo model is
pre-trained first (cached), outside every timing.

    .venv/bin/python scripts/bench_step.py --steps 40 --out runs/bench_step
    .venv/bin/python scripts/bench_step.py --size s --pretrain-steps 600 --only colocated sync "async k=2" \
        --out runs/bench_step_s     # the s zoo model (1.06M parameters), shorter pre-training
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RLSCALE = str(Path(sys.executable).with_name("rlscale"))
CONFIG = str(ROOT / "configs/quickstart.yaml")

MODES = {
    "sync": [],
    "async k=1": ["rollout.mode=async", "algo.max_staleness=1", "algo.off_policy.is_level=token"],
    "async k=2": ["rollout.mode=async", "algo.max_staleness=2", "algo.off_policy.is_level=token"],
    "async k=4": ["rollout.mode=async", "algo.max_staleness=4", "algo.off_policy.is_level=token"],
    # Two engines on a 2-core machine: each gets half of every batch.
    "sync, 2 workers": ["rollout.num_workers=2"],
    "async k=1, 2 workers": ["rollout.mode=async", "algo.max_staleness=1", "algo.off_policy.is_level=token",
                             "rollout.num_workers=2"],
}


# Where a step's seconds go (medians over steps 3..N; the colocated loop has only the first
# two: generate, then scoring + old logprobs + the two optimizer steps).
PROFILE = ["rollout_s", "learner_s", "sync_s", "engine_idle_s", "learner_idle_s"]


def summarize(rows: list[dict], t_process: float, t_loop: float, final_val: float, target: float) -> dict:
    steps = [r for r in rows if r["step"] > 0]
    rewards = np.array([r["reward_mean"] for r in steps])
    window = np.convolve(rewards, np.ones(5) / 5, "valid")
    hit = np.flatnonzero(window >= target)
    to_target = steps[hit[0] + 4]["time"] - t_process if len(hit) else None
    loop_s = steps[-1]["time"] - t_loop
    profile = {k: float(np.median([r[k] for r in steps[2:]])) for k in PROFILE if steps[-1].get(k) is not None}
    return {"profile": profile, "startup_s": t_loop - t_process,
            "step_s": float(np.median([r["step_s"] for r in steps[2:]])),
            "s_per_1k_tokens": 1000 * loop_s / sum(r["tokens_sampled"] for r in steps),
            "to_target_s": to_target, "final_val": final_val, "loop_s": loop_s, "steps": len(steps)}


def bench_rlscale(name: str, overrides: list[str], steps: int, out: Path, target: float, model: list[str]) -> dict:
    run_dir = out / name.replace(" ", "_").replace("=", "")
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists; pick a fresh --out")
    cmd = [RLSCALE, "run", CONFIG, f"steps={steps}", f"eval.every={steps}", "eval.at_start=false",
           f"run_dir={run_dir}", "progress=false", *model, *overrides]
    t_process = time.time()
    with open(out / f"{run_dir.name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    info = json.loads((run_dir / "run.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    return summarize(rows, t_process, info["loop_started_unix"], summary["final_val_mean_at_k"], target)


def bench_colocated(steps: int, out: Path, target: float, model: list[str]) -> dict:
    t_process = time.time()
    with open(out / "colocated.log", "w") as log:
        subprocess.run([sys.executable, __file__, "--colocated-loop", "--steps", str(steps), "--out", str(out),
                        "--model", *model],
                       check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    res = json.loads((out / "colocated.json").read_text())
    return summarize(res["rows"], t_process, res["loop_started_unix"], res["final_val"], target)


def colocated_loop(steps: int, out: Path, model: list[str]) -> None:
    """One process, no Ray, no vLLM: sample with `generate` (KV cache), score with the same
    environment, one no-grad pass for the old logprobs, then GRPO (group-normalised
    advantages, clip 0.2, token mean) in 2 minibatches; the quickstart's settings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlscale.collect import draw_problems
    from rlscale.config import load_config
    from rlscale.modelpath import resolve_model
    from rlscale_envs import make_text_env

    cfg = load_config(CONFIG, model)
    torch.manual_seed(cfg.seed)
    path, _ = resolve_model(cfg, log=lambda *a: None)
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.algo.lr, betas=tuple(cfg.algo.betas), weight_decay=0.0)
    env = make_text_env(cfg.env.id, cfg.env.kwargs, "train")
    rng = np.random.default_rng(cfg.seed)
    P, G, T = cfg.rollout.prompts_per_step, cfg.rollout.group_size, cfg.rollout.max_tokens

    def sample(problems, n):
        enc = tok([p.prompt for p in problems], return_tensors="pt", padding=True)
        with torch.no_grad():
            seqs = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=T,
                                  num_return_sequences=n, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id)
        completion = seqs[:, enc.input_ids.shape[1]:]
        # Tokens up to and including the first EOS are the answer.
        ended = (completion == tok.eos_token_id).int().cumsum(-1)
        comp_mask = ((ended == 0) | ((ended == 1) & (completion == tok.eos_token_id))).float()
        attn = torch.cat([enc.attention_mask.repeat_interleave(n, 0), comp_mask.long()], dim=1)
        texts = tok.batch_decode(completion * comp_mask.long() + tok.pad_token_id * (1 - comp_mask.long()),
                                 skip_special_tokens=True)
        return seqs, attn, comp_mask, texts, enc.input_ids.shape[1]

    def token_logp(seqs, attn, start):
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=seqs, attention_mask=attn, position_ids=pos).logits[:, start - 1:-1]
        return torch.log_softmax(logits.float(), -1).gather(-1, seqs[:, start:, None]).squeeze(-1)

    rows = []
    t_loop = time.time()
    for step in range(1, steps + 1):
        t0 = time.time()
        problems = [draw_problems(env, 1, int(s), distinct=False)[0] for s in rng.integers(0, 2**31 - 1, size=P)]
        model.eval()
        seqs, attn, mask, texts, start = sample(problems, G)
        t_gen = time.time()
        rewards = torch.tensor([r for r, _ in env.score_many([p for p in problems for _ in range(G)], texts)])
        grouped = rewards.view(P, G)
        adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)).flatten()
        with torch.no_grad():
            old = token_logp(seqs, attn, start)
        model.train()
        for mb in np.array_split(np.arange(P), cfg.algo.minibatches):
            idx = torch.as_tensor((mb[:, None] * G + np.arange(G)).flatten())
            ratio = torch.exp(token_logp(seqs[idx], attn[idx], start) - old[idx])
            a = adv[idx, None]
            loss_tok = -torch.min(ratio * a, ratio.clamp(0.8, 1.2) * a)
            loss = (loss_tok * mask[idx]).sum() / mask[idx].sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.algo.max_grad_norm)
            opt.step()
        rows.append({"step": step, "reward_mean": float(rewards.mean()), "tokens_sampled": int(mask.sum()),
                     "step_s": time.time() - t0, "time": time.time(), "rollout_s": t_gen - t0,
                     "learner_s": time.time() - t_gen})
        print(f"step {step} reward {rows[-1]['reward_mean']:.3f} {rows[-1]['step_s']:.2f}s", flush=True)
    val_env = make_text_env(cfg.env.id, cfg.env.kwargs, "val")
    val = draw_problems(val_env, cfg.eval.n_problems, cfg.eval.seed, distinct=True)
    model.eval()
    _, _, _, texts, _ = sample(val, cfg.eval.k)
    final = float(np.mean([r for r, _ in env.score_many([p for p in val for _ in range(cfg.eval.k)], texts)]))
    (out / "colocated.json").write_text(json.dumps({"rows": rows, "loop_started_unix": t_loop, "final_val": final}))
    env.close()
    val_env.close()


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} CPUs"
    except OSError:
        return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--target", type=float, default=0.9, help="training-reward target (5-step mean)")
    ap.add_argument("--out", default="runs/bench_step")
    ap.add_argument("--only", nargs="*", help="a subset of: colocated, " + ", ".join(MODES))
    ap.add_argument("--size", default="xs", choices=["xs", "s", "m", "l"], help="zoo model (default xs)")
    ap.add_argument("--pretrain-steps", type=int, help="pre-training steps of that model (default: the config's)")
    ap.add_argument("--colocated-loop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", nargs="*", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.colocated_loop:
        return colocated_loop(args.steps, out, args.model)
    steps_override = [f"pretrain.steps={args.pretrain_steps}"] if args.pretrain_steps else []
    model = [f"model.zoo_size={args.size}", *steps_override]
    subprocess.run([RLSCALE, "pretrain", "--size", args.size, "--config", CONFIG,
                    *([f"steps={args.pretrain_steps}"] if args.pretrain_steps else [])], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    names = args.only or ["colocated", *MODES]
    results = {}
    for name in names:
        print(f"running {name} ...", flush=True)
        results[name] = (bench_colocated(args.steps, out, args.target, model) if name == "colocated"
                         else bench_rlscale(name, MODES[name], args.steps, out, args.target, model))
    base = results.get("colocated") or results[names[0]]
    pre = f", pre-trained {args.pretrain_steps} steps" if args.pretrain_steps else ""
    lines = [f"bench_step: quickstart task, {args.size} zoo model{pre}, {args.steps} steps, on {cpu_name()}",
             f"ratios are against {'the colocated loop' if 'colocated' in results else names[0]} "
             "(> 1 = faster than it)", "",
             "| setting | start-up s | s/step | s/1k tokens | to reward " f"{args.target} s | final val | "
             "step speed-up | to-target speed-up |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        tt = f"{r['to_target_s']:.1f}" if r["to_target_s"] is not None else "not reached"
        tt_ratio = (f"{base['to_target_s'] / r['to_target_s']:.2f}x"
                    if r["to_target_s"] and base["to_target_s"] else "-")
        lines.append(f"| {name} | {r['startup_s']:.1f} | {r['step_s']:.3f} | {r['s_per_1k_tokens']:.3f} | {tt} | "
                     f"{r['final_val']:.3f} | {base['step_s'] / r['step_s']:.2f}x | {tt_ratio} |")
    lines += ["", "where a step's seconds go (medians; in async mode the phases overlap):", "",
              "| setting | s/step | " + " | ".join(PROFILE) + " |", "|---|---|" + "---|" * len(PROFILE)]
    for name, r in results.items():
        cells = [f"{r['profile'][k]:.3f}" if k in r["profile"] else "-" for k in PROFILE]
        lines.append(f"| {name} | {r['step_s']:.3f} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    (out / "bench_step.md").write_text(text + "\n")
    (out / "bench_step.json").write_text(json.dumps({"cpu": cpu_name(), "size": args.size, "steps": args.steps,
                                                     "pretrain_steps": args.pretrain_steps, "results": results},
                                                    indent=2))


if __name__ == "__main__":
    main()
