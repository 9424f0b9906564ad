"""Fixtures shared by several test modules."""

import pytest
import torch
from transformers import LlamaForCausalLM

from rlscale.tokenizer import save_tokenizer
from rlscale.zoo import llama_config


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random-weight xs zoo model with rlscale's tokenizer, saved as an HF checkpoint."""
    path = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    LlamaForCausalLM(llama_config("xs")).save_pretrained(path)
    save_tokenizer(path)
    return str(path)
