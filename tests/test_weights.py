"""Weight sources: what ``zoo.open_weights`` reads, what it infers, what it refuses, and random weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from transformers import GPT2LMHeadModel

import zoo
from zoo import ConfigError, GPT2Config, WeightsError, WeightsMismatchError, WeightsSourceError
from zoo.formats.safetensors import SafetensorsSource
from zoo.weight_map import NANOGPT, canonical_shapes, from_canonical

CONFIG = GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=2, n_head=2)
# GPT-2 small's width (so its head count can be inferred) on a model small enough to build in a test
WIDE = GPT2Config(vocab_size=40, n_positions=8, n_embd=768, n_layer=1, n_head=12)


def hf_state(config: GPT2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config.to_hf())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return dict(model.state_dict())


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return hf_state(CONFIG)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, state) -> Path:
    path = tmp_path_factory.mktemp("pretrained")
    safetensors.torch.save_file({k: v for k, v in state.items() if k != "lm_head.weight"},
                                path / "model.safetensors", metadata={"format": "pt"})
    CONFIG.to_hf().to_json_file(path / "config.json")
    return path


def assert_canonical_equals(weights, state: dict[str, torch.Tensor]) -> None:
    expected = dict(from_canonical(weights, zoo.weight_map.HF))
    for key, tensor in state.items():
        assert torch.equal(expected[key], tensor), key


# -- safetensors ---------------------------------------------------------------------------------


def test_safetensors_source_reads_headers_first_and_tensors_on_demand(folder, state):
    source = SafetensorsSource([folder / "model.safetensors"])
    assert set(source) == set(state) - {"lm_head.weight"}
    assert len(source) == len(state) - 1
    assert source.shape_of("transformer.h.1.attn.c_attn.weight") == (16, 48)
    assert torch.equal(source["transformer.wte.weight"], state["transformer.wte.weight"])


def test_folder_gives_config_and_checked_weights(folder, state):
    config, weights = zoo.open_weights(folder)
    assert config == CONFIG
    assert list(weights) == list(canonical_shapes(CONFIG))
    assert_canonical_equals(weights, state)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"not a safetensors file at all"])
def test_a_corrupt_safetensors_file_is_a_source_error(tmp_path, content):
    (tmp_path / "model.safetensors").write_bytes(content)
    with pytest.raises(WeightsSourceError, match="cannot read safetensors file"):
        zoo.open_weights(tmp_path / "model.safetensors", config=CONFIG)


# -- config: beside the weights, given, or inferred ---------------------------------------------------


def test_config_json_beside_a_single_file_is_used(tmp_path, folder, state):
    shutil.copy(folder / "model.safetensors", tmp_path / "weights.safetensors")
    shutil.copy(folder / "config.json", tmp_path)
    torch.save(state, tmp_path / "weights.pt")
    for name in ("weights.safetensors", "weights.pt"):
        config, weights = zoo.open_weights(tmp_path / name)
        assert config == CONFIG, name
        assert_canonical_equals(weights, state)


def test_a_given_config_overrides_config_json(folder):
    wrong = CONFIG.replace(n_head=4)  # same shapes, another head count: only the caller knows
    assert zoo.open_weights(folder, config=wrong)[0] == wrong
    with pytest.raises(WeightsMismatchError):
        zoo.open_weights(folder, config=CONFIG.replace(vocab_size=51))


@pytest.fixture(scope="module")
def wide_state() -> dict[str, torch.Tensor]:
    return hf_state(WIDE)


def test_config_is_inferred_for_gpt2_widths(tmp_path, wide_state):
    safetensors.torch.save_file({k: v for k, v in wide_state.items() if k != "lm_head.weight"},
                                tmp_path / "wide.safetensors")
    config, weights = zoo.open_weights(tmp_path / "wide.safetensors")
    assert config == WIDE  # vocab, positions, width and depth from shapes; 12 heads from the preset
    assert_canonical_equals(weights, wide_state)
    torch.save({k.removeprefix("transformer."): v for k, v in wide_state.items()}, tmp_path / "bare.pt")
    assert zoo.open_weights(tmp_path / "bare.pt")[0] == WIDE


def test_config_is_inferred_for_nanogpt_state_dicts(wide_state):
    _, weights = zoo.open_weights(wide_state, config=WIDE)
    nanogpt = {"_orig_mod." + k: v for k, v in from_canonical(weights, NANOGPT)}
    config, again = zoo.open_weights(nanogpt, layout="nanogpt")
    assert config == WIDE
    assert_canonical_equals(again, wide_state)


def test_config_cannot_be_inferred_for_other_widths(tmp_path, folder):
    shutil.copy(folder / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ConfigError) as info:
        zoo.open_weights(tmp_path / "model.safetensors")
    message = str(info.value)
    assert "n_embd=16" in message and "n_head" in message and "config.json" in message
    assert "[768, 1024, 1280, 1600]" in message
    with pytest.raises(ConfigError, match=r"no 'wte\.weight' tensor"):
        zoo.open_weights({"transformer.wpe.weight": torch.zeros(8, 768)})


# -- torch files and nanoGPT checkpoints --------------------------------------------------------------


def test_legacy_non_zip_torch_files_are_read(tmp_path, state):
    torch.save(state, tmp_path / "old.bin", _use_new_zipfile_serialization=False)
    _, weights = zoo.open_weights(tmp_path / "old.bin", config=CONFIG)
    assert_canonical_equals(weights, state)


def test_a_torch_file_must_hold_a_state_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(WeightsSourceError, match="holds a Tensor, not a state dict"):
        zoo.open_weights(tmp_path / "tensor.pt")


def test_a_torch_file_that_is_not_one_is_a_source_error(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x80\x02junk")
    with pytest.raises(WeightsSourceError, match=r"cannot read .* as a torch file"):
        zoo.open_weights(tmp_path / "junk.bin")


def _checkpoint(state, **model_args):
    _, weights = zoo.open_weights(state, config=CONFIG)
    args = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, "bias": True, "vocab_size": 50,
            "dropout": 0.0}
    return {"model": dict(from_canonical(weights, NANOGPT)), "model_args": {**args, **model_args}}


def test_nanogpt_checkpoint_config_comes_from_model_args(state):
    config, weights = zoo.open_weights(_checkpoint(state))
    assert config == CONFIG
    assert_canonical_equals(weights, state)


def test_nanogpt_checkpoint_without_biases_is_refused(state):
    with pytest.raises(ConfigError, match="bias=False"):
        zoo.open_weights(_checkpoint(state, bias=False))


def test_nanogpt_checkpoint_is_checked_and_needs_model_args(state):
    checkpoint = _checkpoint(state)
    del checkpoint["model"]["transformer.wte.weight"]
    with pytest.raises(WeightsMismatchError, match=r"missing \(1\): transformer\.wte\.weight"):
        zoo.open_weights(checkpoint)
    del checkpoint["model_args"]
    with pytest.raises(WeightsSourceError, match="no 'model_args'"):
        zoo.open_weights(checkpoint)
    checkpoint["model_args"] = {"n_layer": 2}
    with pytest.raises(WeightsSourceError, match="'model_args' lacks 'vocab_size'"):
        zoo.open_weights(checkpoint)


# -- folders, names and layouts ------------------------------------------------------------------------


def test_a_folder_without_weights_names_what_it_expects(tmp_path):
    (tmp_path / "config.json").write_text(CONFIG.to_hf().to_json_string())
    with pytest.raises(WeightsSourceError, match=r"holds no model\.safetensors or pytorch_model\.bin"):
        zoo.open_weights(tmp_path)


def test_a_broken_shard_index_is_a_source_error(tmp_path, folder):
    shutil.copy(folder / "config.json", tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(WeightsSourceError, match="not a valid shard index"):
        zoo.open_weights(tmp_path)


def test_a_shard_missing_from_a_sharded_folder_is_named(tmp_path, folder):
    shutil.copy(folder / "config.json", tmp_path)
    shutil.copy(folder / "model.safetensors", tmp_path / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"transformer.wte.weight": "model-00001-of-00002.safetensors",
                            "transformer.ln_f.bias": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(WeightsSourceError, match=r"model-00002-of-00002\.safetensors"):
        zoo.open_weights(tmp_path)


def test_an_unknown_file_type_is_refused(tmp_path):
    (tmp_path / "weights.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(WeightsSourceError, match="unrecognised weight file"):
        zoo.open_weights(tmp_path / "weights.onnx")


def test_an_unknown_layout_lists_the_known_ones(state):
    with pytest.raises(WeightsError, match="unknown layout 'megatron'; choose one of hf, nanogpt, canonical"):
        zoo.open_weights(state, config=CONFIG, layout="megatron")


def test_a_state_dict_in_the_wrong_layout_says_which(state):
    with pytest.raises(WeightsMismatchError, match="pass layout='hf'"):
        zoo.open_weights(state, config=CONFIG, layout="nanogpt")


# -- random weights -------------------------------------------------------------------------------


def test_random_weights_are_reproducible_per_seed_and_lazy():
    a, b, c = (zoo.random_weights(CONFIG, seed) for seed in (1, 1, 2))
    assert list(a) == list(canonical_shapes(CONFIG))
    for name, shape in canonical_shapes(CONFIG).items():
        assert tuple(a[name].shape) == shape and a[name].dtype == torch.float32
        assert torch.equal(a[name], b[name])
    assert not torch.equal(a["wte.weight"], c["wte.weight"])
    # each tensor depends on (seed, name) only, not on what was generated before
    assert torch.equal(zoo.random_weights(CONFIG, 1)["h.1.mlp.c_fc.weight"], a["h.1.mlp.c_fc.weight"])


def test_random_weights_follow_gpt2_initialisation():
    config = GPT2Config(vocab_size=2000, n_positions=64, n_embd=128, n_layer=8, n_head=4)
    weights = zoo.random_weights(config, seed=0)
    assert torch.equal(weights["h.3.attn.c_attn.bias"], torch.zeros(384))
    assert torch.equal(weights["h.3.ln_2.weight"], torch.ones(128))
    assert torch.equal(weights["ln_f.bias"], torch.zeros(128))
    for name, std in [("wte.weight", 0.02), ("wpe.weight", 0.02), ("h.0.mlp.c_fc.weight", 0.02),
                      ("h.0.attn.c_proj.weight", 0.02 / 4), ("h.7.mlp.c_proj.weight", 0.02 / 4)]:
        tensor = weights[name]
        assert abs(tensor.mean().item()) < 0.1 * std, name
        assert tensor.std().item() == pytest.approx(std, rel=0.05), name  # 1/sqrt(2 * n_layer) on c_proj
    assert not torch.equal(weights["h.0.attn.c_attn.weight"], weights["h.1.attn.c_attn.weight"])
