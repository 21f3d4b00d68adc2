"""The weight-mapping spec: checking state dicts, and converting between HF, nanoGPT and canonical."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from zoo import GPT2Config, WeightsError, WeightsMismatchError
from zoo.weight_map import (
    CANONICAL,
    HF,
    IGNORED_BUFFERS,
    LAYOUTS,
    NANOGPT,
    SPEC,
    TIED,
    canonical_shapes,
    from_canonical,
    to_canonical,
)

CONFIG = GPT2Config(vocab_size=97, n_positions=16, n_embd=24, n_layer=2, n_head=3)
LINEAR = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@pytest.fixture(scope="module")
def hf_model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(CONFIG.to_hf()).eval()
    with torch.no_grad():  # every tensor distinct, biases and norms included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture
def hf_sd(hf_model) -> dict[str, torch.Tensor]:
    return dict(hf_model.state_dict())


def is_linear(name: str) -> bool:
    return name.endswith(LINEAR)


# -- the spec as data -----------------------------------------------------------------------------


def test_spec_covers_every_parameter_of_gpt2lmheadmodel_once(hf_model):
    shapes = canonical_shapes(CONFIG)
    assert len(shapes) == 4 + 12 * CONFIG.n_layer
    assert sum(int(np.prod(s)) for s in shapes.values()) == CONFIG.n_params
    hf = {k.removeprefix("transformer."): tuple(p.shape) for k, p in hf_model.named_parameters()}
    assert set(hf) == set(shapes)  # named_parameters lists the tied lm_head once, as wte
    for name, shape in shapes.items():
        assert hf[name] == (shape[::-1] if is_linear(name) else shape), name


def test_layouts_name_their_keys():
    assert HF.key("h.3.ln_1.weight") == "transformer.h.3.ln_1.weight"
    assert HF.key(TIED[0]) == "lm_head.weight" == NANOGPT.key(TIED[0])
    # Layout.strip removes a key prefix; it is not str.strip
    assert NANOGPT.strip("_orig_mod.transformer.wte.weight") == "transformer.wte.weight"  # noqa: B005
    assert HF.strip("_orig_mod.x") == "_orig_mod.x"  # noqa: B005
    assert CANONICAL.key("wte.weight") == "wte.weight"
    assert set(LAYOUTS) == {"hf", "nanogpt", "canonical"}
    assert [t.name for t in SPEC if t.linear] == [f"h.{{i}}.{s}" for s in LINEAR]
    assert IGNORED_BUFFERS == ("h.{i}.attn.bias", "h.{i}.attn.masked_bias")


# -- to_canonical -----------------------------------------------------------------------------


def test_hf_state_dict_to_canonical(hf_sd):
    weights = to_canonical(hf_sd, CONFIG, HF)
    assert list(weights) == list(canonical_shapes(CONFIG))
    for name in weights:
        stored = hf_sd["transformer." + name]
        assert torch.equal(weights[name], stored.T if is_linear(name) else stored), name
        assert tuple(weights[name].shape) == canonical_shapes(CONFIG)[name]


def test_hf_keys_are_accepted_without_the_transformer_prefix(hf_model, hf_sd):
    bare = dict(hf_model.transformer.state_dict())  # GPT2Model's own keys
    assert not any(k.startswith("transformer.") for k in bare)
    weights = to_canonical(bare, CONFIG, HF)
    for name in weights:
        assert torch.equal(weights[name], to_canonical(hf_sd, CONFIG, HF)[name])
    mixed = {(k.removeprefix("transformer.") if "h.1." in k else k): v for k, v in hf_sd.items()}
    assert set(to_canonical(mixed, CONFIG, HF)) == set(canonical_shapes(CONFIG))


def test_the_same_tensor_given_with_and_without_prefix_is_reported(hf_sd):
    hf_sd["wte.weight"] = hf_sd["transformer.wte.weight"]
    with pytest.raises(WeightsMismatchError,
                       match=r"given twice: 'transformer\.wte\.weight' and 'wte\.weight'"):
        to_canonical(hf_sd, CONFIG, HF)


@pytest.mark.parametrize("layout", [HF, NANOGPT])
def test_ignored_buffers_are_skipped(hf_sd, layout):
    sd = dict(from_canonical(to_canonical(hf_sd, CONFIG, HF), layout))
    mask = torch.tril(torch.ones(CONFIG.n_positions, CONFIG.n_positions)).view(1, 1, 16, 16)
    for i in range(CONFIG.n_layer):
        sd[f"transformer.h.{i}.attn.bias"] = mask
        sd[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    sd["h.0.attn.bias"] = mask  # without the prefix too
    assert set(to_canonical(sd, CONFIG, layout)) == set(canonical_shapes(CONFIG))


def test_every_missing_unexpected_and_misshaped_key_in_one_error(hf_sd):
    del hf_sd["transformer.h.0.ln_1.bias"], hf_sd["transformer.ln_f.weight"]
    hf_sd["transformer.h.0.attn.rotary"] = torch.zeros(3)
    hf_sd["score.weight"] = torch.zeros(2, 24)
    hf_sd["transformer.wpe.weight"] = torch.zeros(8, 24)
    hf_sd["transformer.h.1.mlp.c_fc.bias"] = torch.zeros(95)
    with pytest.raises(WeightsMismatchError) as info:
        to_canonical(hf_sd, CONFIG, HF)
    error = info.value
    assert error.missing == ["transformer.h.0.ln_1.bias", "transformer.ln_f.weight"]
    assert sorted(error.unexpected) == ["score.weight", "transformer.h.0.attn.rotary"]
    assert sorted(error.mismatched) == [
        ("transformer.h.1.mlp.c_fc.bias", (95,), (96,)),
        ("transformer.wpe.weight", (8, 24), (16, 24)),
    ]
    message = str(error)
    assert "hf layout" in message and str(CONFIG) in message
    assert "missing (2): transformer.h.0.ln_1.bias, transformer.ln_f.weight" in message
    assert "unexpected (2):" in message and "score.weight" in message
    assert "mis-shaped: transformer.wpe.weight is [8, 24], expected [16, 24]" in message
    assert "mis-shaped: transformer.h.1.mlp.c_fc.bias is [95], expected [96]" in message
    assert isinstance(error, WeightsError) and isinstance(error, ValueError)


def test_a_checkpoint_for_another_config_hints_at_the_config(hf_sd):
    with pytest.raises(WeightsMismatchError, match="is the config right"):
        to_canonical(hf_sd, CONFIG.replace(vocab_size=98), HF)
    with pytest.raises(WeightsMismatchError) as info:
        to_canonical(hf_sd, CONFIG.replace(n_layer=3), HF)
    assert len(info.value.missing) == 12 and all(k.startswith("transformer.h.2.") for k in info.value.missing)


def test_transposed_projections_hint_at_the_other_layout(hf_sd):
    nanogpt = dict(from_canonical(to_canonical(hf_sd, CONFIG, HF), NANOGPT))
    with pytest.raises(WeightsMismatchError, match="is this a nanogpt checkpoint\\? pass layout='nanogpt'") as info:
        to_canonical(nanogpt, CONFIG, HF)
    # the square attn.c_proj fits either way; every other projection is reported
    assert {k for k, _, _ in info.value.mismatched} == {
        f"transformer.h.{i}.{s}" for i in range(2) for s in LINEAR if s != "attn.c_proj.weight"
    }
    with pytest.raises(WeightsMismatchError, match="pass layout='hf'"):
        to_canonical(hf_sd, CONFIG, NANOGPT)


def test_untied_lm_head_is_refused(hf_sd):
    hf_sd["lm_head.weight"] = hf_sd["transformer.wte.weight"] + 1e-3
    with pytest.raises(WeightsError, match="differs from the token embedding") as info:
        to_canonical(hf_sd, CONFIG, HF)
    assert not isinstance(info.value, WeightsMismatchError)


def test_lm_head_equal_to_wte_but_stored_apart_is_accepted(hf_sd):
    hf_sd["lm_head.weight"] = hf_sd["transformer.wte.weight"].clone()
    assert len(to_canonical(hf_sd, CONFIG, HF)) == len(canonical_shapes(CONFIG))
    del hf_sd["lm_head.weight"]  # save_pretrained leaves the tied copy out
    assert len(to_canonical(hf_sd, CONFIG, HF)) == len(canonical_shapes(CONFIG))


def test_misshaped_lm_head_is_a_mismatch(hf_sd):
    hf_sd["lm_head.weight"] = torch.zeros(5, 24)
    with pytest.raises(WeightsMismatchError) as info:
        to_canonical(hf_sd, CONFIG, HF)
    assert info.value.mismatched == [("lm_head.weight", (5, 24), (97, 24))]


def test_numpy_arrays_are_mapped_too(hf_sd):
    arrays = {k: v.numpy() for k, v in hf_sd.items()}
    weights = to_canonical(arrays, CONFIG, HF)
    assert np.array_equal(weights["h.0.attn.c_attn.weight"], hf_sd["transformer.h.0.attn.c_attn.weight"].numpy().T)
    arrays["lm_head.weight"] = arrays["lm_head.weight"] * 2
    with pytest.raises(WeightsError, match="differs"):
        to_canonical(arrays, CONFIG, HF)


class CountingSource:
    """A lazy source: shapes without tensors, and a count of the tensors read."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        self.sd, self.reads = sd, []

    def keys(self):
        return self.sd.keys()

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self.sd[key].shape)

    def __getitem__(self, key: str) -> torch.Tensor:
        self.reads.append(key)
        return self.sd[key]


def test_to_canonical_checks_shapes_without_reading_tensors(hf_sd):
    del hf_sd["lm_head.weight"]
    source = CountingSource(hf_sd)
    weights = to_canonical(source, CONFIG, HF)
    assert source.reads == []  # the check used shape_of only
    weights["h.1.ln_2.bias"]
    assert source.reads == ["transformer.h.1.ln_2.bias"]


# -- nanoGPT -------------------------------------------------------------------------------------


def test_nanogpt_layout_strips_orig_mod_and_keeps_linear_orientation(hf_sd):
    canonical = to_canonical(hf_sd, CONFIG, HF)
    nanogpt = dict(from_canonical(canonical, NANOGPT))
    assert set(nanogpt) == {"transformer." + k for k in canonical} | {"lm_head.weight"}
    assert nanogpt["lm_head.weight"] is nanogpt["transformer.wte.weight"]
    assert nanogpt["transformer.h.0.mlp.c_fc.weight"].shape == (96, 24)  # nn.Linear: [out, in]
    compiled = {"_orig_mod." + k: v for k, v in nanogpt.items()}
    for sd in (nanogpt, compiled):
        back = to_canonical(sd, CONFIG, NANOGPT)
        for name in canonical:
            assert torch.equal(back[name], canonical[name]), name


# -- from_canonical ------------------------------------------------------------------------------


def test_round_trip_hf_canonical_nanogpt_is_lossless(hf_sd):
    canonical = to_canonical(hf_sd, CONFIG, HF)
    nanogpt = dict(from_canonical(canonical, NANOGPT))
    canonical_again = to_canonical(nanogpt, CONFIG, NANOGPT)
    hf_again = dict(from_canonical(canonical_again, HF))
    assert set(hf_again) == set(hf_sd)
    for key, tensor in hf_sd.items():
        assert hf_again[key].shape == tensor.shape and torch.equal(hf_again[key], tensor), key
    plain = dict(from_canonical(canonical, CANONICAL))
    assert set(plain) == set(canonical_shapes(CONFIG))  # no lm_head: the tie is implied
    assert all(torch.equal(plain[k], canonical[k]) for k in plain)


def test_from_canonical_loads_into_gpt2lmheadmodel_strictly(hf_model, hf_sd):
    state = dict(from_canonical(to_canonical(hf_sd, CONFIG, HF), HF))
    assert state["lm_head.weight"] is state["transformer.wte.weight"]
    fresh = GPT2LMHeadModel(CONFIG.to_hf()).eval()
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    ids = torch.randint(0, CONFIG.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, hf_model(ids).logits)


def test_from_canonical_is_lazy():
    reads = []

    class Lazy(dict):
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

    weights = Lazy({name: torch.zeros(shape) for name, shape in canonical_shapes(CONFIG).items()})
    items = from_canonical(weights, HF)
    assert reads == []
    key, _ = next(items)
    assert (key, reads) == ("transformer.wte.weight", ["wte.weight"])
    assert next(items)[0] == "lm_head.weight" and reads == ["wte.weight"]


def test_from_canonical_transposes_exactly_the_four_projections(hf_sd):
    canonical = to_canonical(hf_sd, CONFIG, HF)
    for key, tensor in from_canonical(canonical, HF):
        name = key.removeprefix("transformer.")
        if name == "lm_head.weight":
            continue
        expected = canonical[name].T if re.search(r"(c_attn|c_proj|c_fc)\.weight$", name) else canonical[name]
        assert torch.equal(tensor, expected), key
