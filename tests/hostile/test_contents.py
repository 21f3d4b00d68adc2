"""Wrong dtypes, corrupt tensor infos, malformed metadata and non-finite values: each a named refusal."""

from __future__ import annotations

import json
import zipfile

import gguf
import pytest
import safetensors.torch
import torch
from hostile_files import CONFIG, canonical_weights, read_all, refused

import zoo
from zoo import ConfigError, WeightsError, WeightsSourceError
from zoo._weights import read_weights
from zoo.formats.safetensors import CONFIG_METADATA
from zoo.weight_map import HF, from_canonical

KEY = "transformer.h.0.ln_1.weight"


# -- dtypes are refused, never cast ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint32, torch.int64, torch.bool, torch.uint8])
def test_safetensors_integer_tensors(copy, dtype):
    path = copy("safetensors")
    tensors = safetensors.torch.load_file(path)
    tensors[KEY] = torch.ones(tensors[KEY].shape, dtype=dtype)
    safetensors.torch.save_file(tensors, path, metadata={"format": "pt"})
    refused(lambda: read_weights(path), WeightsSourceError, KEY)


@pytest.mark.parametrize("value", [torch.ones(32, dtype=torch.complex64), torch.ones(32, dtype=torch.int64),
                                   torch.ones(32, dtype=torch.bool), 1.0, "weights", None, [1.0] * 32])
def test_torch_values_that_are_not_float_tensors(tmp_path, value):
    state = dict(from_canonical(canonical_weights(), HF))
    state[KEY] = value
    torch.save(state, tmp_path / "sd.pt")
    for source in (tmp_path / "sd.pt", state):
        refused(lambda source=source: read_weights(source, config=CONFIG), WeightsSourceError, KEY)


def test_causal_mask_buffers_may_be_bool(tmp_path):
    state = dict(from_canonical(canonical_weights(), HF))
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    read_all(state, config=CONFIG)


# -- GGUF tensor infos and torch zip archives must agree with the file ---------------------------------


def edit_gguf_tensor(path, index, *, dims=None, kind=None, offset=None):
    reader = gguf.GGUFReader(path, "r+")
    _, _, _, dims_part, kind_part, offset_part = reader.tensors[index].field.parts
    if dims is not None:
        dims_part[:] = dims(dims_part.copy())
    if kind is not None:
        kind_part[0] = kind
    if offset is not None:
        offset_part[0] = offset(int(offset_part[0]))
    reader.data.flush()


F16 = int(gguf.GGMLQuantizationType.F16)


@pytest.mark.parametrize(("index", "edit"), [
    (1, {"dims": lambda d: [d[0] // 2, *d[1:]]}),
    (1, {"dims": lambda d: [*d[:-1], d[-1] - 1]}),
    (1, {"kind": F16}),
    (-1, {"kind": F16}),  # the last tensor: nothing after it moves
    (2, {"offset": lambda o: o + 32}),
    (2, {"offset": lambda o: o + 1}),
    (2, {"offset": lambda o: 0}),
    (-1, {"offset": lambda o: o + 2**40}),
    (3, {"dims": lambda d: [0, *d[1:]]}),
])
def test_gguf_tensor_infos(copy, index, edit):
    path = copy("gguf")
    edit_gguf_tensor(path, index, **edit)
    refused(lambda: read_weights(path), WeightsSourceError, "corrupt")


@pytest.mark.parametrize("member", ["data.pkl", "data/0", "data/5"])
def test_torch_zip_flipped_bytes(copy, member):
    path = copy("nanogpt")
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(member))
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    refused(lambda: read_weights(path), WeightsSourceError, "corrupt torch zip")


def test_torch_zip_flipped_local_header(copy):
    path = copy("nanogpt")
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data/3"))
    data = bytearray(path.read_bytes())
    data[info.header_offset + 28] ^= 0x04  # the local extra-field length: torch would map the bytes 4 later
    path.write_bytes(bytes(data))
    refused(lambda: read_weights(path), WeightsSourceError)


# -- malformed metadata is a named error, not a crash --------------------------------------------------


@pytest.mark.parametrize("stored", ["[1, 2]", '"gpt2"', "5", "null", "{", "[" * 100_000, '{"n_embd": null}',
                                    '{"n_inner": 7, "n_embd": "x"}', '{"model_type": ["gpt2"]}'])
def test_safetensors_config_metadata(copy, stored):
    path = copy("safetensors")
    tensors = safetensors.torch.load_file(path)
    safetensors.torch.save_file(tensors, path, metadata={CONFIG_METADATA: stored})
    refused(lambda: read_weights(path), WeightsSourceError, CONFIG_METADATA)


@pytest.mark.parametrize("change", [{"n_embd": None}, {"n_layer": "2"}, {"n_inner": 64, "n_embd": None},
                                    {"layer_norm_epsilon": None}])
def test_hf_config_json_values(copy, change):
    folder = copy("hf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    refused(lambda: read_weights(folder), ConfigError)


@pytest.mark.parametrize("index", [[], {"weight_map": []}, {"weight_map": {"a": 5}}, {"weight_map": {}},
                                   {"weight_map": {"a": []}},  # found by the long fuzz run: unhashable
                                   {"weight_map": {"a": "../model.safetensors"}}, {"weight_map": {"a": "/etc/passwd"}},
                                   {"weight_map": {"a": "missing.safetensors"}}, "[[[[" * 30_000])
def test_shard_indexes(copy, index):
    folder = copy("hf")
    text = index if isinstance(index, str) else json.dumps(index)
    (folder / "model.safetensors.index.json").write_text(text)
    refused(lambda: read_weights(folder), WeightsSourceError)


def test_config_from_a_value_that_is_no_object():
    for value in ([1], "gpt2", 5, None):
        refused(lambda value=value: zoo.GPT2Config.from_hf(value), ConfigError, "JSON object")


# -- NaN and Inf: refused on loading as on converting, unless allowed ----------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_are_refused_on_loading(copy, bad):
    path = copy("safetensors")
    tensors = safetensors.torch.load_file(path)
    tensors[KEY][5] = bad
    with safetensors.safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    refused(lambda: zoo.load("pure", path), WeightsError, "h.0.ln_1.weight holds 1 NaN or Inf value")
    _, weights = zoo.open_weights(path)
    refused(lambda: weights["h.0.ln_1.weight"], WeightsError, "allow_nonfinite=True")
    model = zoo.load("pure", path, allow_nonfinite=True)
    assert model.config == CONFIG
    _, weights = zoo.open_weights(path, allow_nonfinite=True)
    assert not torch.isfinite(weights["h.0.ln_1.weight"][5])
