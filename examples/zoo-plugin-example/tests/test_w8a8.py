"""What the conformance checks cannot see about ``w8a8``: that it quantises the activations, in integers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
import zoo
from zoo.nn import build

import zoo_example
from zoo_example.w8a8 import W8A8Linear, quantise_per_token

CONFIG = zoo.GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4)
WEIGHTS = zoo.random_weights(CONFIG, seed=0)
IDS = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])


@pytest.fixture(scope="module")
def layer() -> W8A8Linear:
    torch.manual_seed(0)
    layer = W8A8Linear(48, 24)
    layer.load(torch.randn(24, 48))
    assert layer.bias is not None
    layer.bias.copy_(torch.randn(24))
    return layer


def fake_quant(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` rounded to int8 levels, symmetric, one scale per slice along ``dim``, in float64."""
    t = t.double()
    scale = t.abs().amax(dim=dim, keepdim=True) / 127
    return (t / scale).round().clamp(-127, 127) * scale


def test_it_equals_a_fake_quantised_reference(layer: W8A8Linear) -> None:
    x = torch.randn(5, 48) * torch.linspace(0.1, 10, 5)[:, None]  # tokens of different ranges
    w = layer.dequantised(torch.float64)  # the int8 weight times its scales
    assert layer.bias is not None
    assert torch.equal(fake_quant(w, dim=1), w), "the weight is not on int8 levels per output channel"
    expected = fake_quant(x, dim=1) @ w.T + layer.bias.double()  # activations fake-quantised per token
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_it_is_not_weight_only_int8(layer: W8A8Linear) -> None:
    x = torch.randn(5, 48)
    weight_only = F.linear(x, layer.dequantised(), layer.bias)  # int8 weights, float32 activations
    rel = (layer(x) - weight_only).norm() / weight_only.norm()
    assert rel > 1e-3, f"relative difference {rel:.2e}: the activations were not quantised"


def test_the_matmul_runs_on_int8_operands(layer: W8A8Linear, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[torch.dtype, torch.dtype]] = []
    real = torch._int_mm

    def recording(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append((a.dtype, b.dtype))
        return real(a, b)

    monkeypatch.setattr(torch, "_int_mm", recording)
    y = layer(torch.randn(2, 3, 48))  # any leading shape
    assert y.shape == (2, 3, 24) and y.dtype == torch.float32
    assert calls == [(torch.int8, torch.int8)]


def test_per_token_scales_and_what_an_outlier_does() -> None:
    x = torch.tensor([[0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [800.0, 1.0, -2.0, 0.5]])
    q, scales = quantise_per_token(x)
    assert q.dtype == torch.int8 and q[0].tolist() == [64, -127, 32, 0]  # the row's max is +-127
    assert q[1].tolist() == [0, 0, 0, 0]  # a row of zeros stays zeros
    # one channel at 800 sets the token's scale (6.3): every other channel of the token rounds to 0
    # or +-1. That is what trained GPT-2's residual-stream outliers do to W8A8 (see zoo_example.w8a8)
    assert q[2].tolist() == [127, 0, 0, 0]
    torch.testing.assert_close(scales, torch.tensor([1 / 127, 1e-12, 800 / 127]))


def test_a_model_quantises_every_linear_of_the_blocks_and_keeps_the_head_tied_and_dense() -> None:
    model: Any = build(CONFIG, weights=WEIGHTS, scheme=zoo_example.W8A8)
    linears = [m for block in model.h for m in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc,
                                                  block.mlp.c_proj)]
    assert all(type(m) is W8A8Linear for m in linears)
    assert model.lm_head.weight is model.wte.weight and model.wte.weight.dtype == torch.float32
    # a dense float32 GPT holding the same int8 weights is weight-only int8: w8a8 is close to it, not equal
    weight_only = build(CONFIG, weights=model.export_weights())
    with torch.no_grad():
        got, expected = model(IDS), weight_only(IDS)
    rel = float((got - expected).norm() / expected.norm())
    bound = zoo_example.W8A8.tolerances.max_rel_logit_error
    assert bound is not None and 1e-4 < rel < bound, rel


def test_the_scheme_computes_in_float32_only_and_says_so() -> None:
    assert zoo_example.W8A8.linear_class() is W8A8Linear
    with pytest.raises(zoo.CapabilityError, match="pass dtype=torch.float32"):
        build(CONFIG, weights=WEIGHTS, scheme=zoo_example.W8A8, dtype=torch.bfloat16)
