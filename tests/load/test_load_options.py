"""``zoo.load`` options: random weights from a seed, devices and dtypes checked against what a variant
declares, and streaming (never two full copies of the weights)."""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import pytest
import torch
from load_helpers import ATOL, CONFIG, VARIANTS, logits, reference_model

import zoo
from zoo import CapabilityError, GPT2Config, WeightsError
from zoo.weight_map import canonical_shapes


def test_layout_or_revision_without_weights_is_refused():
    with pytest.raises(WeightsError, match="weights=None"):
        zoo.load("pure", config=CONFIG, layout="nanogpt")
    with pytest.raises(WeightsError, match="weights=None"):
        zoo.load("pure", config=CONFIG, revision="main")



# -- random weights, devices, dtypes ----------------------------------------------------------------


def test_seed_gives_the_same_random_weights_in_every_variant(ids):
    pure = zoo.load("pure", config=CONFIG, seed=7)
    hf = zoo.load("hf", config=CONFIG, seed=7)
    pure_w, hf_w = pure.export_weights(), hf.export_weights()
    assert set(pure_w) == set(hf_w) == set(canonical_shapes(CONFIG))
    for name in pure_w:
        assert torch.equal(pure_w[name], hf_w[name]), name
    torch.testing.assert_close(logits(pure, ids), logits(hf, ids), atol=ATOL, rtol=0)
    again = zoo.load("pure", config=CONFIG, seed=7).export_weights()
    other = zoo.load("pure", config=CONFIG, seed=8).export_weights()
    assert all(torch.equal(again[n], pure_w[n]) for n in pure_w)
    assert not torch.equal(other["wte.weight"], pure_w["wte.weight"])


def test_random_weights_default_to_gpt2_small_and_accept_a_preset_name():
    assert zoo.load("pure", config="gpt2").config == GPT2Config()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "dtype, expected",
    [("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16), ("float64", torch.float64),
     ("fp64", torch.float64), (torch.float64, torch.float64), ("torch.float64", torch.float64),
     ("float32", torch.float32), (None, torch.float32)],
)
def test_dtype_by_name_or_object(pretrained, ids, expected_logits_f64, variant, dtype, expected):
    model = zoo.load(variant, weights=pretrained, dtype=dtype)
    assert model.dtype == expected
    assert all(t.dtype == expected for t in model.export_weights().values())
    out = logits(model, ids)
    assert out.dtype == expected
    tolerance = {torch.bfloat16: 0.15, torch.float32: ATOL, torch.float64: 1e-10}[expected]
    torch.testing.assert_close(out.double(), expected_logits_f64, atol=tolerance, rtol=0)


@pytest.fixture(scope="module")
def expected_logits_f64(reference, ids) -> torch.Tensor:
    reference64 = reference_model(CONFIG, seed=0).double()
    try:
        return logits(reference64, ids)
    finally:
        del reference64


@pytest.mark.parametrize("dtype", ["float16", torch.int8, "float17"])
def test_undeclared_dtype_is_a_capability_error(dtype):
    with pytest.raises(CapabilityError, match="does not support dtype") as info:
        zoo.load("pure", config=CONFIG, dtype=dtype)
    assert "float32, float64, bfloat16" in str(info.value)


@pytest.mark.parametrize("device", ["meta", "tpu"])
def test_undeclared_device_is_a_capability_error(device):
    with pytest.raises(CapabilityError, match="offers cpu, cuda"):
        zoo.load("pure", config=CONFIG, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_capability_error():
    with pytest.raises(CapabilityError, match="no CUDA GPU"):
        zoo.load("pure", config=CONFIG, device="cuda")


def test_a_variant_that_declares_only_cpu_float32_is_held_to_it():
    pure = zoo.get_variant("pure")
    narrow = zoo.Variant(name="test-load-narrow", build=pure.build, summary="pure, declared narrowly",
                         capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",)))
    zoo.register(narrow)
    try:
        with pytest.raises(CapabilityError, match="'test-load-narrow' does not support dtype 'bfloat16'"):
            zoo.load("test-load-narrow", config=CONFIG, dtype="bfloat16")
        with pytest.raises(CapabilityError, match="'test-load-narrow' does not run on 'cuda'"):
            zoo.load("test-load-narrow", config=CONFIG, device="cuda")
        assert zoo.load("test-load-narrow", config=CONFIG).dtype == torch.float32
    finally:
        zoo.unregister("test-load-narrow")


# -- streaming: never two full copies ---------------------------------------------------------------


class LiveTensors(Mapping):
    """A lazy state dict that hands out fresh tensors and counts how many are alive at once."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state, self.live, self.most_alive, self.reads = state, 0, 0, 0

    def __iter__(self):
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)

    def __contains__(self, key: object) -> bool:
        return key in self.state

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self.state[key].shape)

    def _gone(self) -> None:
        self.live -= 1

    def __getitem__(self, key: str) -> torch.Tensor:
        tensor = self.state[key].clone()
        self.reads += 1
        self.live += 1
        self.most_alive = max(self.most_alive, self.live)
        weakref.finalize(tensor, self._gone)
        return tensor


@pytest.mark.parametrize("variant", VARIANTS)
def test_loading_holds_only_a_tensor_or_two_at_a_time(reference, expected, ids, variant):
    state = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}
    source = LiveTensors(state)
    model = zoo.load(variant, weights=source, config=CONFIG)
    assert source.reads == len(state)  # every tensor read once...
    assert source.most_alive <= 2  # ...and dropped before the next but one is read
    assert source.live == 0
    torch.testing.assert_close(logits(model, ids), expected, atol=ATOL, rtol=0)
