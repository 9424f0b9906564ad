"""The zoo's solution-token loss: what the pre-training laws are fitted to (rlscale/pretrain.py)."""

import torch

from rlscale.config import PretrainConfig
from rlscale.pretrain import solution_loss_batch
from rlscale.tokenizer import build_tokenizer
from rlscale_envs.arith import ArithFamily


def test_the_solution_loss_labels_exactly_the_clean_solutions_and_eos():
    cfg = PretrainConfig(max_difficulty=3, max_operand=19, answer_noise=0.5)
    tok = build_tokenizer()
    batch = solution_loss_batch(tok, cfg, n=16)
    problems = ArithFamily(1, 3, 19).problems(16, seed=cfg.seed + 3, split="val")
    for i, problem in enumerate(problems):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        labelled = labels[labels != -100].tolist()
        # Clean however noisy the corpus: the gold worked solution, then <eos>; never the prompt.
        assert labelled[-1] == tok.eos_token_id
        assert tok.decode(labelled[:-1]) == problem.solution
        assert tok.decode(ids[mask.bool()].tolist(), skip_special_tokens=True) == problem.prompt + problem.solution
        # Labels sit on the same positions as their tokens (the model shifts them itself).
        assert torch.equal(ids[labels != -100], labels[labels != -100])
        assert not mask[len(ids[mask.bool()]):].any()
