"""What the conformance checks cannot see about ``explicit``: that its attention really is the written-out one."""

from __future__ import annotations

import pytest
import torch
import zoo
import zoo.nn
import zoo.nn.model

from zoo_example.explicit import ExplicitAttention, ExplicitGPT

CONFIG = zoo.GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4)
WEIGHTS = zoo.random_weights(CONFIG, seed=0)
IDS = torch.tensor([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6]])
MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])


@pytest.fixture
def no_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make zoo.nn's fused attention call fail, so a model that still reaches it fails the test."""

    def refuse(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("scaled_dot_product_attention was called: the attention is not the written-out one")

    monkeypatch.setattr(zoo.nn.model.F, "scaled_dot_product_attention", refuse)


def test_every_block_attends_through_the_written_out_attention() -> None:
    model = zoo.nn.build(CONFIG, cls=ExplicitGPT, weights=WEIGHTS)
    assert isinstance(model, ExplicitGPT)
    assert all(type(attn) is ExplicitAttention for attn in model.attentions())
    # the swap keeps zoo.nn's module names, so the weights are the same canonical state dict
    assert model.export_weights().keys() == zoo.nn.build(CONFIG, weights=WEIGHTS).export_weights().keys()


@pytest.mark.usefixtures("no_sdpa")
def test_no_forward_reaches_the_fused_kernel() -> None:
    model = zoo.nn.build(CONFIG, cls=ExplicitGPT, weights=WEIGHTS)
    model.setup_caches(2, 8)
    with torch.no_grad():
        model(IDS)
        model(IDS, attention_mask=MASK)
        model(IDS[:, :3], attention_mask=MASK[:, :3], input_pos=torch.arange(3))


def test_it_equals_zoo_nn_gpt_in_float64() -> None:
    explicit = zoo.nn.build(CONFIG, cls=ExplicitGPT, dtype=torch.float64, weights=WEIGHTS)
    fused = zoo.nn.build(CONFIG, dtype=torch.float64, weights=WEIGHTS)
    with torch.no_grad():
        for kwargs in ({}, {"attention_mask": MASK}):
            torch.testing.assert_close(explicit(IDS, **kwargs), fused(IDS, **kwargs), rtol=0, atol=1e-12)


def test_a_query_with_no_key_to_attend_to_stays_finite() -> None:
    # row 0's first two tokens are padding: in a first cached chunk of two, its queries may attend to no
    # key at all, so every score of the row carries the bias' most negative value; the softmax must
    # still be finite there (its logits are unspecified: no real token reads them)
    model = zoo.nn.build(CONFIG, cls=ExplicitGPT, weights=WEIGHTS)
    model.setup_caches(2, 6)
    with torch.no_grad():
        first = model(IDS[:, :2], attention_mask=MASK[:, :2], input_pos=torch.arange(2))
        rest = model(IDS[:, 2:], attention_mask=MASK, input_pos=torch.arange(2, 6))
        full = model(IDS, attention_mask=MASK)
    assert bool(torch.isfinite(first).all())
    torch.testing.assert_close(rest, full[:, 2:], rtol=0, atol=1e-5)

