"""A natural-text corpus for zoo pre-training: the Python standard library's own source.

Why: on the arithmetic corpus alone, the zoo's loss stops depending on model size above
about 1M parameters (docs/study.md, part 0b). The procedure is small enough for every size
to learn, so the Chinchilla law L = E + A/N^alpha + B/D^beta has no N term to fit. Source
text has a long tail of rare identifiers and idioms, and that tail is what gives a larger
model a lower loss at equal tokens (Kaplan et al. 2020, Sec. 3).

The standard library is on every machine that runs rlscale and needs no network. Its text
is fixed by the Python version. Its digest goes into each zoo model's settings tag, so a
different library trains a different model. Files are split into train and validation by
a hash of their path, so a validation file is never seen in training.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tokenizer import CHARSET

VAL_SHARDS = 20  # one file in 20 (by path hash) is held out for validation
_OUTSIDE_CHARSET = re.compile("[^" + re.escape("".join(CHARSET)) + "]")


def clean(text: str) -> str:
    """The text in the zoo tokenizer's characters: tabs become 4 spaces, anything else
    outside its printable ASCII is dropped (it would be <unk>)."""
    return _OUTSIDE_CHARSET.sub("", text.replace("\t", "    "))


def split_of(relpath: str) -> str:
    return "val" if hashlib.blake2b(relpath.encode(), digest_size=4).digest()[0] % VAL_SHARDS == 0 else "train"


@dataclass(frozen=True)
class TextCorpus:
    """One split of the standard library's .py files, joined into one string."""

    text: str
    n_files: int

    def passage(self, rng: np.random.Generator, chars: int) -> str:
        """A window of `chars` characters at a uniform offset (it may span two files)."""
        start = int(rng.integers(0, len(self.text) - chars))
        return self.text[start:start + chars]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=None)
def stdlib_corpus(split: str) -> TextCorpus:
    """The `split` ("train" or "val") files of this interpreter's standard library, in path
    order; third-party packages (site-packages) are not part of it."""
    root = stdlib_root()
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts)
    chosen = [p for p in files if split_of(p.relative_to(root).as_posix()) == split]
    if not chosen:
        raise FileNotFoundError(f"no Python source under {root}: pretrain.text_fraction needs the standard "
                                "library's .py files; set pretrain.text_fraction: 0")
    texts = [clean(p.read_text(encoding="utf-8", errors="ignore")) for p in chosen]
    return TextCorpus("\n\n".join(texts), len(chosen))


@functools.lru_cache(maxsize=None)
def corpus_identity() -> dict:
    """What the corpus is, recorded with each model that trained on it."""
    train, val = stdlib_corpus("train"), stdlib_corpus("val")
    digest = hashlib.blake2b(train.text.encode(), digest_size=8)
    digest.update(val.text.encode())
    return {"source": "python-stdlib", "python": platform.python_version(), "digest": digest.hexdigest(),
            "train_files": train.n_files, "train_chars": len(train.text),
            "val_files": val.n_files, "val_chars": len(val.text)}
