"""The ``cpu`` variant (GPT-2 in NumPy) against Hugging Face's ``GPT2LMHeadModel``, eager, float32."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

import zoo
from plugins.cpu.model import GPT
from zoo.weight_map import HF, canonical_shapes, to_canonical

ATOL = 1e-5  # float32, two implementations: summation order differs, nothing else may
ROOT = Path(__file__).resolve().parent.parent

SMALL = zoo.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
# odd sizes, a different head count and a non-default epsilon, so a hard-coded constant shows
ODD = zoo.GPT2Config(vocab_size=97, n_positions=40, n_embd=48, n_layer=3, n_head=2, layer_norm_epsilon=1e-3)


def hf_model(config: zoo.GPT2Config, seed: int = 0, perturb: bool = True) -> GPT2LMHeadModel:
    """Hugging Face's model with random weights; ``perturb`` moves biases and LayerNorms off 0 and 1."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config.to_hf(attn_implementation="eager")).eval()
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return model


def cpu_from(hf: GPT2LMHeadModel, config: zoo.GPT2Config) -> GPT:
    model = zoo.load("cpu", weights=hf.state_dict(), config=config)
    assert isinstance(model, GPT)
    return model


@pytest.fixture(scope="module")
def small() -> tuple[GPT2LMHeadModel, GPT]:
    hf = hf_model(SMALL)
    return hf, cpu_from(hf, SMALL)


def hf_logits(hf: GPT2LMHeadModel, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        if mask is None:
            return hf(ids).logits
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        return hf(ids, attention_mask=mask, position_ids=position_ids).logits


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


# -- registration ----------------------------------------------------------------


def test_registered_with_its_capabilities() -> None:
    variant = zoo.get_variant("cpu")
    assert variant.capabilities.devices == ("cpu",)
    assert variant.capabilities.dtypes == ("float32",)
    assert variant.capabilities.exact and variant.capabilities.kv_cache and variant.capabilities.padding
    with pytest.raises(zoo.CapabilityError, match="float64"):
        zoo.load("cpu", config=SMALL, dtype="float64")
    with pytest.raises(zoo.CapabilityError, match="float64"):
        GPT.build(SMALL, dtype=torch.float64)
    with pytest.raises(zoo.CapabilityError, match="cuda"):
        GPT.build(SMALL, device="cuda")


def test_build_draws_the_same_random_weights_as_pure() -> None:
    torch.manual_seed(11)
    pure = zoo.get_variant("pure").build(SMALL)
    torch.manual_seed(11)
    model = GPT.build(SMALL)
    ids = torch.randint(0, SMALL.vocab_size, (2, 10), generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        assert max_err(model(ids), pure(ids)) < ATOL


def test_weights_are_contiguous_float32_numpy_in_fast_orientation(small) -> None:
    _, model = small
    block = model.h[0]
    arrays = (model.wte.weight_t, model.wpe.weight, block.attn.c_attn.weight, block.mlp.c_fc.weight,
              block.ln_1.weight)
    for array in arrays:
        assert isinstance(array, np.ndarray) and array.dtype == np.float32 and array.flags.c_contiguous
    assert block.attn.c_attn.weight.shape == (SMALL.n_embd, 3 * SMALL.n_embd)  # [in, out]
    assert model.wte.weight_t.shape == (SMALL.n_embd, SMALL.vocab_size)  # lm_head as [in, out] too
    assert block.mlp.c_proj.weight.shape == (4 * SMALL.n_embd, SMALL.n_embd)
    exported = model.export_weights()["wte.weight"]
    assert np.shares_memory(exported.numpy(), model.wte.weight_t), "the embedding and lm_head are one array"


# -- logits against Hugging Face -------------------------------------------------


@pytest.mark.parametrize("config", [SMALL, ODD], ids=["small", "odd"])
def test_logits_match_hf(config: zoo.GPT2Config) -> None:
    hf = hf_model(config, seed=1)
    model = cpu_from(hf, config)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, config.vocab_size, (3, config.n_positions), generator=gen)
    ref = hf_logits(hf, ids)
    out = model(ids)
    assert out.dtype == torch.float32 and out.shape == (3, config.n_positions, config.vocab_size)
    assert max_err(out, ref) < ATOL, f"max abs logit error {max_err(out, ref):.2e} > {ATOL}"


def test_logits_match_hf_on_the_124m_shape() -> None:
    config = zoo.GPT2Config()
    hf = hf_model(config, perturb=False)  # Hugging Face's own initialisation
    model = cpu_from(hf, config)
    ids = torch.randint(0, config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(3))
    ref = hf_logits(hf, ids)
    out = model(ids)
    assert out.shape == ref.shape
    assert max_err(out, ref) < ATOL, f"max abs logit error {max_err(out, ref):.2e} > {ATOL}"


# -- KV cache --------------------------------------------------------------------


def test_prefill_then_decode_equals_full_forward(small) -> None:
    _, model = small
    ids = torch.randint(0, SMALL.vocab_size, (2, 20), generator=torch.Generator().manual_seed(4))
    full = model(ids)
    model.setup_caches(max_batch_size=2, max_seq_length=32)
    steps = [model(ids[:, :10], input_pos=torch.arange(10))]  # prefill
    steps.append(model(ids[:, 10:13], input_pos=torch.arange(10, 13)))  # a chunk of three
    for t in range(13, 20):  # one token at a time
        steps.append(model(ids[:, t : t + 1], input_pos=torch.tensor([t])))
    assert max_err(torch.cat(steps, dim=1), full) < ATOL
    # setup_caches again resets: a new prompt does not see the old keys
    model.setup_caches(max_batch_size=2, max_seq_length=32)
    other = ids.flip(1)
    assert max_err(model(other[:, :8], input_pos=torch.arange(8)), model(other[:, :8])) < ATOL


def test_batch_smaller_than_the_cache(small) -> None:
    _, model = small
    ids = torch.randint(0, SMALL.vocab_size, (1, 6), generator=torch.Generator().manual_seed(5))
    model.setup_caches(max_batch_size=4, max_seq_length=16)
    prefill = model(ids[:, :5], input_pos=torch.arange(5))
    step = model(ids[:, 5:], input_pos=torch.tensor([5]))
    assert max_err(torch.cat([prefill, step], dim=1), model(ids)) < ATOL


# -- padding ---------------------------------------------------------------------


def left_padded(rows: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, longest - len(row) :] = row
        mask[b, longest - len(row) :] = 1
    return ids, mask


def test_left_padded_batch_equals_unpadded_rows_and_hf(small) -> None:
    hf, model = small
    gen = torch.Generator().manual_seed(6)
    rows = [torch.randint(0, SMALL.vocab_size, (n,), generator=gen) for n in (11, 4, 8)]
    ids, mask = left_padded(rows, pad=SMALL.eos_token_id)
    out = model(ids, attention_mask=mask)
    assert torch.isfinite(out).all(), "logits at padded positions must be finite"
    ref = hf_logits(hf, ids, mask)
    real = mask.bool()
    assert max_err(out[real], ref[real]) < ATOL
    for b, row in enumerate(rows):
        alone = model(row[None])
        assert max_err(out[b, -len(row) :], alone[0]) < ATOL, f"row {b} changed by padding"


def test_left_padded_batch_with_cache_equals_unpadded_rows(small) -> None:
    _, model = small
    gen = torch.Generator().manual_seed(7)
    rows = [torch.randint(0, SMALL.vocab_size, (n,), generator=gen) for n in (3, 9)]
    ids, mask = left_padded(rows, pad=0)
    new = torch.randint(0, SMALL.vocab_size, (2, 4), generator=gen)  # tokens appended to both rows
    T = ids.size(1)
    model.setup_caches(max_batch_size=2, max_seq_length=T + 4)
    steps = [model(ids, attention_mask=mask, input_pos=torch.arange(T))[:, -1:]]
    for t in range(4):
        full_mask = torch.cat([mask, torch.ones(2, t + 1, dtype=torch.long)], dim=1)
        steps.append(model(new[:, t : t + 1], attention_mask=full_mask, input_pos=torch.tensor([T + t])))
    cached = torch.cat(steps, dim=1)  # (2, 5, V): last prompt token, then the four new ones
    for b, row in enumerate(rows):
        alone = model(torch.cat([row, new[b]])[None])[0, len(row) - 1 :]
        assert max_err(cached[b], alone) < ATOL, f"row {b} changed by padding in the cache"


# -- generation ------------------------------------------------------------------


def hf_greedy(hf: GPT2LMHeadModel, prompts: list[list[int]], max_new_tokens: int,
              eos: int) -> list[list[int]]:
    ids, mask = left_padded([torch.tensor(p) for p in prompts], pad=eos)
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=eos, eos_token_id=eos)
    result = []
    for row in out[:, ids.size(1) :].tolist():
        result.append(row[: row.index(eos) + 1] if eos in row else row)  # zoo stops after <|endoftext|>
    return result


@pytest.mark.parametrize("prompts", [[[5, 17, 42]], [[1, 2, 3, 4, 5, 6, 7], [9, 8], [100, 200, 30, 7]]],
                         ids=["single", "padded-batch"])
def test_generate_greedy_equals_hf_generate(small, prompts: list[list[int]]) -> None:
    hf, model = small
    expected = hf_greedy(hf, prompts, 16, SMALL.eos_token_id)
    assert zoo.generate(model, prompts, 16) == expected
    assert zoo.generate(model, prompts, 16, use_cache=False) == expected


# -- bad input -------------------------------------------------------------------

V = SMALL.vocab_size
BAD_CALLS = {
    "float ids": lambda m: m(torch.zeros(1, 3)),
    "1-D ids": lambda m: m(torch.zeros(3, dtype=torch.long)),
    "empty": lambda m: m(torch.zeros(1, 0, dtype=torch.long)),
    "id too large": lambda m: m(torch.tensor([[1, V]])),
    "negative id": lambda m: m(torch.tensor([[-1, 2]])),
    "too long": lambda m: m(torch.zeros(1, SMALL.n_positions + 1, dtype=torch.long)),
    "ids on another device": lambda m: m(torch.zeros(1, 3, dtype=torch.long, device="meta")),
    "numpy ids": lambda m: m(np.zeros((1, 3), dtype=np.int64)),
    "mask shape": lambda m: m(torch.zeros(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 4)),
    "mask values": lambda m: m(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.tensor([[0, 2, 1]])),
    "empty mask row": lambda m: m(torch.zeros(2, 2, dtype=torch.long),
                                  attention_mask=torch.tensor([[1, 1], [0, 0]])),
    "input_pos without cache": lambda m: m(torch.zeros(1, 2, dtype=torch.long), input_pos=torch.arange(2)),
    "cache too long": lambda m: m.setup_caches(1, SMALL.n_positions + 1),
    "cache batch 0": lambda m: m.setup_caches(0, 8),
}
BAD_CACHED_CALLS = {
    "input_pos length": lambda m: m(torch.zeros(1, 2, dtype=torch.long), input_pos=torch.arange(3)),
    "input_pos past cache": lambda m: m(torch.zeros(1, 1, dtype=torch.long), input_pos=torch.tensor([8])),
    "batch past cache": lambda m: m(torch.zeros(3, 1, dtype=torch.long), input_pos=torch.tensor([0])),
    "float input_pos": lambda m: m(torch.zeros(1, 1, dtype=torch.long), input_pos=torch.tensor([0.0])),
}


@pytest.mark.parametrize("name", list(BAD_CALLS) + list(BAD_CACHED_CALLS))
def test_bad_inputs_raise_invalid_input_error(name: str) -> None:
    model = zoo.load("cpu", config=SMALL)
    call = BAD_CALLS.get(name)
    if call is None:
        model.setup_caches(max_batch_size=2, max_seq_length=8)
        call = BAD_CACHED_CALLS[name]
    with pytest.raises(zoo.InvalidInputError):
        call(model)


# -- weights ---------------------------------------------------------------------


def test_weights_round_trip_losslessly(small) -> None:
    hf, model = small
    exported = model.export_weights()
    assert set(exported) == set(canonical_shapes(SMALL)), "canonical names, and no lm_head"
    source = to_canonical(hf.state_dict(), SMALL, HF)
    for name, tensor in exported.items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, source[name]), f"{name} differs from what was imported"
    again = GPT.build(SMALL)
    again.import_weights(exported)
    for name, tensor in again.export_weights().items():
        assert torch.equal(tensor, exported[name]), f"{name} changed on the round trip"


def test_import_accepts_numpy_arrays(small) -> None:
    _, model = small
    from_numpy = GPT.build(SMALL)
    from_numpy.import_weights({name: t.numpy().copy() for name, t in model.export_weights().items()})
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(8))
    assert torch.equal(from_numpy(ids), model(ids))


def test_import_names_missing_unexpected_and_misshaped_keys(small) -> None:
    _, model = small
    fresh = GPT(SMALL)
    weights = {name: t.clone() for name, t in model.export_weights().items()}
    with pytest.raises(zoo.WeightsMismatchError, match=r"ln_f.bias is \[3\]"):
        fresh.import_weights({**weights, "ln_f.bias": torch.zeros(3)})
    with pytest.raises(zoo.WeightsMismatchError, match=r"missing.*wpe\.weight"):
        fresh.import_weights({k: v for k, v in weights.items() if k != "wpe.weight"})
    with pytest.raises(zoo.WeightsMismatchError, match=r"unexpected.*h\.0\.attn\.c_attn\.scale"):
        fresh.import_weights({**weights, "h.0.attn.c_attn.scale": torch.ones(1)})
    with pytest.raises(zoo.WeightsError, match="ties"):
        fresh.import_weights({**weights, "lm_head.weight": weights["wte.weight"] + 1})


def test_load_from_a_save_pretrained_folder(small, tmp_path: Path) -> None:
    hf, _ = small
    hf.save_pretrained(tmp_path)
    model = zoo.load("cpu", weights=tmp_path)
    assert model.config == SMALL
    ids = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(9))
    assert max_err(model(ids), hf_logits(hf, ids)) < ATOL


# -- threads and the torch-free core ---------------------------------------------


def test_blas_threads_follow_the_setting_and_are_restored(small, monkeypatch: pytest.MonkeyPatch) -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _, model = small

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}

    seen: list[set[int]] = []
    inner = model.forward_numpy

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return inner(*args, **kwargs)

    monkeypatch.setattr(model, "forward_numpy", spy)
    monkeypatch.setattr(model, "threads", 1)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        model(torch.zeros(1, 2, dtype=torch.long))
        after = blas_threads()
    assert seen == [{1}], f"BLAS ran with {seen} threads, but should be 1"
    assert after == {2}, "the caller's BLAS thread count was not restored"


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # any import of torch now fails
import numpy as np
import zoo
from plugins.cpu.model import GPT
from zoo.weight_map import canonical_shapes

config = zoo.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4)
rng = np.random.default_rng(0)
model = GPT(config)
shapes = canonical_shapes(config)
model.import_weights({k: (0.1 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()})
ids = rng.integers(0, 50, (2, 6))
full = model.forward_numpy(ids)
model.setup_caches(2, 8)
cached = np.concatenate([model.forward_numpy(ids[:, :5], input_pos=np.arange(5)),
                         model.forward_numpy(ids[:, 5:], input_pos=np.array([5]))], axis=1)
assert full.shape == (2, 6, 50) and full.dtype == np.float32
assert np.abs(full - cached).max() < 1e-5, np.abs(full - cached).max()
print("ok")
"""


def test_the_numpy_core_runs_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", TORCH_FREE], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
