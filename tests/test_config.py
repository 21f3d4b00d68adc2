"""``GPT2Config``: presets, validation, and the round trip with ``transformers.GPT2Config``."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import transformers
from transformers import GPT2LMHeadModel

import zoo
from zoo import ConfigError, GPT2Config
from zoo.weight_map import canonical_shapes

SMALL = [
    GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4),
    GPT2Config(vocab_size=50257, n_positions=16, n_embd=48, n_layer=1, n_head=3),
    GPT2Config(vocab_size=7, n_positions=3, n_embd=10, n_layer=3, n_head=5, layer_norm_epsilon=1e-6),
]

# Sizes published with GPT-2 and in Hugging Face's openai-community config.json files.
PUBLISHED = {
    "gpt2": (768, 12, 12),
    "gpt2-medium": (1024, 24, 16),
    "gpt2-large": (1280, 36, 20),
    "gpt2-xl": (1600, 48, 25),
}


def hf_param_count(config: GPT2Config) -> int:
    with torch.device("meta"):  # shapes only, no memory
        model = GPT2LMHeadModel(config.to_hf())
    return sum(p.numel() for p in model.parameters())  # a tied parameter is listed once


# -- presets --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PUBLISHED))
@pytest.mark.parametrize("prefix", ["", "openai-community/"])
def test_presets_have_the_published_sizes(name, prefix):
    config = GPT2Config.preset(prefix + name)
    assert (config.n_embd, config.n_layer, config.n_head) == PUBLISHED[name]
    assert (config.vocab_size, config.n_positions, config.layer_norm_epsilon) == (50257, 1024, 1e-5)
    assert config is zoo.PRESETS[name]


def test_default_config_is_gpt2_small():
    assert GPT2Config() == GPT2Config.preset("gpt2")
    assert GPT2Config.from_hf(transformers.GPT2Config()) == GPT2Config()


# openai-community/gpt2's config.json as published on the hub (task_specific_params shortened)
GPT2_CONFIG_JSON = """{
  "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
  "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
  "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
  "summary_first_dropout": 0.1, "summary_proj_to_labels": true, "summary_type": "cls_index",
  "summary_use_proj": true, "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257
}"""


def test_the_published_gpt2_config_json_is_gpt2_small(tmp_path):
    (tmp_path / "config.json").write_text(GPT2_CONFIG_JSON)
    assert GPT2Config.from_json_file(tmp_path / "config.json") == GPT2Config.preset("openai-community/gpt2")


def test_unknown_preset_names_the_choices_and_the_close_match():
    with pytest.raises(ConfigError) as info:
        GPT2Config.preset("gpt2-mediun")
    message = str(info.value)
    assert "'gpt2-mediun'" in message and "did you mean 'gpt2-medium'" in message
    for name in PUBLISHED:
        assert name in message
    with pytest.raises(ConfigError, match="choose one of"):
        GPT2Config.preset("llama")


# -- n_params ---------------------------------------------------------------------------------


def test_n_params_of_gpt2_small_is_124m():
    assert GPT2Config().n_params == 124_439_808
    assert hf_param_count(GPT2Config()) == 124_439_808


@pytest.mark.parametrize("config", [*SMALL, GPT2Config.preset("gpt2-medium")], ids=str)
def test_n_params_equals_gpt2lmheadmodel(config):
    assert config.n_params == hf_param_count(config)


@pytest.mark.parametrize("config", SMALL + list(zoo.PRESETS.values()), ids=str)
def test_n_params_is_the_sizes_of_the_weight_map_spec_summed(config):
    assert config.n_params == sum(math.prod(shape) for shape in canonical_shapes(config).values())


# -- Hugging Face round trip ------------------------------------------------------------------------


@pytest.mark.parametrize("config", SMALL + list(zoo.PRESETS.values()), ids=str)
def test_to_hf_and_back_is_the_identity(config):
    hf = config.to_hf()
    assert isinstance(hf, transformers.GPT2Config)
    assert GPT2Config.from_hf(hf) == config
    assert GPT2Config.from_hf(hf.to_dict()) == config
    assert GPT2Config.from_hf(json.loads(hf.to_json_string())) == config


def test_to_hf_describes_gpt2_in_inference_mode():
    hf = SMALL[0].to_hf()
    assert (hf.n_embd, hf.n_layer, hf.n_head, hf.n_positions, hf.vocab_size) == (64, 2, 4, 64, 300)
    assert hf.activation_function == "gelu_new"
    assert hf.resid_pdrop == hf.embd_pdrop == hf.attn_pdrop == 0.0
    assert hf.tie_word_embeddings
    assert hf.eos_token_id == hf.bos_token_id == 299  # the vocabulary is too small for 50256
    assert GPT2Config().to_hf().eos_token_id == 50256
    assert SMALL[0].to_hf(n_inner=None, use_cache=False).use_cache is False


def test_config_json_from_save_pretrained_round_trips(tmp_path):
    config = SMALL[2]
    config.to_hf().save_pretrained(tmp_path)
    assert GPT2Config.from_json_file(tmp_path / "config.json") == config


@pytest.mark.parametrize(
    "setting, fragment",
    [
        ({"activation_function": "gelu"}, "activation_function='gelu'"),
        ({"activation_function": "relu"}, "activation_function='relu'"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"scale_attn_weights": False}, "scale_attn_weights=False"),
        ({"n_inner": 100}, "n_inner=100"),
        ({"add_cross_attention": True}, "add_cross_attention=True"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings=False"),
    ],
)
def test_from_hf_refuses_settings_gpt2_does_not_use(setting, fragment):
    for hf in (SMALL[0].to_hf(**setting), dict(SMALL[0].to_hf().to_dict(), **setting)):
        with pytest.raises(ConfigError, match="unsupported GPT-2 config") as info:
            GPT2Config.from_hf(hf)
        assert fragment in str(info.value)


def test_from_hf_lists_every_unsupported_setting_at_once():
    hf = {"activation_function": "relu", "scale_attn_by_inverse_layer_idx": True, "n_embd": 64}
    with pytest.raises(ConfigError) as info:
        GPT2Config.from_hf(hf)
    assert "activation_function='relu'" in str(info.value)
    assert "scale_attn_by_inverse_layer_idx=True" in str(info.value)


@pytest.mark.parametrize(
    "setting",
    [
        {"activation_function": "gelu_pytorch_tanh"},  # the same tanh GELU, fused
        {"n_inner": 256},  # 4 * n_embd, spelled out
        {"reorder_and_upcast_attn": True},  # changes rounding only
        {"resid_pdrop": 0.1, "use_cache": False},  # not part of the shape
    ],
)
def test_from_hf_accepts_settings_equivalent_to_gpt2(setting):
    assert GPT2Config.from_hf(dict(SMALL[0].to_hf().to_dict(), **setting)) == SMALL[0]


def test_from_hf_refuses_another_model_type(tmp_path):
    with pytest.raises(ConfigError, match="'gpt_neo' model"):
        GPT2Config.from_hf({"model_type": "gpt_neo"})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ConfigError, match=r"config\.json.*'llama'"):
        GPT2Config.from_json_file(path)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_from_json_file_reports_unreadable_files(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"config\.json"):
        GPT2Config.from_json_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        GPT2Config.from_json_file(tmp_path / "missing.json")


# -- validation -----------------------------------------------------------------------------


def test_n_embd_not_divisible_by_n_head_suggests_head_counts():
    with pytest.raises(ConfigError) as info:
        GPT2Config(n_embd=768, n_head=10)
    message = str(info.value)
    assert "n_embd=768 is not divisible by n_head=10" in message
    suggested = json.loads(message.split("choose n_head from ")[1].split(" or")[0])
    assert suggested and all(768 % h == 0 for h in suggested)
    assert 8 in suggested and 12 in suggested  # the divisors nearest to 10


def test_head_count_suggestions_are_quick_for_huge_widths():
    with pytest.raises(ConfigError, match=r"choose n_head from \[1000, 1024, 1250\]"):
        GPT2Config(n_embd=2**21 * 5**4, n_head=1100)  # about 1.3e9, within int32: divisors near 1100


@pytest.mark.parametrize("field", ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"])
@pytest.mark.parametrize("value", [2**31, 10**12, 2**63])
def test_sizes_beyond_int32_are_refused_at_once(field, value):
    with pytest.raises(ConfigError, match=f"{field}={value} is beyond any GPT-2"):
        GPT2Config(**{field: value})


@pytest.mark.parametrize("field", ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sizes_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"{field}={value} must be positive"):
        GPT2Config(**{field: value})


@pytest.mark.parametrize("field", ["vocab_size", "n_positions", "n_embd", "n_layer", "n_head"])
@pytest.mark.parametrize("value", [True, 12.0, "12", None])
def test_sizes_must_be_ints_not_bools_floats_or_strings(field, value):
    with pytest.raises(ConfigError, match=f"{field}={value!r} must be an int"):
        GPT2Config(**{field: value})


def test_numpy_integers_are_accepted_as_plain_ints():
    config = GPT2Config(n_embd=np.int64(64), n_head=np.int32(4), n_layer=np.uint8(2))
    assert config == GPT2Config(n_embd=64, n_head=4, n_layer=2)
    assert type(config.n_embd) is int and hash(config) == hash(GPT2Config(n_embd=64, n_head=4, n_layer=2))


@pytest.mark.parametrize("eps", [0, 0.0, -1e-5, 1, 2.0, math.nan, math.inf, True, "1e-5", None])
def test_bad_layer_norm_epsilon_is_refused(eps):
    with pytest.raises(ConfigError, match=r"layer_norm_epsilon=.* must be a float in \(0, 1\)"):
        GPT2Config(layer_norm_epsilon=eps)


@pytest.mark.parametrize("std", [-0.02, math.nan, math.inf, False, "0.02"])
def test_bad_initializer_range_is_refused(std):
    with pytest.raises(ConfigError, match="initializer_range"):
        GPT2Config(initializer_range=std)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        GPT2Config(vocab_size=0, n_layer=-2, layer_norm_epsilon=5.0)
    message = str(info.value)
    for fragment in ("vocab_size=0", "n_layer=-2", "layer_norm_epsilon=5.0"):
        assert fragment in message


def test_config_error_is_a_value_error_and_configs_are_frozen():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, zoo.ZooError)
    config = GPT2Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_layer = 3  # type: ignore[misc]
    with pytest.raises(ConfigError):
        config.replace(n_head=5)
    assert config.replace(n_layer=2).n_layer == 2


def test_derived_sizes():
    assert GPT2Config().head_size == 64
    assert GPT2Config.preset("gpt2-xl").head_size == 64
    assert GPT2Config().eos_token_id == 50256
    assert SMALL[2].eos_token_id == 6
