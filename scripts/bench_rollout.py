"""Rollout throughput: the rollout worker's vLLM engine vs transformers `generate`.

Same model, same prompts, same number of new tokens (EOS ignored, so both generate
exactly --new-tokens per sequence), temperature 1. Prints tokens/s for each and the
ratio vLLM / transformers, per zoo size. Weights are random-initialised zoo
architectures: throughput depends on shape and token count, not on the weights.

    .venv/bin/python scripts/bench_rollout.py --sizes xs s --seqs 256 --new-tokens 64
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from rlscale.config import RolloutConfig
from rlscale.rollout import RolloutWorker
from rlscale.tokenizer import save_tokenizer
from rlscale.zoo import llama_config


def make_checkpoint(size: str, root: str) -> str:
    torch.manual_seed(0)
    path = f"{root}/{size}"
    LlamaForCausalLM(llama_config(size)).save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    return path


def bench_vllm(path: str, prompts: list[str], new_tokens: int, repeats: int) -> float:
    from vllm import SamplingParams

    worker = RolloutWorker(path, RolloutConfig().model_dump(), {}, seed=0, use_gpu=torch.cuda.is_available(),
                           dtype="float32")
    # The worker's own sampling settings (logprobs on, no detokenisation), every sequence
    # exactly new_tokens long.
    params = SamplingParams(temperature=1.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True,
                            logprobs=0, detokenize=False)
    worker.llm.generate(prompts[:8], params, use_tqdm=False)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        outs = worker.llm.generate(prompts, params, use_tqdm=False)
    dt = time.perf_counter() - t
    n = sum(len(o.token_ids) for out in outs for o in out.outputs) * repeats
    del worker
    return n / dt


@torch.no_grad()
def bench_hf(path: str, prompts: list[str], new_tokens: int, repeats: int) -> float:
    tok = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path).eval()
    enc = tok(prompts, return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0,
              pad_token_id=tok.pad_token_id)
    model.generate(**tok(prompts[:8], return_tensors="pt", padding=True), **kw)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        out = model.generate(**enc, **kw)
    dt = time.perf_counter() - t
    return (out.shape[1] - enc.input_ids.shape[1]) * len(prompts) * repeats / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["xs", "s", "m", "l"])
    ap.add_argument("--seqs", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    prompts = [f"Q: {i % 97}+{(7 * i) % 89}-{i % 13}\nA: " for i in range(args.seqs)]
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for size in args.sizes:
            path = make_checkpoint(size, root)
            hf = bench_hf(path, prompts, args.new_tokens, args.repeats)
            vl = bench_vllm(path, prompts, args.new_tokens, args.repeats)
            rows.append((size, vl, hf))
    print(f"\n{args.seqs} sequences x {args.new_tokens} new tokens, temperature 1, {args.repeats} repeats")
    print(f"{'size':<6}{'vLLM tok/s':>14}{'HF generate tok/s':>20}{'vLLM / HF':>12}")
    for size, vl, hf in rows:
        print(f"{size:<6}{vl:>14,.0f}{hf:>20,.0f}{vl / hf:>12.2f}")


if __name__ == "__main__":
    main()
