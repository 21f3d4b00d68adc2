"""``hf``: transformers' GPT2LMHeadModel behind the zoo's interface, held to the same contract as ``pure``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from conformance.models import hf_model
from zoo.weight_map import HF, TIED, to_canonical

NAME = "hf"
ATOL = 1e-5
SMALL = zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4, initializer_range=0.1)


def eager_reference(model: zoo.GPT2, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Hugging Face's GPT2LMHeadModel (eager attention, eval) holding ``model``'s weights."""
    return hf_model(model.config, model.export_weights(), dtype)


def ids_for(batch: int, tokens: int, seed: int = 0, config: zoo.GPT2Config = SMALL) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(seed))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@pytest.fixture(scope="module")
def small():
    model = zoo.load(NAME, config=SMALL, seed=3)
    return model, eager_reference(model)


def test_wraps_gpt2lmheadmodel_with_tied_weights(small):
    from transformers import GPT2LMHeadModel

    model, _ = small
    assert isinstance(model, zoo.GPT2)
    assert isinstance(model.model, GPT2LMHeadModel)
    assert model.model.lm_head.weight is model.model.transformer.wte.weight
    assert not model.training and not model.model.training
    assert model.device == torch.device("cpu") and model.dtype == torch.float32


def test_logits_match_eager_hugging_face(small):
    model, reference = small
    for batch, tokens in [(1, 1), (3, 17), (2, SMALL.n_positions)]:
        ids = ids_for(batch, tokens, seed=tokens)
        with torch.no_grad():
            assert max_abs(model(ids), reference(ids).logits) <= ATOL


def test_logits_match_pure_on_the_same_weights(small):
    model, _ = small
    pure = zoo.load("pure", config=SMALL, seed=3)
    ids = ids_for(2, 20)
    with torch.no_grad():
        assert max_abs(model(ids), pure(ids)) <= ATOL


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_run(small, dtype):
    model32, _ = small
    model = zoo.load(NAME, config=SMALL, seed=3, dtype=dtype)
    ids = ids_for(2, 12)
    with torch.no_grad():
        logits, logits32 = model(ids), model32(ids)
    assert logits.dtype == dtype and bool(torch.isfinite(logits).all())
    tolerance = 1e-5 if dtype == torch.float64 else 0.05 * float(logits32.abs().max()) + 0.05
    assert max_abs(logits, logits32) <= tolerance


def test_cache_prefill_and_decode_equal_the_full_forward(small):
    model, _ = small
    ids = ids_for(2, 24)
    with torch.no_grad():
        full = model(ids)
        model.setup_caches(2, 32)
        pieces = [model(ids[:, :8], input_pos=torch.arange(8))]
        pieces += [model(ids[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(8, 16)]
        pieces.append(model(ids[:, 16:], input_pos=torch.arange(16, 24)))
    assert max_abs(torch.cat(pieces, dim=1), full) <= ATOL


def test_cache_refuses_a_gap_goes_back_by_cropping_and_restarts_at_zero(small):
    model, _ = small
    ids = ids_for(1, 10)
    with torch.no_grad():
        model.setup_caches(1, 16)
        model(ids[:, :4], input_pos=torch.arange(4))
        with pytest.raises(zoo.InvalidInputError, match=r"slots 4 to 5 would hold no keys"):
            model(ids[:, 6:7], input_pos=torch.tensor([6]))
        model(ids[:, 4:8], input_pos=torch.arange(4, 8))
        back = model(ids[:, 2:6], input_pos=torch.arange(2, 6))  # slots 2.. again: the cache is cropped
        again = model(ids[:, :5], input_pos=torch.arange(5))  # position 0 starts over
        expected = model(ids[:, :6])
    assert max_abs(back, expected[:, 2:6]) <= ATOL
    assert max_abs(again, expected[:, :5]) <= ATOL


def test_left_padded_batch_equals_unpadded_rows(small):
    model, reference = small
    lengths = [8, 2, 5]
    rows = [ids_for(1, n, seed=20 + i)[0] for i, n in enumerate(lengths)]
    ids = torch.zeros(3, 8, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, 8 - len(row) :], mask[b, 8 - len(row) :] = row, 1
    with torch.no_grad():
        logits = model(ids, attention_mask=mask)
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        expected = reference(ids, attention_mask=mask, position_ids=position_ids).logits
        model.setup_caches(3, 8)
        chunks = [model(ids[:, :4], attention_mask=mask[:, :4], input_pos=torch.arange(4)),
                  model(ids[:, 4:], attention_mask=mask, input_pos=torch.arange(4, 8))]
    real = mask.bool()
    assert bool(torch.isfinite(logits).all())
    assert max_abs(logits[real], expected[real]) <= ATOL
    assert max_abs(torch.cat(chunks, dim=1)[real], logits[real]) <= ATOL
    for b, row in enumerate(rows):
        with torch.no_grad():
            assert max_abs(logits[b, -len(row) :], model(row[None])[0]) <= ATOL


@pytest.mark.parametrize(
    ("ids", "kwargs", "match"),
    [
        (torch.tensor([[1, -1]]), {}, "out of range"),
        (torch.tensor([[SMALL.vocab_size]]), {}, "out of range"),
        (torch.zeros(1, SMALL.n_positions + 1, dtype=torch.long), {}, "longer than n_positions"),
        (torch.zeros(1, 0, dtype=torch.long), {}, "empty"),
        (torch.zeros(1, 3), {}, "integer token ids"),
        (torch.zeros(3, dtype=torch.long), {}, "2-D"),
        (torch.zeros(2, 3, dtype=torch.long), {"attention_mask": torch.ones(3, 3)}, "attention_mask must have shape"),
        (torch.zeros(2, 3, dtype=torch.long), {"input_pos": torch.arange(3)}, "setup_caches"),
    ],
)
def test_bad_inputs_raise_invalid_input_error(ids, kwargs, match):
    model = zoo.load(NAME, config=SMALL)  # no cache set up
    with pytest.raises(zoo.InvalidInputError, match=match):
        model(ids, **kwargs)


def test_bad_cache_sizes(small):
    model, _ = small
    for batch, length in [(0, 4), (1, 0), (1, SMALL.n_positions + 1)]:
        with pytest.raises(zoo.InvalidInputError):
            model.setup_caches(batch, length)


def test_gradients_reach_every_parameter_and_match_eager():
    model = zoo.load(NAME, config=SMALL, seed=4, dtype=torch.float64)
    reference = eager_reference(model, torch.float64)
    ids, targets = ids_for(2, 12), ids_for(2, 12, seed=1)
    for logits in (lambda: model(ids), lambda: reference(ids).logits):
        F.cross_entropy(logits().reshape(-1, SMALL.vocab_size), targets.reshape(-1)).backward()
    grads = to_canonical({n: p.grad for n, p in model.model.named_parameters()}, SMALL, HF)
    expected = to_canonical({n: p.grad for n, p in reference.named_parameters()}, SMALL, HF)
    for name in expected:
        assert grads[name] is not None, name
        assert max_abs(grads[name], expected[name]) <= 1e-10, name


def test_weights_round_trip(small):
    model, _ = small
    exported = model.export_weights()
    assert TIED[0] not in exported
    assert exported["h.0.attn.c_attn.weight"].shape == (3 * SMALL.n_embd, SMALL.n_embd)  # nn.Linear orientation
    pure = zoo.load("pure", config=SMALL, seed=3)
    assert all(torch.equal(v, pure.export_weights()[k]) for k, v in exported.items())
    other = zoo.load(NAME, {k: v.clone() for k, v in exported.items()}, config=SMALL, layout="canonical")
    assert all(torch.equal(other.export_weights()[k], v) for k, v in exported.items())
    assert other.model.lm_head.weight is other.model.transformer.wte.weight


def test_import_weights_checks_a_plain_dict(small):
    model, _ = small
    weights = {k: v.clone() for k, v in model.export_weights().items()}
    weights["wpe.weight"] = weights["wpe.weight"][:, :1]  # would broadcast silently in copy_
    with pytest.raises(zoo.WeightsMismatchError) as info:
        model.import_weights(weights)
    assert [m[0] for m in info.value.mismatched] == ["wpe.weight"]


def test_declared_capabilities():
    caps = zoo.get_variant(NAME).capabilities
    assert caps.exact and caps.kv_cache and caps.padding and caps.trainable
    assert caps.dtypes[0] == "float32" and {"float64", "bfloat16"} <= set(caps.dtypes)
