"""``zoo.load`` from every weight source, checked against ``GPT2LMHeadModel`` on the same weights,
and the sources it refuses (hub ids: ``test_load_hub``; random weights, devices, dtypes and
streaming: ``test_load_options``)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from load_helpers import ATOL, CONFIG, VARIANTS, logits
from transformers import GPT2LMHeadModel

import zoo
from zoo import WeightsError, WeightsSourceError
from zoo.weight_map import NANOGPT, from_canonical, to_canonical


def nanogpt_state_dict(reference: GPT2LMHeadModel) -> dict[str, torch.Tensor]:
    """What nanoGPT's ``model.state_dict()`` holds: nn.Linear orientation, mask buffers, lm_head."""
    canonical = to_canonical(reference.state_dict(), CONFIG)
    sd = {k: v.contiguous() for k, v in from_canonical(canonical, NANOGPT)}
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    mask = torch.tril(torch.ones(CONFIG.n_positions, CONFIG.n_positions))
    for i in range(CONFIG.n_layer):
        sd[f"transformer.h.{i}.attn.bias"] = mask.view(1, 1, CONFIG.n_positions, CONFIG.n_positions)
    return sd


def nanogpt_checkpoint(sd: dict[str, torch.Tensor]) -> dict:
    """The dict nanoGPT's train.py saves as ckpt.pt."""
    model_args = {"n_layer": CONFIG.n_layer, "n_head": CONFIG.n_head, "n_embd": CONFIG.n_embd,
                  "block_size": CONFIG.n_positions, "bias": True, "vocab_size": CONFIG.vocab_size,
                  "dropout": 0.0}
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4)}},
                 "param_groups": [{"lr": 6e-4, "betas": (0.9, 0.95), "params": [0]}]}
    return {"model": sd, "optimizer": optimizer, "model_args": model_args, "iter_num": 3,
            "best_val_loss": torch.tensor(2.5), "config": {"dataset": "shakespeare_char"}}


@dataclass
class GPTConfig:
    """build-nanogpt's config dataclass, which its train_gpt2.py pickles into every checkpoint."""

    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768


@pytest.fixture(scope="module")
def sources(tmp_path_factory, reference) -> dict[str, tuple[object, dict]]:
    """Every way to hand weights to ``zoo.load``: name -> (weights, extra keyword arguments)."""
    root = tmp_path_factory.mktemp("weights")
    state = reference.state_dict()
    out: dict[str, tuple[object, dict]] = {}

    folder = root / "pretrained"
    reference.save_pretrained(folder)
    out["save_pretrained folder"] = (folder, {})
    out["save_pretrained folder as str"] = (str(folder), {})

    sharded = root / "sharded"
    reference.save_pretrained(sharded, max_shard_size="20KB")
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    out["sharded save_pretrained"] = (sharded, {})

    # transformers 5 writes safetensors even when asked for safe_serialization=False,
    # so the legacy pytorch_model.bin folders are written as transformers 4 wrote them
    binary = root / "bin"
    binary.mkdir()
    shutil.copy(folder / "config.json", binary)
    torch.save(state, binary / "pytorch_model.bin")
    out["pytorch_model.bin folder"] = (binary, {})

    binary_sharded = root / "bin-sharded"
    binary_sharded.mkdir()
    shutil.copy(folder / "config.json", binary_sharded)
    keys = list(state)
    weight_map = {}
    for n, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:]), start=1):
        name = f"pytorch_model-0000{n}-of-00002.bin"
        torch.save({k: state[k].clone() for k in part}, binary_sharded / name)
        weight_map.update(dict.fromkeys(part, name))
    (binary_sharded / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    out["sharded pytorch_model.bin folder"] = (binary_sharded, {})

    out[".safetensors file with config.json"] = (folder / "model.safetensors", {})
    alone = root / "alone"
    alone.mkdir()
    shutil.copy(folder / "model.safetensors", alone / "weights.safetensors")
    out[".safetensors file alone, config given"] = (alone / "weights.safetensors", {"config": CONFIG})

    plain = root / "plain"
    plain.mkdir()
    torch.save(state, plain / "state.pt")
    out["plain .pt state dict, config given"] = (plain / "state.pt", {"config": CONFIG})
    shutil.copy(plain / "state.pt", folder / "state.pt")
    out["plain .pt state dict with config.json"] = (folder / "state.pt", {})

    nanogpt = nanogpt_state_dict(reference)
    torch.save(nanogpt_checkpoint(nanogpt), root / "ckpt.pt")
    out["nanoGPT checkpoint"] = (root / "ckpt.pt", {})
    compiled = {"_orig_mod." + k: v for k, v in nanogpt.items()}
    torch.save(nanogpt_checkpoint(compiled), root / "ckpt-compiled.pt")
    out["nanoGPT checkpoint of a compiled model"] = (root / "ckpt-compiled.pt", {})
    build_config = GPTConfig(block_size=CONFIG.n_positions, vocab_size=CONFIG.vocab_size,
                             n_layer=CONFIG.n_layer, n_head=CONFIG.n_head, n_embd=CONFIG.n_embd)
    torch.save({"model": compiled, "config": build_config, "step": 10, "val_loss": 3.1}, root / "model_00010.pt")
    out["build-nanogpt checkpoint"] = (root / "model_00010.pt", {})
    torch.save(nanogpt, root / "nanogpt-state.pt")
    out["nanoGPT state dict, layout given"] = (root / "nanogpt-state.pt", {"config": CONFIG, "layout": "nanogpt"})

    out["in-memory HF state dict"] = (state, {"config": CONFIG})
    out["in-memory GPT2Model state dict"] = (reference.transformer.state_dict(), {"config": CONFIG})
    out["in-memory nanoGPT checkpoint"] = (nanogpt_checkpoint(compiled), {})
    out["in-memory canonical state dict"] = (
        dict(to_canonical(state, CONFIG)), {"config": CONFIG, "layout": "canonical"})
    return out


SOURCE_NAMES = [
    "save_pretrained folder", "save_pretrained folder as str", "sharded save_pretrained",
    "pytorch_model.bin folder", "sharded pytorch_model.bin folder",
    ".safetensors file with config.json", ".safetensors file alone, config given",
    "plain .pt state dict, config given", "plain .pt state dict with config.json",
    "nanoGPT checkpoint", "nanoGPT checkpoint of a compiled model", "build-nanogpt checkpoint", "nanoGPT state dict, layout given",
    "in-memory HF state dict", "in-memory GPT2Model state dict", "in-memory nanoGPT checkpoint",
    "in-memory canonical state dict",
]


def test_every_source_is_tested(sources):
    assert sorted(sources) == sorted(SOURCE_NAMES)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_logits_match_hugging_face(sources, expected, ids, source, variant):
    weights, kwargs = sources[source]
    model = zoo.load(variant, weights=weights, **kwargs)
    assert model.config == CONFIG
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.float32)
    got = logits(model, ids)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)

# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["./no/such/folder", "../up", "/no/such/model.safetensors", "~/no/such", "missing.safetensors",
             "ckpt.pt", "a/b/c", "my model", Path("nowhere")]
)
def test_a_local_path_that_does_not_exist_is_a_clear_error(path):
    with pytest.raises(WeightsSourceError, match=f"no such file or folder: '{os.fspath(path)}'"):
        zoo.load("pure", weights=path)


CODE_RAN: list[str] = []


def _run_code(tag: str) -> None:
    CODE_RAN.append(tag)


class Payload:
    """Unpickling this would call a function: the kind of file weights_only=True exists for."""

    def __reduce__(self):
        return (_run_code, ("unpickled",))


@pytest.mark.parametrize("name, zip_format", [("payload.pt", True), ("legacy.pt", False),
                                              ("pytorch_model.bin", True)])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, name, zip_format):
    torch.save({"transformer.wte.weight": torch.zeros(3), "extra": Payload()}, tmp_path / name,
               _use_new_zipfile_serialization=zip_format)
    target = tmp_path / name if name.endswith(".pt") else tmp_path  # a file, or a save_pretrained folder
    with pytest.raises(WeightsSourceError, match="weights_only") as info:
        zoo.load("pure", weights=target)
    assert "refused" in str(info.value) and "Unsupported global" in str(info.value)
    assert CODE_RAN == []
    torch.load(tmp_path / name, weights_only=False)  # what a careless loader would have done
    assert CODE_RAN == ["unpickled"]
    CODE_RAN.clear()


def test_config_given_for_the_wrong_checkpoint_reports_the_mismatch(sources):
    with pytest.raises(zoo.WeightsMismatchError, match="mis-shaped"):
        zoo.load("pure", weights=sources["save_pretrained folder"][0], config=CONFIG.replace(n_positions=32))


def test_revision_applies_to_hub_ids_only(sources):
    for weights in (sources["save_pretrained folder"][0], sources["in-memory HF state dict"][0]):
        with pytest.raises(WeightsError, match="revision='v1' applies to Hugging Face hub ids"):
            zoo.load("pure", weights=weights, config=CONFIG, revision="v1")
