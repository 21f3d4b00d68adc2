"""``pure`` is GPT-2: parity with Hugging Face's ``GPT2LMHeadModel`` (eager attention, eval mode).

Both models hold the same random weights; logits must agree within 1e-5
max-abs in float32, on the 124M shape and on small configs chosen to stress
the arithmetic (one head, one-dimensional heads, another LayerNorm epsilon).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from conformance.models import hf_model
from zoo.weight_map import HF, TIED, to_canonical

NAME = "pure"
ATOL = 1e-5  # float32 max-abs logit error against Hugging Face

SMALL_CONFIGS = {
    "2x4-heads": zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4),
    "3-layers-odd-sizes": zoo.GPT2Config(vocab_size=97, n_positions=40, n_embd=48, n_layer=3, n_head=3),
    "one-head": zoo.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=1),
    "head-size-1": zoo.GPT2Config(vocab_size=64, n_positions=24, n_embd=8, n_layer=2, n_head=8),
    "eps-1e-3-wide-init": zoo.GPT2Config(vocab_size=128, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                         layer_norm_epsilon=1e-3, initializer_range=0.3),
}
SMALL = SMALL_CONFIGS["2x4-heads"]


def hf_reference(model: zoo.GPT2, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Hugging Face's GPT2LMHeadModel (eager attention, eval) holding ``model``'s weights."""
    return hf_model(model.config, model.export_weights(), dtype)


def ids_for(config: zoo.GPT2Config, batch: int, tokens: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@pytest.fixture(scope="module")
def gpt2():
    """The 124M shape, built once: the variant and Hugging Face holding the same weights."""
    model = zoo.load(NAME, config=zoo.GPT2Config(), seed=0)
    return model, hf_reference(model)


@pytest.fixture(scope="module")
def small():
    model = zoo.load(NAME, config=SMALL, seed=3)
    return model, hf_reference(model)


def padded_batch(config: zoo.GPT2Config, lengths: list[int], pad: int = 0):
    """Left-padded ids, their mask, and the unpadded rows."""
    longest = max(lengths)
    rows = [ids_for(config, 1, n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, longest - len(row) :] = row
        mask[b, longest - len(row) :] = 1
    return ids, mask, rows


# -- logits parity -----------------------------------------------------------------------------------


def test_logits_match_hugging_face_on_the_124m_shape(gpt2):
    model, reference = gpt2
    ids = ids_for(model.config, 2, 48)
    with torch.no_grad():
        logits = model(ids)
        expected = reference(ids).logits
    assert logits.shape == (2, 48, 50257) and logits.dtype == torch.float32
    assert max_abs(logits, expected) <= ATOL


@pytest.mark.parametrize("config", SMALL_CONFIGS.values(), ids=SMALL_CONFIGS.keys())
def test_logits_match_hugging_face_on_small_configs(config):
    model = zoo.load(NAME, config=config, seed=1)
    reference = hf_reference(model)
    for batch, tokens in [(1, 1), (3, 7), (2, config.n_positions)]:
        ids = ids_for(config, batch, tokens, seed=tokens)
        with torch.no_grad():
            error = max_abs(model(ids), reference(ids).logits)
        assert error <= ATOL, f"max-abs logit error {error:.3g} > {ATOL} for {config}, ids {list(ids.shape)}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_run(small, dtype):
    model32, _ = small
    model = zoo.load(NAME, config=SMALL, seed=3, dtype=dtype)
    assert model.dtype == dtype
    ids = ids_for(SMALL, 2, 20)
    with torch.no_grad():
        logits = model(ids)
        logits32 = model32(ids)
    assert logits.dtype == dtype and logits.shape == (2, 20, SMALL.vocab_size)
    assert bool(torch.isfinite(logits).all())
    if dtype == torch.float64:
        with torch.no_grad():
            expected = hf_reference(model, torch.float64)(ids).logits
        assert max_abs(logits, expected) <= 1e-12
        assert max_abs(logits, logits32) <= ATOL
    else:
        assert max_abs(logits, logits32) <= 0.05 * float(logits32.abs().max()) + 0.05


def test_every_position_gets_logits(small):
    model, _ = small
    ids = ids_for(SMALL, 1, 10)
    with torch.no_grad():
        full = model(ids)
        prefix = model(ids[:, :4])
    assert max_abs(full[:, :4], prefix) <= ATOL  # causal: later tokens do not change earlier logits


# -- KV cache -------------------------------------------------------------------------------------


def test_cache_prefill_and_decode_equal_the_full_forward(small):
    model, _ = small
    ids = ids_for(SMALL, 2, 30)
    with torch.no_grad():
        full = model(ids)
        model.setup_caches(max_batch_size=4, max_seq_length=SMALL.n_positions)
        pieces = [model(ids[:, :10], input_pos=torch.arange(10))]
        for t in range(10, 20):  # one token at a time
            pieces.append(model(ids[:, t : t + 1], input_pos=torch.tensor([t])))
        pieces.append(model(ids[:, 20:30], input_pos=torch.arange(20, 30)))  # a chunk
    assert max_abs(torch.cat(pieces, dim=1), full) <= ATOL


def test_cache_on_the_124m_shape(gpt2):
    model, reference = gpt2
    ids = ids_for(model.config, 1, 12, seed=5)
    with torch.no_grad():
        model.setup_caches(1, 16)
        prefill = model(ids[:, :8], input_pos=torch.arange(8))
        steps = [model(ids[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(8, 12)]
        expected = reference(ids).logits
    assert max_abs(torch.cat([prefill, *steps], dim=1), expected) <= ATOL


def test_setup_caches_resets(small):
    model, _ = small
    a, b = ids_for(SMALL, 1, 6, seed=1), ids_for(SMALL, 1, 6, seed=2)
    with torch.no_grad():
        model.setup_caches(1, 8)
        model(a, input_pos=torch.arange(6))
        model.setup_caches(1, 8)
        second = model(b, input_pos=torch.arange(6))
        expected = model(b)
    assert max_abs(second, expected) <= ATOL


# -- padding ------------------------------------------------------------------------------------------


def test_left_padded_batch_equals_unpadded_rows_and_hugging_face(small):
    model, reference = small
    ids, mask, rows = padded_batch(SMALL, [9, 3, 6, 1])
    with torch.no_grad():
        logits = model(ids, attention_mask=mask)
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        expected = reference(ids, attention_mask=mask, position_ids=position_ids).logits
        alone = [model(row[None])[0] for row in rows]
    assert bool(torch.isfinite(logits).all())  # padded positions too
    real = mask.bool()
    assert max_abs(logits[real], expected[real]) <= ATOL
    for b, row in enumerate(rows):
        assert max_abs(logits[b, -len(row) :], alone[b]) <= ATOL


def test_mask_of_ones_changes_nothing(small):
    model, _ = small
    ids = ids_for(SMALL, 2, 12)
    with torch.no_grad():
        assert max_abs(model(ids, attention_mask=torch.ones_like(ids)), model(ids)) == 0.0
        assert max_abs(model(ids, attention_mask=torch.ones(2, 12, dtype=torch.bool)), model(ids)) == 0.0


def test_left_padded_decoding_with_the_cache(small):
    model, _ = small
    ids, mask, _ = padded_batch(SMALL, [10, 4])
    with torch.no_grad():
        full = model(ids, attention_mask=mask)
        model.setup_caches(2, 16)
        pieces = [model(ids[:, :6], attention_mask=mask[:, :6], input_pos=torch.arange(6))]
        for t in range(6, 10):
            pieces.append(model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], input_pos=torch.tensor([t])))
    real = mask.bool()
    assert max_abs(torch.cat(pieces, dim=1)[real], full[real]) <= ATOL


# -- bad inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda c: (torch.tensor([[1, -1]]), {}), "token id -1 is out of range"),
        (lambda c: (torch.tensor([[1, c.vocab_size]]), {}), f"token id {SMALL.vocab_size} is out of range"),
        (lambda c: (torch.zeros(1, c.n_positions + 1, dtype=torch.long), {}), "longer than n_positions"),
        (lambda c: (torch.zeros(1, 0, dtype=torch.long), {}), "empty"),
        (lambda c: (torch.zeros(0, 3, dtype=torch.long), {}), "empty"),
        (lambda c: (torch.zeros(1, 3), {}), "integer token ids.*float32.*long"),
        (lambda c: (torch.zeros(1, 3, dtype=torch.bool), {}), "integer token ids"),
        (lambda c: (torch.zeros(3, dtype=torch.long), {}), r"2-D.*input_ids\[None\]"),
        (lambda c: (torch.zeros(1, 2, 3, dtype=torch.long), {}), "2-D"),
        (lambda c: ([[1, 2, 3]], {}), "torch.Tensor"),
        (lambda c: (torch.zeros(2, 3, dtype=torch.long), {"attention_mask": torch.ones(2, 4)}),
         r"attention_mask must have shape \[2, 3\]"),
        (lambda c: (torch.zeros(2, 3, dtype=torch.long), {"attention_mask": torch.full((2, 3), 2)}),
         "only 0 .* and 1"),
        (lambda c: (torch.zeros(2, 3, dtype=torch.long), {"attention_mask": torch.tensor([[1, 1, 1], [0, 0, 0]])}),
         "no tokens at all"),
        (lambda c: (torch.zeros(2, 3, dtype=torch.long), {"input_pos": torch.arange(3)}), "setup_caches"),
        (lambda c: (torch.zeros(1, 3, dtype=torch.long, device="meta"), {}), "is on meta but the model is on cpu"),
    ],
)
def test_bad_inputs_raise_invalid_input_error(make, match):
    model = zoo.load(NAME, config=SMALL, seed=0)  # a fresh model: no cache set up
    ids, kwargs = make(SMALL)
    with pytest.raises(zoo.InvalidInputError, match=match):
        model(ids, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_pos": torch.arange(1, 4)}, r"outside the cache \[0, 3\)"),
        ({"input_pos": torch.tensor([-1, 0, 1])}, "outside the cache"),
        ({"input_pos": torch.arange(2)}, r"input_pos must have shape \[3\]"),
        ({"input_pos": torch.arange(3.0)}, "integer torch.Tensor"),
        ({"input_pos": torch.ones(3, dtype=torch.bool)}, "integer torch.Tensor"),
        ({"input_pos": torch.arange(3), "attention_mask": torch.ones(2, 4)}, "cache slots written so far"),
    ],
)
def test_bad_cache_inputs(small, kwargs, match):
    model, _ = small
    model.setup_caches(2, 3)
    with pytest.raises(zoo.InvalidInputError, match=match):
        model(torch.zeros(2, 3, dtype=torch.long), **kwargs)


def test_batch_larger_than_the_cache(small):
    model, _ = small
    model.setup_caches(1, 8)
    with pytest.raises(zoo.InvalidInputError, match="max_batch_size=1"):
        model(torch.zeros(2, 3, dtype=torch.long), input_pos=torch.arange(3))


@pytest.mark.parametrize(("batch", "length"), [(0, 8), (1, 0), (1, SMALL.n_positions + 1)])
def test_bad_cache_sizes(small, batch, length):
    model, _ = small
    with pytest.raises(zoo.InvalidInputError):
        model.setup_caches(batch, length)


# -- training ---------------------------------------------------------------------------------------------


def test_gradients_match_hugging_face_for_every_parameter():
    config = SMALL_CONFIGS["3-layers-odd-sizes"]
    model = zoo.load(NAME, config=config, seed=4, dtype=torch.float64)
    reference = hf_reference(model, torch.float64)
    ids = ids_for(config, 3, 16)
    targets = ids_for(config, 3, 16, seed=1)
    for m in (model, reference):
        m.zero_grad()
    logits = model(ids)
    F.cross_entropy(logits.reshape(-1, config.vocab_size), targets.reshape(-1)).backward()
    hf_logits = reference(ids).logits
    F.cross_entropy(hf_logits.reshape(-1, config.vocab_size), targets.reshape(-1)).backward()

    grads = {name: p.grad for name, p in model.named_parameters()}
    assert set(grads) == set(model.export_weights())  # every parameter, lm_head counted once (tied)
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    # Hugging Face's gradients, renamed and re-oriented by the weight-mapping spec
    hf_grads = to_canonical({name: p.grad for name, p in reference.named_parameters()}, config, HF)
    assert set(hf_grads) == set(grads)
    for name, grad in grads.items():
        assert max_abs(grad, hf_grads[name]) <= 1e-10, name
    assert float(grads[TIED[1]].abs().sum()) > 0


def test_training_step_changes_the_weights(small):
    model = zoo.load(NAME, config=SMALL, seed=5)
    before = {k: v.clone() for k, v in model.export_weights().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = ids_for(SMALL, 2, 8)
    loss = F.cross_entropy(model(ids)[:, :-1].reshape(-1, SMALL.vocab_size), ids[:, 1:].reshape(-1))
    loss.backward()
    optimizer.step()
    after = model.export_weights()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert model.lm_head.weight is model.wte.weight  # still tied


# -- weights, build and metadata ------------------------------------------------------------------------------


def test_weights_round_trip_and_tie(small):
    model, _ = small
    exported = model.export_weights()
    assert TIED[0] not in exported
    other = zoo.load(NAME, {k: v.clone() for k, v in exported.items()}, config=SMALL, layout="canonical")
    assert all(torch.equal(other.export_weights()[k], v) for k, v in exported.items())
    assert other.lm_head.weight is other.wte.weight
    model64 = zoo.load(NAME, config=SMALL, dtype="float64")
    assert model64.lm_head.weight is model64.wte.weight


def test_import_weights_checks_a_plain_dict(small):
    model, _ = small
    weights = {k: v.clone() for k, v in model.export_weights().items()}
    del weights["ln_f.bias"]
    weights["h.0.attn.c_attn.bias"] = torch.zeros(1)  # would broadcast silently in copy_
    weights["extra.weight"] = torch.zeros(1)
    with pytest.raises(zoo.WeightsMismatchError) as info:
        model.import_weights(weights)
    assert info.value.missing == ["ln_f.bias"]
    assert info.value.unexpected == ["extra.weight"]
    assert [m[0] for m in info.value.mismatched] == ["h.0.attn.c_attn.bias"]


def test_build_is_initialised_from_the_global_seed_like_hf():
    variant = zoo.get_variant(NAME)
    torch.manual_seed(7)
    a = variant.build(SMALL)
    torch.manual_seed(7)
    b = zoo.get_variant("hf").build(SMALL)
    assert not a.training
    for k, v in a.export_weights().items():
        assert torch.equal(v, b.export_weights()[k]), k
        assert bool(torch.isfinite(v).all())
    assert float(a.export_weights()["h.0.ln_1.weight"].min()) == 1.0
    assert float(a.export_weights()["wte.weight"].std()) == pytest.approx(SMALL.initializer_range, rel=0.1)


def test_declared_capabilities():
    variant = zoo.get_variant(NAME)
    caps = variant.capabilities
    assert caps.dtypes == ("float32", "float64", "bfloat16")
    assert {"cpu", "cuda"} <= set(caps.devices)
    assert caps.exact and caps.kv_cache and caps.padding and caps.trainable
    model = zoo.load(NAME, config=SMALL)
    assert isinstance(model, zoo.GPT2)
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
