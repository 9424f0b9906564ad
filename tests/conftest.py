"""Fixtures shared by several test modules."""

import os

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


@pytest.fixture(scope="session")
def quickstart_cache(tmp_path_factory):
    """A pretrain.cache_dir shared by the tests that run on the quickstart's own base model:
    its 3000-step pre-training (about 3 min on 2 cores) happens once per session, in
    whichever of them runs first. RLSCALE_TEST_CACHE=~/.cache/rlscale reuses a cached one."""
    given = os.environ.get("RLSCALE_TEST_CACHE")
    return os.path.expanduser(given) if given else str(tmp_path_factory.mktemp("quickstart-cache"))
