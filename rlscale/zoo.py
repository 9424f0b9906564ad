"""The base-model zoo: small Llama-architecture decoders that rlscale pre-trains itself.

Sizes span ~80x in non-embedding parameters so the analysis layer can fit
pre-training laws across them. Head dim is 32 because vLLM's CPU attention supports
no smaller head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import LlamaConfig

from .tokenizer import build_tokenizer


@dataclass(frozen=True)
class ZooSize:
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int


ZOO_SIZES: dict[str, ZooSize] = {
    "xs": ZooSize(d_model=64, n_layers=2, n_heads=2, d_ff=256),
    "s": ZooSize(d_model=128, n_layers=4, n_heads=4, d_ff=512),
    "m": ZooSize(d_model=192, n_layers=6, n_heads=6, d_ff=768),
    "l": ZooSize(d_model=256, n_layers=8, n_heads=8, d_ff=1024),
}
MAX_POSITIONS = 256


def llama_config(size: str) -> LlamaConfig:
    if size not in ZOO_SIZES:
        raise ValueError(f"unknown zoo size {size!r}; choose one of {sorted(ZOO_SIZES)}")
    z = ZOO_SIZES[size]
    tok = build_tokenizer()
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=z.d_model,
        intermediate_size=z.d_ff,
        num_hidden_layers=z.n_layers,
        num_attention_heads=z.n_heads,
        num_key_value_heads=z.n_heads,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
    )


def zoo_dir(cache_dir: str | Path, size: str, seed: int, tag: str) -> Path:
    """Where a zoo checkpoint lives; `tag` is a hash of the pre-training settings."""
    return Path(cache_dir).expanduser() / "zoo" / f"{size}-seed{seed}-{tag}"
