"""Shared test set-up: one torch thread, so tests are deterministic and do not fight over cores."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("ZOO_TEST_THREADS", "1")))
os.environ.setdefault("ZOO_OFFLINE", "1")  # the tokenizer never tries the network in tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def example_database(tmp_path_factory):
    """``zoo check`` in a test keeps its failing examples (and hypothesis' other files) in temporary folders."""
    folder = tmp_path_factory.mktemp("hypothesis-db")
    os.environ["ZOO_HYPOTHESIS_DB"] = str(folder)  # read by zoo check, in-process and in subprocesses
    # hypothesis' other files and the learned-weights preset (trained once per run) too
    os.environ["ZOO_CACHE"] = str(tmp_path_factory.mktemp("zoo-cache"))
    return folder


@pytest.fixture
def small_config():
    import zoo

    return zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
