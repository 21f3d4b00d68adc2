"""``quantised`` (int8) and ``quantised-int4``: the quantisation itself, the swapped modules and the contract.

Approximate variants are judged on distributions by the conformance harness;
here the pieces are checked exactly where they can be: the round trip of each
tensor within its quantisation step, biases and the ``wte``/``lm_head`` tie
kept, no padded vocabulary id returned, the KV cache giving the same logits
as a full forward of the same quantised model, and declared tolerances tight
enough to fail a deliberately broken model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch
from marks import INT4_MISSING, needs_int4

import zoo
import zoo.nn
from conformance import models, runner
from conformance.models import WeightInit, canonical_weights
from zoo.nn import GPT, build, quantise_
from zoo.nn.kernels import (
    DENSE_FROM_ROWS,
    INT4_GROUP,
    Int4Linear,
    Int8Linear,
    TiedEmbedding,
    quantise_int4,
    quantise_int8,
    unpack_int4,
)

VARIANTS = {"quantised": "int8", "quantised-int4": "int4"}  # variant -> its scheme
# odd sizes on purpose: n_embd not a multiple of the kernels' K multiples, vocabulary and
# 3 * n_embd not multiples of the int4 kernel's N multiple
CONFIG = zoo.GPT2Config(vocab_size=101, n_positions=24, n_embd=36, n_layer=2, n_head=3)
INIT = WeightInit(seed=4, scale=3.0)  # non-trivial biases and LayerNorms
BF16_REL = 2.0**-8  # bfloat16 rounding: relative error of at most half of 2**-7


@pytest.fixture(scope="module", params=[pytest.param(name, marks=needs_int4 if VARIANTS[name] == "int4" else ())
                                        for name in sorted(VARIANTS)])
def quantised(request: pytest.FixtureRequest) -> GPT:
    return build(CONFIG, dtype=torch.bfloat16, scheme=VARIANTS[request.param], weights=canonical_weights(CONFIG, INIT))


def is_int8(model: GPT) -> bool:
    return isinstance(model.h[0].mlp.c_fc, Int8Linear)


@pytest.fixture(scope="module", autouse=True)
def free_models() -> Iterator[None]:
    yield
    models.clear()


def ids_for(config: zoo.GPT2Config, batch: int, tokens: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(seed))


# -- step 1: quantisation -------------------------------------------------------------------
def test_int8_round_trip_is_within_half_a_step_per_row() -> None:
    w = torch.randn(40, 48, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.01, 3, 40)[:, None]
    q, scales = quantise_int8(w)
    assert q.dtype == torch.int8 and scales.dtype == torch.bfloat16 and scales.shape == (40,)
    step = scales.float()[:, None]
    err = (w - q.float() * step).abs()
    assert bool((err <= step / 2 + 1e-7).all()), float((err / step).max())
    # the scale is the row's max over 127, up to bfloat16 rounding: the whole int8 range is used
    assert torch.allclose(step[:, 0], w.abs().amax(1) / 127, rtol=BF16_REL, atol=0)
    assert int(q.abs().amax()) == 127


@needs_int4
def test_int4_round_trip_is_within_half_a_step_per_group() -> None:
    w = torch.randn(16, 4 * INT4_GROUP, generator=torch.Generator().manual_seed(2)) + 0.5
    q, sz = quantise_int4(w)
    assert q.dtype == torch.int32 and int(q.min()) >= 0 and int(q.max()) <= 15
    assert sz.shape == (4, 16, 2) and sz.dtype == torch.bfloat16
    scales, zeros = (sz[..., i].float().T.repeat_interleave(INT4_GROUP, dim=1) for i in (0, 1))  # (N, K)
    err = (w - ((q.float() - 8) * scales + zeros)).abs()
    # half a step, plus what rounding the zero to bfloat16 moved the grid by
    assert bool((err <= scales / 2 + zeros.abs() * BF16_REL + 1e-7).all())
    groups = w.reshape(16, 4, INT4_GROUP)
    expected = ((groups.amax(-1) - groups.amin(-1)) / 15).T
    assert torch.allclose(sz[..., 0].float(), expected, rtol=BF16_REL, atol=0)


def test_export_round_trips_every_tensor_within_its_bound(quantised: GPT) -> None:
    given = canonical_weights(CONFIG, INIT)
    out = quantised.export_weights()
    assert set(out) == set(given) and "lm_head.weight" not in out
    for name, w in given.items():
        got = out[name]
        assert got.dtype == torch.float32 and got.shape == w.shape, name
        err = float((got - w).abs().max())
        if name.endswith(".weight") and (name == "wte.weight" or ".attn." in name or ".mlp." in name):
            if name == "wte.weight" or is_int8(quantised):
                bound = float(w.abs().amax()) / 127 * (0.5 + BF16_REL)  # half an int8 step of the largest row
            else:
                bound = float(w.amax() - w.amin()) / 15 * (0.5 + BF16_REL) + float(w.abs().max()) * 2 * BF16_REL
            assert 0 < err <= bound, (name, err, bound)
        else:  # biases, LayerNorms and wpe: bfloat16, kept
            assert err <= float(w.abs().max()) * BF16_REL, (name, err)


# -- step 2: the swapped modules ------------------------------------------------------------
@needs_int4
@pytest.mark.parametrize(("n", "k"), [(2304, 768), (192, 512), (128, 64)])
def test_int4_weights_are_read_directly_where_the_layout_is_known(n: int, k: int) -> None:
    layer = Int4Linear(k, n)
    layer.load(torch.randn(n, k, generator=torch.Generator().manual_seed(n)))
    assert layer.unpackable
    eye = torch.eye(k)  # the kernel's own reading of its packed weights
    through_kernel = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, layer.weight, INT4_GROUP,
                                                                layer.scales_and_zeros.float()).T
    assert torch.equal(layer.dequantised(), through_kernel)


@needs_int4
def test_int4_layouts_it_does_not_know_are_read_through_the_kernel() -> None:
    assert unpack_int4(torch.zeros(48, 16, dtype=torch.uint8), 48, 32) is None  # 48 rows: not blocks of 64
    layer = Int4Linear(36, 108)  # padded to 112 rows
    layer.load(torch.randn(108, 36, generator=torch.Generator().manual_seed(0)))
    assert not layer.unpackable
    x = torch.randn(DENSE_FROM_ROWS, 36).bfloat16()
    torch.testing.assert_close(layer(x).float(), x.float() @ layer.dequantised().T + layer.bias.float(),
                               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("linear", [Int8Linear, pytest.param(Int4Linear, marks=needs_int4)])
def test_a_prefill_dequantises_to_a_dense_matmul_with_the_same_result(linear: type[Int8Linear | Int4Linear]) -> None:
    """From DENSE_FROM_ROWS rows the weight-only kernel gives way to a dense bfloat16 matmul: the same numbers."""
    layer = linear(768, 2304)
    layer.load(torch.randn(2304, 768, generator=torch.Generator().manual_seed(1)) * 0.02)
    layer.bias.normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(2 * DENSE_FROM_ROWS, 768, generator=torch.Generator().manual_seed(3)).bfloat16()
    dense = layer(x)  # one call: dense
    kernel = torch.cat([layer(rows) for rows in x.split(DENSE_FROM_ROWS // 2)])  # small calls: the kernel
    exact = x.double() @ layer.dequantised().double().T + layer.bias.double()
    for got in (dense, kernel):  # both within bfloat16 rounding of the exact product
        assert ((got.double() - exact).abs() <= 4 * BF16_REL * exact.abs() + 0.02).all()
    torch.testing.assert_close(dense.float(), kernel.float(), rtol=2 * 2.0**-7, atol=0.05)


def test_every_linear_is_quantised_and_keeps_its_bias(quantised: GPT) -> None:
    linear = Int8Linear if is_int8(quantised) else Int4Linear
    assert not [n for n, m in quantised.named_modules() if isinstance(m, torch.nn.Linear)]
    given = canonical_weights(CONFIG, INIT)
    for i, block in enumerate(quantised.h):
        for name, layer in (("attn.c_attn", block.attn.c_attn), ("attn.c_proj", block.attn.c_proj),
                            ("mlp.c_fc", block.mlp.c_fc), ("mlp.c_proj", block.mlp.c_proj)):
            assert type(layer) is linear, name
            bias = given[f"h.{i}.{name}.bias"]
            assert float(bias.abs().max()) > 0
            assert torch.allclose(layer.bias.float(), bias, rtol=BF16_REL, atol=0)


def test_biases_reach_the_logits(quantised: GPT) -> None:
    ids = ids_for(CONFIG, 1, 6)
    with torch.no_grad():
        before = quantised(ids)
        bias = quantised.h[0].mlp.c_proj.bias
        saved = bias.clone()
        bias.zero_()
        after = quantised(ids)
        bias.copy_(saved)
    assert not torch.equal(before, after)


def test_the_tie_is_one_int8_tensor(quantised: GPT) -> None:
    assert isinstance(quantised.wte, TiedEmbedding)
    assert quantised.lm_head.embedding is quantised.wte
    storages = {b.untyped_storage().data_ptr() for b in quantised.buffers()}
    assert quantised.wte.weight.untyped_storage().data_ptr() in storages
    assert sum(b is quantised.wte.weight for b in quantised.buffers()) == 1  # listed once
    # the head multiplies by the dequantised embedding: logits = x @ wte.T, up to bfloat16
    x = torch.randn(1, 3, CONFIG.n_embd, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    wte = quantised.export_weights()["wte.weight"]
    with torch.no_grad():
        logits = quantised.lm_head(x)
    expected = x.float() @ wte.T
    assert torch.allclose(logits.float(), expected, rtol=2e-2, atol=2e-2 * float(expected.abs().max()))
    # and the lookup reads the same rows
    ids = torch.tensor([[0, 5, CONFIG.vocab_size - 1]])
    with torch.no_grad():
        rows = quantised.wte(ids)
    assert torch.allclose(rows.float(), wte[ids], rtol=BF16_REL, atol=0)


def test_importing_wte_moves_the_head(quantised: GPT) -> None:
    ids = ids_for(CONFIG, 1, 5)
    other = canonical_weights(CONFIG, WeightInit(INIT.seed, INIT.scale, wte_seed=99))
    try:
        with torch.no_grad():
            before = quantised(ids)
            quantised.import_weights({"wte.weight": other["wte.weight"], **{
                k: v for k, v in canonical_weights(CONFIG, INIT).items() if k != "wte.weight"}})
            after = quantised(ids)
        head = quantised.lm_head(torch.ones(1, 1, CONFIG.n_embd, dtype=torch.bfloat16)).float()
        expected = other["wte.weight"].sum(1)
        assert torch.allclose(head[0, 0], expected, rtol=5e-2, atol=5e-2 * float(expected.abs().max()))
        assert not torch.equal(before, after)
    finally:
        quantised.import_weights(canonical_weights(CONFIG, INIT))


def test_logits_are_exactly_vocab_size_wide(quantised: GPT) -> None:
    assert CONFIG.vocab_size % 16 and (3 * CONFIG.n_embd) % 16  # the padding is exercised
    with torch.no_grad():
        logits = quantised(ids_for(CONFIG, 2, 7))
    assert logits.shape == (2, 7, CONFIG.vocab_size) and logits.dtype == torch.bfloat16
    assert bool(torch.isfinite(logits).all())
    # the int4 layers' padded output rows are sliced off before the bias
    layer = quantised.h[0].attn.c_attn
    with torch.no_grad():
        assert layer(torch.zeros(1, 1, CONFIG.n_embd, dtype=torch.bfloat16)).shape == (1, 1, 3 * CONFIG.n_embd)


def test_generation_never_returns_a_padded_id(quantised: GPT) -> None:
    prompts = [[1, 2, 3], [CONFIG.vocab_size - 1]]
    first = zoo.generate(quantised, prompts, 8, temperature=2.0, seed=7)
    again = zoo.generate(quantised, prompts, 8, temperature=2.0, seed=7)
    greedy = zoo.generate(quantised, prompts, 8)
    assert first == again
    for rows in (first, greedy):
        assert [len(r) for r in rows] == [8, 8] or any(CONFIG.eos_token_id in r for r in rows)
        assert all(0 <= t < CONFIG.vocab_size for r in rows for t in r)


# -- the KV cache: same arithmetic as the full forward ----------------------------------------
def test_prefill_then_decode_equals_the_full_forward(quantised: GPT) -> None:
    ids = ids_for(CONFIG, 2, 10, seed=5)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    with torch.no_grad():
        full = quantised(ids, mask)
        quantised.setup_caches(2, 16)
        pieces = [quantised(ids[:, :4], mask[:, :4], input_pos=torch.arange(4))]
        for t in range(4, 10):
            pieces.append(quantised(ids[:, t : t + 1], mask[:, : t + 1], input_pos=torch.tensor([t])))
    decoded = torch.cat(pieces, dim=1).float()
    where = mask.bool()
    # the same quantised weights and kernels; only the attention's summation order may differ
    err = float((decoded - full.float())[where].abs().max())
    assert err <= 0.02 * float(full.float()[where].abs().max()), err


# -- the contract ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m(torch.tensor([[0, CONFIG.vocab_size]])), "vocab"),
        (lambda m: m(torch.tensor([[0.0, 1.0]])), "integer"),
        (lambda m: m(torch.tensor([0, 1])), "2-D"),
        (lambda m: m(torch.zeros(1, CONFIG.n_positions + 1, dtype=torch.long)), "n_positions"),
    ],
)
def test_bad_inputs_raise(quantised: GPT, call: Any, message: str) -> None:
    with pytest.raises(zoo.InvalidInputError, match=message):
        call(quantised)


def test_build_refuses_what_is_not_offered() -> None:
    with pytest.raises(zoo.CapabilityError, match="bfloat16"):
        build(CONFIG, scheme="int8", dtype=torch.float32)
    with pytest.raises(zoo.CapabilityError, match="CPU only" if INT4_MISSING is None else r"needs torch >= 2\.6"):
        build(CONFIG, scheme="int4", dtype=torch.bfloat16, device="meta")
    with pytest.raises(zoo.CapabilityError, match="did you mean 'int8'"):
        build(CONFIG, scheme="int-8", dtype=torch.bfloat16)


def test_build_draws_weights_as_pure_does() -> None:
    torch.manual_seed(11)
    pure = zoo.get_variant("pure").build(CONFIG)
    torch.manual_seed(11)
    mine = zoo.get_variant("quantised").build(CONFIG).export_weights()
    for name, w in pure.export_weights().items():
        assert float((mine[name] - w).abs().max()) <= float(w.abs().max()) / 127, name


@needs_int4
def test_weight_memory_is_a_fraction_of_float32() -> None:
    config = zoo.GPT2Config(vocab_size=1000, n_positions=64, n_embd=128, n_layer=2, n_head=4)
    torch.manual_seed(0)
    float32 = config.n_params * 4
    int8, int4 = (build(config, dtype=torch.bfloat16, scheme=s).weight_bytes() for s in ("int8", "int4"))
    assert 0.25 < int8 / float32 < 0.30  # one byte a weight, bfloat16 scales, biases, LayerNorms and wpe
    assert 0.15 < int4 / float32 < int8 / float32


# -- the declared tolerances have teeth ---------------------------------------------------------
def int8(config: zoo.GPT2Config, **kwargs: Any) -> zoo.GPT2:
    return build(config, scheme="int8", **kwargs)


def int4(config: zoo.GPT2Config, **kwargs: Any) -> zoo.GPT2:
    return build(config, scheme="int4", **kwargs)


class DoubledScales(GPT):
    """int8 with the MLP output projections' scales doubled after import: a broken dequantisation."""

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        super().import_weights(weights)
        for block in self.h:
            block.mlp.c_proj.scales.mul_(2)


class DroppedBias(GPT):
    """int4 that forgets every Linear's bias, gpt-fast's trap."""

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        super().import_weights(weights)
        for block in self.h:
            for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
                layer.bias.zero_()


def doubled_scales(config: zoo.GPT2Config, **kwargs: Any) -> zoo.GPT2:
    return build(config, scheme="int8", cls=DoubledScales, **kwargs)


def dropped_bias(config: zoo.GPT2Config, **kwargs: Any) -> zoo.GPT2:
    return build(config, scheme="int4", cls=DroppedBias, **kwargs)


@pytest.mark.parametrize(
    ("base", "make", "passes"),
    [("quantised", int8, True), ("quantised", doubled_scales, False),
     pytest.param("quantised-int4", int4, True, marks=needs_int4),
     pytest.param("quantised-int4", dropped_bias, False, marks=needs_int4)],
    ids=["int8", "int8-doubled-scales", "int4", "int4-dropped-bias"],
)
def test_declared_tolerances_pass_the_real_model_and_fail_a_broken_one(base: str, make: Any, passes: bool) -> None:
    declared = zoo.get_variant(base)
    name = f"{base}-under-test-{make.__name__.replace('_', '-')}"
    zoo.register(zoo.Variant(name, build=make, summary="under test", capabilities=declared.capabilities,
                             tolerances=declared.tolerances))
    # A broken model is searched with the thorough profile's 300 examples from a fixed seed. On random
    # weights the int4 bounds catch a dropped bias only where the drawn biases are large: of seeds 0 to 3,
    # seeds 1 and 3 catch it (weights property), 0 and 2 do not. The seed pins a draw that shows the
    # bounds can catch it; the fidelity property, on learned weights, catches it every time (below).
    # The real models keep the ci profile.
    profile, seed = ("ci", None) if passes else ("thorough", 1)
    try:
        results = runner.check_variant(name, profile=profile, properties=["weights"], seed_value=seed)
    finally:
        zoo.unregister(name)
    interface, weights = results
    assert interface.status == "pass", interface.message
    if passes:
        assert weights.status == "pass", runner.failures(results)
    else:
        assert weights.status == "fail", f"{make.__name__} passed: the declared tolerances are too loose"
        assert "(KL " in weights.message or "(relative logit error " in weights.message


@pytest.mark.parametrize(("base", "make"), [("quantised", doubled_scales),
                                            pytest.param("quantised-int4", dropped_bias, marks=needs_int4)],
                         ids=["int8-doubled-scales", "int4-dropped-bias"])
def test_the_fidelity_budgets_catch_a_broken_model_on_learned_weights(base: str, make: Any) -> None:
    declared = zoo.get_variant(base)
    name = f"{base}-under-test-{make.__name__.replace('_', '-')}"
    zoo.register(dataclasses.replace(declared, name=name, build=make))
    try:
        [interface, fidelity] = runner.check_variant(name, profile="quick", properties=["fidelity"])
    finally:
        zoo.unregister(name)
    assert interface.status == "pass", interface.message
    assert fidelity.status == "fail", f"{make.__name__} passed: the declared fidelity budget is too loose"
    assert "on the learned preset (bfloat16)" in fidelity.message


# -- quantisation is a transform: on a built model, and with a scheme of one's own ---------------
def test_quantising_a_built_float_model_equals_building_it_quantised() -> None:
    weights = canonical_weights(CONFIG, INIT)
    dense = build(CONFIG, weights=weights)  # float32, holding its weights
    quantise_(dense, "int8")
    assert dense.dtype == torch.bfloat16 and isinstance(dense.wte, TiedEmbedding)
    direct = build(CONFIG, dtype=torch.bfloat16, scheme="int8", weights=weights)
    ids = ids_for(CONFIG, 2, 6)
    with torch.no_grad():
        assert torch.equal(dense(ids), direct(ids))


def test_a_scheme_of_ones_own_is_one_row() -> None:
    """int8 Linears with the tied embedding left dense: a new scheme, no new class."""
    row = zoo.nn.Scheme("int8-dense-head", "zoo.nn.kernels:Int8Linear", embedding="dense", precision="int8",
                        summary="int8 blocks, bfloat16 tied head")
    model = build(CONFIG, dtype=torch.bfloat16, scheme=row, weights=canonical_weights(CONFIG, INIT))
    assert isinstance(model.h[1].mlp.c_proj, Int8Linear)
    assert isinstance(model.wte, torch.nn.Embedding) and model.lm_head.weight is model.wte.weight
    variant = zoo.nn.declare("int8-dense-head", "under test", scheme=row)
    assert variant.precision == "int8" and variant.capabilities.dtypes == ("bfloat16",)
    assert not variant.capabilities.exact and not variant.capabilities.lossless_weights
    with pytest.raises(ValueError, match="embedding='int3'"):
        zoo.nn.Scheme("bad", "zoo.nn.kernels:Int8Linear", embedding="int3", precision="int8", summary="")
