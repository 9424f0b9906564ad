"""rlscale's own character-level tokenizer for the base-model zoo.

Digits are single tokens on purpose: multi-digit BPE merges make arithmetic much
harder for tiny models. `\\boxed{` is one token so the final-answer marker costs one
sampling step. The tokenizer is a Hugging Face `tokenizers` WordLevel model saved as
`tokenizer.json`, so transformers and vLLM load the same file.
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]
BOXED = "\\boxed{"
# Printable ASCII (minus the form-feed family) plus newline: enough for any env prompt,
# and it leaves the policy free to emit malformed or hostile text during RL.
CHARSET = sorted(set(string.printable) - set("\t\r\x0b\x0c"))


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + [BOXED] + CHARSET)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    tok = build_tokenizer()
    tok.save_pretrained(str(path))
    return tok
