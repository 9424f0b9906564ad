"""Pre-train a zoo base model on a synthetic arithmetic corpus, deterministically.

The corpus is worked solutions from the arithmetic family (train split only, so the
validation problems stay unseen). A fraction `answer_noise` of them are *sloppy*: one
step is off by a little and the error is carried to the boxed answer. The model learns
the procedure but also a habit of slipping, which leaves RL something to fix.

Each checkpoint directory holds safetensors weights + tokenizer files (loadable by
transformers and vLLM), `pretrain_metrics.jsonl` with (step, N, D, FLOPs, loss) rows for
the pre-training laws, and `base_eval.json` with the held-out accuracy.

Two validation losses are logged. `val_loss` is over whole held-out documents, prompt
included; its floor is set by the prompt's random operands, which no model can predict.
`solution_loss` is over the solution tokens (and <eos>) of clean held-out worked solutions,
given their prompts: what the model knows of the procedure (docs/study.md, part 0b).

With `text_fraction` > 0, that share of the characters are passages of Python source
(rlscale/text_corpus.py), and `text_loss` is logged too: the loss on passages of held-out
source files, the loss the pre-training laws are fitted to when present (part 0c).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaForCausalLM
from transformers.utils import logging as hf_logging

from rlscale_envs.arith import ArithFamily, solution_text
from rlscale_envs.math_env import MathEnv

from .compute import ModelShape, pretrain_step_flops
from .config import PretrainConfig
from .text_corpus import corpus_identity, stdlib_corpus
from .tokenizer import build_tokenizer
from .zoo import llama_config, zoo_dir

LOG_EVERY = 25
TEXT_PASSAGE_CHARS = 256  # one source-text document; about two training rows of 128 tokens


def settings_tag(size: str, cfg: PretrainConfig) -> str:
    keys = cfg.model_dump(exclude={"cache_dir", "eval_problems"})
    if cfg.text_fraction:  # the corpus is part of what was trained on
        keys["text_corpus"] = corpus_identity()["digest"]
    else:  # the arithmetic-only zoo keeps the tags it had before text mixing existed
        del keys["text_fraction"]
    blob = json.dumps({"size": size, **keys, "format": 1}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def corpus_documents(cfg: PretrainConfig, rng: np.random.Generator):
    """Endless stream of 'prompt + worked solution' documents from the train split, with
    source-text passages from the text corpus's train files mixed in so that they make up
    `text_fraction` of the characters (the tokenizer is character-level: of the tokens)."""
    family = ArithFamily(cfg.min_difficulty, cfg.max_difficulty, cfg.max_operand)
    text = stdlib_corpus("train") if cfg.text_fraction else None
    text_chars = all_chars = 0
    while True:
        # A passage whenever text is behind its share, so the mix holds at every step; the
        # arithmetic-only stream draws nothing extra and is unchanged.
        if text is not None and text_chars <= cfg.text_fraction * all_chars:
            doc = text.passage(rng, TEXT_PASSAGE_CHARS)
            text_chars += len(doc)
        else:
            problem = family.sample(rng, "train")
            if rng.random() < cfg.answer_noise:
                step = int(rng.integers(0, problem.difficulty))
                doc = problem.prompt + solution_text(problem, wrong_step=step, rng=rng)
            else:
                doc = problem.prompt + problem.solution
        all_chars += len(doc)
        yield doc


def packed_batches(docs, tok, batch_size: int, seq_len: int, chunk: int = 256):
    """Concatenate <bos> doc <eos> token streams and cut [batch, seq_len + 1] blocks.
    Documents are tokenised `chunk` at a time (one tokenizer call per doc cost 20% of a
    zoo pre-training step); the token stream is the same."""
    buf: list[int] = []
    need = batch_size * (seq_len + 1)
    while texts := list(itertools.islice(docs, chunk)):
        for ids in tok(texts).input_ids:
            buf.extend(ids + [tok.eos_token_id])
            if len(buf) >= need:
                yield torch.tensor(buf[:need]).view(batch_size, seq_len + 1)
                buf = buf[need:]


def val_problems(cfg: PretrainConfig, n: int = 256):
    """The held-out problems both validation losses are measured on."""
    return ArithFamily(cfg.min_difficulty, cfg.max_difficulty, cfg.max_operand).problems(n, seed=cfg.seed + 3,
                                                                                         split="val")


def solution_loss_batch(tok, cfg: PretrainConfig, n: int = 256) -> dict[str, torch.Tensor]:
    """n clean held-out problems, right-padded, labelled only on solution tokens and <eos>."""
    problems = val_problems(cfg, n)
    prompts = tok([p.prompt for p in problems]).input_ids
    solutions = tok([p.solution for p in problems], add_special_tokens=False).input_ids
    width = max(len(p) + len(s) + 1 for p, s in zip(prompts, solutions))
    ids = torch.full((n, width), tok.pad_token_id)
    labels = torch.full((n, width), -100)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, (prompt, solution) in enumerate(zip(prompts, solutions)):
        row = prompt + solution + [tok.eos_token_id]
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        labels[i, len(prompt):len(row)] = torch.tensor(solution + [tok.eos_token_id])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def text_loss_batch(tok, cfg: PretrainConfig, rows: int = 64) -> torch.Tensor:
    """[rows, seq_len + 1] packed passages of held-out source files, fixed by the seed."""
    rng = np.random.default_rng(cfg.seed + 5)
    val = stdlib_corpus("val")
    passages = (val.passage(rng, TEXT_PASSAGE_CHARS) for _ in itertools.count())
    return next(packed_batches(passages, tok, rows, cfg.seq_len))


@torch.no_grad()
def hf_generate(model, tok, prompts: list[str], max_new_tokens: int, temperature: float, seed: int = 0):
    """Batched sampling (temperature 0 = greedy) with transformers' generate. Returns texts."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        # Sampling settings only when sampling: given to greedy decoding, transformers warns
        # that they are ignored, a line before the quickstart's progress bar.
        **({"temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {}),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return tok.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True)


def heldout_accuracy(model, tok, cfg: PretrainConfig, n: int, temperature: float) -> dict:
    """Accuracy on n held-out validation problems, overall and per difficulty, scored
    exactly like the RL reward."""
    family = ArithFamily(cfg.min_difficulty, cfg.max_difficulty, cfg.max_operand)
    problems = family.problems(n, seed=cfg.seed + 7, split="val")
    rewards: list[float] = []
    env = MathEnv(split="val", max_completion_chars=512)  # the RL reward, scored the same way
    try:
        for i in range(0, n, 100):
            chunk = problems[i:i + 100]
            texts = hf_generate(model, tok, [p.prompt for p in chunk], 96, temperature, seed=i)
            rewards += [reward for reward, _ in env.score_many(chunk, texts)]
    finally:
        env.close()
    by_difficulty: dict[str, list[float]] = {}
    for problem, reward in zip(problems, rewards):
        by_difficulty.setdefault(str(problem.difficulty), []).append(reward)
    return {"overall": sum(rewards) / n,
            "by_difficulty": {d: sum(r) / len(r) for d, r in sorted(by_difficulty.items())}}


def pretrain(size: str, cfg: PretrainConfig, log=print) -> Path:
    """Train (or reuse from the cache) the zoo model `size`; return its checkpoint dir."""
    out = zoo_dir(cfg.cache_dir, size, cfg.seed, settings_tag(size, cfg))
    if (out / "done.json").is_file():
        log(f"zoo: reusing cached {size} base model at {out}")
        return out
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tok = build_tokenizer()
    model = LlamaForCausalLM(llama_config(size))
    shape = ModelShape.from_hf(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))

    val_docs = [p.prompt + p.solution for p in val_problems(cfg)]
    val_batch = next(packed_batches(iter(val_docs), tok, 16, cfg.seq_len))
    solution_batch = solution_loss_batch(tok, cfg)
    text_batch = text_loss_batch(tok, cfg) if cfg.text_fraction else None
    batches = packed_batches(corpus_documents(cfg, rng), tok, cfg.batch_size, cfg.seq_len)
    step_flops = pretrain_step_flops(shape, cfg.batch_size, cfg.seq_len)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"zoo: pre-training {size} (N={shape.n_params:,} matmul params, {shape.n_params_total:,} total) "
        f"for {cfg.steps} steps x {cfg.batch_size * cfg.seq_len} tokens")
    t0 = time.time()
    rows = []
    model.train()
    for step in range(cfg.steps):
        block = next(batches)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=block[:, :-1], labels=block[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % LOG_EVERY == 0 or step + 1 == cfg.steps:
            model.eval()
            with torch.no_grad():
                val_loss = model(input_ids=val_batch[:, :-1], labels=val_batch[:, :-1]).loss.item()
                solution_loss = model(**solution_batch).loss.item()
                text = {} if text_batch is None else {
                    "text_loss": model(input_ids=text_batch[:, :-1], labels=text_batch[:, :-1]).loss.item()}
            model.train()
            tokens = (step + 1) * cfg.batch_size * cfg.seq_len
            rows.append({"step": step + 1, "n_params": shape.n_params, "n_params_total": shape.n_params_total,
                         "tokens": tokens, "flops": (step + 1) * step_flops, "train_loss": loss.item(),
                         "val_loss": val_loss, "solution_loss": solution_loss, **text, "lr": lr_at(step),
                         "wall_s": time.time() - t0})
            log(f"zoo: step {step + 1}/{cfg.steps} loss {loss.item():.3f} val_loss {val_loss:.3f} "
                f"solution_loss {solution_loss:.3f}" + "".join(f" {k} {v:.3f}" for k, v in text.items()))
    train_s = time.time() - t0
    model.eval()
    greedy = heldout_accuracy(model, tok, cfg, cfg.eval_problems, temperature=0.0)
    sampled = heldout_accuracy(model, tok, cfg, cfg.eval_problems, temperature=1.0)
    log(f"zoo: {size} held-out accuracy: greedy {greedy['overall']:.3f}, sampled(T=1) {sampled['overall']:.3f}")
    hf_logging.disable_progress_bar()  # "Writing model shards" is not one of the run's lines
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    with open(tmp / "pretrain_metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary = {"size": size, "n_params": shape.n_params, "n_params_total": shape.n_params_total,
               "tokens": rows[-1]["tokens"], "flops": rows[-1]["flops"], "final_val_loss": rows[-1]["val_loss"],
               "final_solution_loss": rows[-1]["solution_loss"],
               **({"final_text_loss": rows[-1]["text_loss"], "text_corpus": corpus_identity()} if cfg.text_fraction
                  else {}),
               "heldout_accuracy_greedy": greedy["overall"], "heldout_accuracy_sampled": sampled["overall"],
               "heldout_by_difficulty": {"greedy": greedy["by_difficulty"], "sampled": sampled["by_difficulty"]},
               "eval_problems": cfg.eval_problems, "train_seconds": train_s, "settings": cfg.model_dump()}
    (tmp / "base_eval.json").write_text(json.dumps(summary, indent=2))
    (tmp / "done.json").write_text(json.dumps({"finished": time.time()}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
