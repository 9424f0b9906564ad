"""Zoo pre-training on arithmetic mixed with source text (rlscale/text_corpus.py, pretrain.text_fraction)."""

import itertools
import json

import numpy as np

from rlscale.config import PretrainConfig
from rlscale.pretrain import TEXT_PASSAGE_CHARS, corpus_documents, pretrain, settings_tag, text_loss_batch
from rlscale.text_corpus import clean, corpus_identity, split_of, stdlib_corpus, stdlib_root
from rlscale.tokenizer import CHARSET, build_tokenizer


def test_clean_keeps_only_the_tokenizers_characters():
    assert clean("def f():\n\treturn 'caf\u00e9'\r\n") == "def f():\n    return 'caf'\n"
    assert set(clean(stdlib_corpus("val").text)) <= set(CHARSET)


def test_validation_files_are_held_out_by_path_and_never_trained_on():
    root = stdlib_root()
    files = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if "site-packages" not in p.parts]
    val = [f for f in files if split_of(f) == "val"]
    assert 0.02 < len(val) / len(files) < 0.09  # one in VAL_SHARDS = 20, by hash
    ident = corpus_identity()
    assert ident["val_files"] == len(val) and ident["train_files"] + ident["val_files"] == len(files)
    # Passages of the training stream come from training files; the held-out text is elsewhere.
    cfg = PretrainConfig(max_operand=19, answer_noise=0.1, text_fraction=0.3)
    docs = list(itertools.islice(corpus_documents(cfg, np.random.default_rng(0)), 2000))
    train_text, val_text = stdlib_corpus("train").text, stdlib_corpus("val").text
    passages = [d for d in docs if len(d) == TEXT_PASSAGE_CHARS and d in train_text]
    assert passages and not any(p in val_text for p in passages[:50])
    # The mix is a share of characters (the tokenizer is character-level), held at every point.
    arithmetic = [d for d in docs if "\\boxed{" in d]
    assert len(passages) + len(arithmetic) == len(docs)
    share = sum(map(len, passages)) / sum(map(len, docs))
    assert abs(share - 0.3) < 0.01


def test_the_arithmetic_only_zoo_keeps_its_cache_tags():
    # The tag the default xs model had before pretrain.text_fraction existed: cached zoo models
    # (and the runs that name them) stay valid. A mixed corpus is another model.
    assert settings_tag("xs", PretrainConfig()) == "5c86a3849ec3"
    assert settings_tag("xs", PretrainConfig(text_fraction=0.3)) != "5c86a3849ec3"


def test_a_mixed_corpus_model_logs_the_text_loss_and_its_corpus(tmp_path):
    tok = build_tokenizer()
    cfg = PretrainConfig(steps=4, warmup_steps=1, eval_problems=2, text_fraction=0.3, cache_dir=str(tmp_path))
    batch = text_loss_batch(tok, cfg)
    assert batch.shape == (64, cfg.seq_len + 1) and not (batch == tok.unk_token_id).any()
    out = pretrain("xs", cfg, log=lambda _: None)
    rows = [json.loads(line) for line in (out / "pretrain_metrics.jsonl").read_text().splitlines()]
    # A 4-step model predicts about as well as uniform over the vocabulary, not better than perfect.
    assert all(1.0 < r["text_loss"] < np.log(len(tok)) + 0.5 for r in rows)
    info = json.loads((out / "base_eval.json").read_text())
    assert info["final_text_loss"] == rows[-1]["text_loss"]
    assert info["text_corpus"] == corpus_identity() and info["settings"]["text_fraction"] == 0.3
