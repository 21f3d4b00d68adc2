"""Sizes a header declares are measured against what the file holds before anything is built for them."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import safetensors.torch
import torch
from hostile_files import refused

from zoo import ConfigError, WeightsMismatchError, WeightsSourceError, ZooError
from zoo._weights import read_weights
from zoo.formats.safetensors import CONFIG_METADATA

HUGE = [10**6, 10**9, 2**63]


def rewrite_safetensors_config(path, **changes):
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    config = json.loads(metadata[CONFIG_METADATA])
    config.update(changes)
    safetensors.torch.save_file(tensors, path, metadata={**metadata, CONFIG_METADATA: json.dumps(config)})


def expected_error(n_layer):
    return ZooError if n_layer > 2**31 else WeightsMismatchError


@pytest.mark.parametrize("n_layer", HUGE)
def test_safetensors_metadata(copy, n_layer):
    path = copy("safetensors")
    rewrite_safetensors_config(path, n_layer=n_layer)
    refused(lambda: read_weights(path), expected_error(n_layer), f"n_layer={n_layer}")


@pytest.mark.parametrize("n_layer", HUGE)
def test_hf_config_json(copy, n_layer):
    folder = copy("hf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_layer": n_layer}))
    refused(lambda: read_weights(folder), expected_error(n_layer), f"n_layer={n_layer}")


@pytest.mark.parametrize("n_layer", [*HUGE, float("inf"), float("nan"), 1e300, "12", None, True])
def test_nanogpt_model_args(copy, n_layer):
    path = copy("nanogpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model_args"]["n_layer"] = n_layer
    torch.save(checkpoint, path)
    error = WeightsMismatchError if n_layer in (10**6, 10**9) else WeightsSourceError
    refused(lambda: read_weights(path), error, "n_layer")


@pytest.mark.parametrize(("field", "value"), [(4, 10**6), (4, 10**9), (4, 2**31 - 1), (4, -1), (6, 2**31 - 1),
                                              (3, 2**31 - 1), (2, 2**31 - 1)])
def test_llmc_header(copy, field, value):  # header ints: 2 maxT, 3 V, 4 L, 5 NH, 6 C
    path = copy("llmc")
    header = np.memmap(path, dtype="<i4", mode="r+", shape=(256,))
    header[field] = value
    header.flush()
    del header
    refused(lambda: read_weights(path), WeightsSourceError)


def set_gguf_field(path, key, value):
    reader = gguf.GGUFReader(path, "r+")
    field = reader.get_field(key)
    field.parts[field.data[0]][0] = value
    reader.data.flush()


@pytest.mark.parametrize("blocks", [10**6, 10**9, 2**32 - 1])
def test_gguf_block_count(copy, blocks):
    path = copy("gguf")
    set_gguf_field(path, "gpt2.block_count", blocks)
    refused(lambda: read_weights(path), ZooError, "n_layer")


@pytest.mark.parametrize("key", ["gpt2.embedding_length", "gpt2.context_length", "gpt2.attention.head_count"])
def test_gguf_other_sizes(copy, key):
    path = copy("gguf")
    set_gguf_field(path, key, 2**32 - 1)
    refused(lambda: read_weights(path), (ConfigError, WeightsMismatchError, WeightsSourceError))


def test_a_near_miss_still_lists_every_missing_tensor(copy):
    path = copy("safetensors")
    rewrite_safetensors_config(path, n_layer=3)
    error = refused(lambda: read_weights(path), WeightsMismatchError)
    assert len(error.missing) == 12
