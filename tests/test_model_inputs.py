"""Hostile model inputs, on every registered variant: each is refused by ``zoo.check_inputs`` or
``zoo.check_cache_size`` with a named error, or works as the interface says.

Models are tiny and built once per variant; no call here decodes one token with a cache, so the
compiled variants never compile (their prefill and full forwards run eagerly, and every refusal
comes before the compiled step).
"""

from __future__ import annotations

from functools import cache

import pytest
import torch

import zoo

# vocabulary > 256: llama.cpp refuses smaller ones (its BPE loader needs a merge)
CONFIG = zoo.GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4)
VARIANTS = [name for name in zoo.list_variants() if zoo.get_variant(name).why_unavailable() is None]  # runnable here
IDS = torch.tensor([[1, 2, 3, 299, 5, 6]])


@cache
def model_of(name: str) -> zoo.GPT2:
    return zoo.load(name, config=CONFIG, seed=3)


def cached_model(name: str) -> zoo.GPT2:
    if not zoo.get_variant(name).capabilities.kv_cache:
        pytest.skip(f"{name} declares no KV cache")
    return model_of(name)


def close(a: torch.Tensor, b: torch.Tensor, name: str = "") -> bool:
    atol = 1e-4 if a.dtype == torch.float32 else 2e-2  # bfloat16 activations round differently per chunk
    if name and not zoo.get_variant(name).capabilities.exact:
        atol = 2e-2  # int8 activations are scaled per call (ONNX Runtime's dynamic W8A8): a chunk rounds its own way
    return bool(torch.allclose(a.float(), b.float(), atol=atol, rtol=0))


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.uint16, torch.bool])
def test_token_ids_other_than_int64_or_int32_are_refused(name, dtype):
    with pytest.raises(zoo.InvalidInputError, match=rf"integer token ids of dtype int64 \(or int32\), got dtype {dtype}; convert them with \.long\(\)"):
        model_of(name)(IDS.to(dtype))


@pytest.mark.parametrize("name", VARIANTS)
def test_int32_token_ids_give_the_int64_logits(name):
    model = model_of(name)
    with torch.no_grad():
        assert torch.equal(model(IDS.int()), model(IDS))


@pytest.mark.parametrize("name", VARIANTS)
def test_a_complex_attention_mask_is_refused(name):
    if not zoo.get_variant(name).capabilities.padding:
        pytest.skip(f"{name} declares no padding")
    with pytest.raises(zoo.InvalidInputError, match=r"attention_mask must be real.*complex64"):
        model_of(name)(IDS, attention_mask=torch.ones(IDS.shape, dtype=torch.complex64))


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize(("batch", "size"), [(10**9, "TiB"), (2**62, "EiB")])
def test_a_cache_larger_than_memory_is_refused_naming_its_size(name, batch, size):
    model = cached_model(name)
    with pytest.raises(zoo.InvalidInputError, match=rf"needs a KV cache of [\d.]+ {size}, more than .*memory"):
        model.setup_caches(batch, 8)
    model.setup_caches(1, 8)  # the model still works, and a reasonable cache is still allocated


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize(
    ("pos", "match"),
    [
        ([0, 0, 1], "no repeat, gap or step back"),
        ([2, 1, 0], "no repeat, gap or step back"),
        ([0, 2, 3], "no repeat, gap or step back"),
        ([9, 10, 11], r"only slots \[0, 6\) .* slots 6 to 8 would hold no keys"),
    ],
)
def test_positions_that_repeat_go_backwards_or_leave_a_gap_are_refused(name, pos, match):
    model = cached_model(name)
    with torch.no_grad():
        model.setup_caches(1, 16)
        model(IDS, input_pos=torch.arange(6))
        with pytest.raises(zoo.InvalidInputError, match=match):
            model(IDS[:, :3], input_pos=torch.tensor(pos))
        with pytest.raises(zoo.InvalidInputError, match=r"integer torch.Tensor \(int64 or int32\).*torch.uint8"):
            model(IDS[:, :3], input_pos=torch.arange(6, 9, dtype=torch.uint8))  # a uint8 index is a mask


@pytest.mark.parametrize("name", VARIANTS)
def test_going_back_overwrites_from_there_and_forgets_the_rest(name):
    model = cached_model(name)
    ids = torch.tensor([[7, 8, 9, 10, 11, 12, 13, 14]])
    other = torch.tensor([[40, 41, 42]])
    with torch.no_grad():
        model.setup_caches(1, 16)
        model(ids[:, :6], input_pos=torch.arange(6))
        rewritten = model(other, input_pos=torch.arange(2, 5))  # slots 2..4 again; slot 5 is forgotten
        expected = model(torch.cat([ids[:, :2], other], dim=1))
        with pytest.raises(zoo.InvalidInputError, match="slot 5 would hold no keys"):
            model(ids[:, :2], input_pos=torch.arange(6, 8))
    assert close(rewritten, expected[:, 2:], name)


def test_check_inputs_without_a_cursor_still_refuses_what_one_call_can_show():
    ids = torch.zeros(1, 3, dtype=torch.long)
    zoo.check_inputs(CONFIG, ids, input_pos=torch.arange(5, 8), max_seq_length=16)  # a variant that keeps no cursor
    with pytest.raises(zoo.InvalidInputError, match="consecutive"):
        zoo.check_inputs(CONFIG, ids, input_pos=torch.tensor([5, 7, 8]), max_seq_length=16)
    with pytest.raises(zoo.InvalidInputError, match="would hold no keys"):
        zoo.check_inputs(CONFIG, ids, input_pos=torch.arange(5, 8), max_seq_length=16, cache_cursor=4)


def test_check_cache_size_names_the_device_memory_and_what_fits():
    with pytest.raises(zoo.InvalidInputError, match=r"at most \d+ sequences of 16 fit"):
        zoo.check_cache_size(CONFIG, 10**12, 16, dtype=torch.float64)
