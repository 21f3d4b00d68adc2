"""What the conformance checks cannot see: that the attention really runs on SDPA, with which mask."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import zoo

import zoo_sdpa
import zoo_sdpa.model

CONFIG = zoo.GPT2Config(vocab_size=97, n_positions=16, n_embd=16, n_layer=2, n_head=2)


@pytest.fixture(scope="module")
def model() -> zoo_sdpa.model.SdpaGPT:
    torch.manual_seed(0)
    return zoo_sdpa.build(CONFIG)


@pytest.fixture
def sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every call to scaled_dot_product_attention the model makes: its mask and is_causal."""
    calls: list[dict[str, Any]] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def recording(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        calls.append({"keys": k.size(-2), **kwargs})
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(zoo_sdpa.model.F, "scaled_dot_product_attention", recording)
    yield calls


def test_a_plain_forward_is_causal_without_a_mask(model: zoo_sdpa.model.SdpaGPT,
                                                  sdpa_calls: list[dict[str, Any]]) -> None:
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4]]))
    assert len(sdpa_calls) == CONFIG.n_layer
    assert all(c["attn_mask"] is None and c["is_causal"] for c in sdpa_calls)


def test_padding_becomes_a_boolean_attn_mask(model: zoo_sdpa.model.SdpaGPT,
                                             sdpa_calls: list[dict[str, Any]]) -> None:
    ids = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        padded = model(ids, attention_mask=mask)
        alone = model(ids[:1, 2:])
    attn_mask = sdpa_calls[0]["attn_mask"]
    assert attn_mask.dtype == torch.bool and tuple(attn_mask.shape) == (2, 1, 4, 4)
    assert not sdpa_calls[0]["is_causal"]
    assert not attn_mask[0, 0, 2:, :2].any(), "a real token attends to padding"
    assert bool(attn_mask[1, 0].equal(torch.ones(4, 4, dtype=torch.bool).tril()))
    torch.testing.assert_close(padded[:1, 2:], alone, rtol=0, atol=1e-5)
    assert bool(torch.isfinite(padded).all()), "padding rows must stay finite"


def test_the_kv_cache_is_a_mask_over_cache_slots(model: zoo_sdpa.model.SdpaGPT,
                                                 sdpa_calls: list[dict[str, Any]]) -> None:
    ids = torch.tensor([[7, 8, 9, 10, 11]])
    model.setup_caches(1, 8)
    with torch.no_grad():
        full = model(ids)
        prefill = model(ids[:, :3], input_pos=torch.arange(3))
        step = model(ids[:, 3:4], input_pos=torch.tensor([3]))
    decode = sdpa_calls[-1]
    assert decode["keys"] == 8 and not decode["is_causal"]
    assert decode["attn_mask"].reshape(-1).tolist() == [True] * 4 + [False] * 4  # slots 0..3 of 8
    torch.testing.assert_close(torch.cat([prefill, step], dim=1), full[:, :4], rtol=0, atol=1e-5)


def test_a_chunk_that_is_all_padding_stays_finite(model: zoo_sdpa.model.SdpaGPT) -> None:
    # row 0's first two slots are padding, so in the first chunk its queries have no key to attend
    # to: some SDPA kernels return NaN for such rows
    ids = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    model.setup_caches(2, 4)
    with torch.no_grad():
        first = model(ids[:, :2], attention_mask=mask[:, :2], input_pos=torch.arange(2))
        rest = model(ids[:, 2:], attention_mask=mask, input_pos=torch.arange(2, 4))
        full = model(ids, attention_mask=mask)
    assert bool(torch.isfinite(first).all())
    torch.testing.assert_close(rest, full[:, 2:], rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_agrees_with_the_cpu(model: zoo_sdpa.model.SdpaGPT, dtype: torch.dtype) -> None:
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])
    on_gpu = zoo_sdpa.build(CONFIG, device="cuda", dtype=dtype)
    on_gpu.import_weights(model.export_weights())
    with torch.no_grad():
        for kwargs in ({}, {"attention_mask": mask}):
            expected = model(ids, **kwargs)
            got = on_gpu(ids.cuda(), **{k: v.cuda() for k, v in kwargs.items()}).float().cpu()
            atol = 1e-4 if dtype == torch.float32 else 5e-2
            torch.testing.assert_close(got[:, 2:], expected[:, 2:], rtol=0, atol=atol)
