"""The ``zoo.load`` tests' shared fixtures: the Hugging Face reference on a small config, ids, its logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from load_helpers import CONFIG, logits, reference_model
from transformers import GPT2LMHeadModel


@pytest.fixture(scope="module")
def reference() -> GPT2LMHeadModel:
    return reference_model(CONFIG, seed=0)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, CONFIG.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def expected(reference, ids) -> torch.Tensor:
    return logits(reference, ids)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, reference) -> Path:
    """The reference, written by ``save_pretrained``."""
    folder = tmp_path_factory.mktemp("weights") / "pretrained"
    reference.save_pretrained(folder)
    return folder
