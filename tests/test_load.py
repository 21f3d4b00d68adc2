"""``zoo.load`` from every weight source, checked against ``GPT2LMHeadModel`` on the same weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import GPT2LMHeadModel

import zoo
from zoo import CapabilityError, GPT2Config, WeightsError, WeightsSourceError
from zoo.weight_map import NANOGPT, canonical_shapes, from_canonical, to_canonical

CONFIG = GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4)
VARIANTS = ["pure", "hf"]
ATOL = 1e-5  # float32 max-abs logit error against Hugging Face, as the issue asks
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def reference_model(config: GPT2Config, seed: int) -> GPT2LMHeadModel:
    """A random ``GPT2LMHeadModel`` with eager attention in eval mode; every tensor perturbed."""
    torch.manual_seed(seed)
    hf_config = config.to_hf()
    hf_config._attn_implementation = "eager"
    model = GPT2LMHeadModel(hf_config).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a mis-mapped one shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out


@pytest.fixture(scope="module")
def reference() -> GPT2LMHeadModel:
    return reference_model(CONFIG, seed=0)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, CONFIG.vocab_size, (2, 11), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def expected(reference, ids) -> torch.Tensor:
    return logits(reference, ids)


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


def build_hub_cache(cache: Path, repo_id: str, folder: Path, *, blobs: bool) -> Path:
    """The layout huggingface_hub writes: refs/main -> commit, snapshots/<commit>/..., blobs/<sha256>."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name in ("config.json", "model.safetensors"):
        if blobs:  # files are links into blobs/, named by their hash, as on a real machine
            data = (folder / name).read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(exist_ok=True)
            blob.write_bytes(data)
            (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
        else:
            shutil.copy(folder / name, snapshot / name)
    return snapshot


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


# -- the Hugging Face hub cache ---------------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path, sources, monkeypatch) -> Path:
    """A hub cache holding ``org/name`` (files linked into blobs/) and ``gpt2`` (plain files)."""
    folder = sources["save_pretrained folder"][0]
    build_hub_cache(tmp_path, "org/name", folder, blobs=True)
    build_hub_cache(tmp_path, "gpt2", folder, blobs=False)
    # huggingface_hub reads these variables once, at import: set both the variables and its constants
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def test_hub_cache_layout_is_what_huggingface_hub_resolves(hub_cache):
    snapshot = hub_cache / "models--org--name" / "snapshots" / COMMIT
    assert Path(huggingface_hub.snapshot_download("org/name")) == snapshot
    cached = huggingface_hub.try_to_load_from_cache("org/name", "model.safetensors")
    assert Path(cached) == snapshot / "model.safetensors" and Path(cached).resolve().parent.name == "blobs"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("repo_id", ["org/name", "gpt2"])
def test_hub_id_loads_from_the_cache_offline(hub_cache, expected, ids, variant, repo_id):
    model = zoo.load(variant, weights=repo_id)
    assert model.config == CONFIG  # from the cached config.json, not the gpt2 preset
    torch.testing.assert_close(logits(model, ids), expected, atol=ATOL, rtol=0)


def test_hub_revision_is_resolved_in_the_cache(hub_cache, expected, ids):
    model = zoo.load("pure", weights="org/name", revision=COMMIT)
    torch.testing.assert_close(logits(model, ids), expected, atol=ATOL, rtol=0)
    with pytest.raises(WeightsSourceError, match="'org/name' is no local file or folder"):
        zoo.load("pure", weights="org/name", revision="v2")


def test_hub_cache_is_found_through_the_environment_alone(tmp_path, sources, expected, ids):
    """A user sets HF_HUB_CACHE and HF_HUB_OFFLINE before Python starts; nothing is patched."""
    build_hub_cache(tmp_path / "cache", "org/name", sources["save_pretrained folder"][0], blobs=True)
    ids_path, out_path = tmp_path / "ids.pt", tmp_path / "logits.pt"
    torch.save(ids, ids_path)
    code = ("import torch, zoo; torch.set_num_threads(1); m = zoo.load('pure', weights='org/name'); "
            f"torch.save(m(torch.load({str(ids_path)!r})).detach(), {str(out_path)!r})")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    torch.testing.assert_close(torch.load(out_path), expected, atol=ATOL, rtol=0)


def test_hub_id_not_in_the_cache_says_the_hub_cannot_be_reached(hub_cache):
    with pytest.raises(WeightsSourceError) as info:
        zoo.load("pure", weights="someone/missing-model")
    message = str(info.value)
    assert "'someone/missing-model' is no local file or folder" in message
    assert "hub cannot be reached" in message and "HF_HUB_OFFLINE" in message and str(hub_cache) in message
    assert "weights='/path/to/missing-model'" in message and "save_pretrained" in message
    assert isinstance(info.value, OSError)


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
def test_dtype_by_name_or_object(sources, ids, expected_logits_f64, variant, dtype, expected):
    model = zoo.load(variant, weights=sources["save_pretrained folder"][0], dtype=dtype)
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
