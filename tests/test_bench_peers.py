"""The peers of ``zoo bench``: how they are named, found missing, and whether each one decodes GPT-2 greedily.

A peer that is installed here runs end to end on a tiny GPT-2 and must pick
the tokens Hugging Face picks at float32; one that is not is skipped, naming
the command that installs it.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.bench.peers import PEERS, Peer, UnknownPeerError, get_peer
from zoo.bench.peers._common import PeerRunner
from zoo.bench.runners import Runner

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# GPT-2's tokenizer (llama.cpp and CTranslate2 both load one), a tiny body, and weights large enough that
# greedy decoding does not repeat one token forever
CONFIG = zoo.GPT2Config(vocab_size=50257, n_positions=64, n_embd=64, n_layer=2, n_head=4, initializer_range=0.1)
PROMPT_TOKENS, NEW_TOKENS = 5, 12

RUNS = [(peer.name, precision) for peer in PEERS.values() for precision in peer.precisions]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("peers") / "tiny-gpt2"
    GPT2LMHeadModel(CONFIG.to_hf()).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers-work")


@pytest.fixture(scope="module")
def prompt() -> np.ndarray:
    return np.random.default_rng(0).integers(0, CONFIG.vocab_size, (3, PROMPT_TOKENS), dtype=np.int64)


@pytest.fixture(scope="module")
def reference_tokens(weights_dir: Path, prompt: np.ndarray) -> np.ndarray:
    """Hugging Face's greedy tokens, each step recomputed over the whole sequence (no KV cache, no EOS rule)."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(weights_dir).eval()
    ids = torch.as_tensor(prompt)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[:, PROMPT_TOKENS:].numpy()


def _require(name: str) -> Peer:
    peer = get_peer(name)
    reason = peer.missing()
    if reason:
        pytest.skip(f"peer {name} is not usable here: {reason}")
    return peer


# --- names, precisions, installs: no engine needed ---------------------------------------------------


def test_get_peer_finds_each_peer_by_its_name():
    for name, peer in PEERS.items():
        assert get_peer(name) is peer
        assert peer.name == name


def test_an_unknown_peer_lists_the_known_ones():
    with pytest.raises(UnknownPeerError) as info:
        get_peer("tensorrt")
    assert isinstance(info.value, zoo.ZooError) and isinstance(info.value, LookupError)
    for name in PEERS:
        assert name in str(info.value)


def test_a_misspelled_peer_suggests_the_close_one():
    with pytest.raises(UnknownPeerError, match=r"did you mean 'llama\.cpp'"):
        get_peer("llamacpp")


def test_every_precision_maps_to_a_dtype_family_the_zoo_knows():
    families = {"float32", "bfloat16", "float16", "int8", "int4"}
    for peer in PEERS.values():
        assert peer.precisions, peer.name
        assert set(peer.precisions.values()) <= families, peer


def test_every_install_hint_names_an_extra_that_exists():
    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for peer in PEERS.values():
        named = re.findall(r"gpt2-zoo\[([\w-]+)\]", peer.install)
        assert named, f"{peer.name}: install hint {peer.install!r} names no extra"
        assert set(named) <= set(extras), f"{peer.name}: {named} not among the extras {sorted(extras)}"


def _never_called(*args: object) -> Runner:
    raise AssertionError("make_runner should not be called")


def test_a_peer_whose_module_is_absent_is_missing_with_the_install_hint():
    peer = Peer("fake", {"float32": "float32"}, "pip install 'gpt2-zoo[fake]'", _never_called,
                ("zoo_test_no_such_engine",))
    reason = peer.missing()
    assert reason is not None
    assert "zoo_test_no_such_engine is not installed" in reason
    assert "pip install 'gpt2-zoo[fake]'" in reason


def test_a_peer_whose_module_fails_to_import_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "zoo_test_broken_engine.py").write_text("import zoo_test_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zoo_test_broken_engine", raising=False)
    peer = Peer("fake", {"float32": "float32"}, "pip install fake", _never_called, ("zoo_test_broken_engine",))
    reason = peer.missing()
    assert reason is not None
    assert "zoo_test_broken_engine is installed but fails to import" in reason
    assert "zoo_test_no_such_dependency" in reason


def test_a_peer_with_its_modules_present_is_not_missing():
    peer = Peer("fake", {"float32": "float32"}, "pip install fake", _never_called, ("json", "numpy"))
    assert peer.missing() is None


def test_a_peer_that_needs_a_newer_release_says_which_and_the_fix():
    peer = Peer("fake", {"float32": "float32"}, "pip install fake", _never_called, ("json",), {"numpy": "99.0"})
    assert peer.missing() == (f"the fake peer needs numpy >= 99.0, and this is numpy {np.__version__}: "
                              "pip install 'numpy>=99.0'")
    assert dataclasses.replace(peer, versions={"numpy": "1.0"}).missing() is None


@pytest.mark.parametrize("name", list(PEERS))
def test_a_precision_the_peer_lacks_is_refused_with_the_ones_it_offers(name: str, weights_dir: Path,
                                                                       work_dir: Path):
    peer = get_peer(name)
    with pytest.raises(zoo.CapabilityError) as info:
        peer.make_runner(weights_dir, work_dir, "int3", "cpu", 1)
    for precision in peer.precisions:
        assert precision in str(info.value)


@pytest.mark.parametrize("name", list(PEERS))
def test_a_zoo_dtype_family_selects_the_peers_own_precision(name: str, weights_dir: Path, work_dir: Path):
    peer = get_peer(name)
    own = next(iter(peer.precisions))
    runner = peer.make_runner(weights_dir, work_dir, peer.precisions[own], "cpu", 1)
    assert isinstance(runner, Runner)
    assert runner.precision == own


@pytest.mark.parametrize("name", list(PEERS))
def test_peers_refuse_a_device_other_than_the_cpu(name: str, weights_dir: Path, work_dir: Path):
    peer = get_peer(name)
    with pytest.raises(zoo.CapabilityError, match="CPU only"):
        peer.make_runner(weights_dir, work_dir, next(iter(peer.precisions)), "cuda", 1)


# --- each installed peer, end to end -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "precision"), RUNS, ids=[f"{n}-{p}" for n, p in RUNS])
def test_peer_decodes_greedily_with_one_tick_per_step(name: str, precision: str, weights_dir: Path,
                                                      work_dir: Path, prompt: np.ndarray,
                                                      reference_tokens: np.ndarray):
    peer = _require(name)
    runner = peer.make_runner(weights_dir, work_dir, precision, "cpu", 1)
    assert isinstance(runner, PeerRunner)
    runner.prepare()
    runner.load()
    runner.prefill(prompt)  # leaves nothing behind that changes the decoding after it
    ticks: list[int] = []
    tokens = runner.greedy(prompt, NEW_TOKENS, lambda: ticks.append(1))
    assert len(ticks) == NEW_TOKENS
    assert tokens.shape == (len(prompt), NEW_TOKENS)
    assert ((tokens >= 0) & (tokens < CONFIG.vocab_size)).all()
    size = runner.weight_bytes()
    assert size is not None and size > 0
    if peer.precisions[precision] == "float32":
        np.testing.assert_array_equal(tokens, reference_tokens, err_msg=f"{name} {precision} greedy tokens")
        assert size >= 0.95 * 4 * CONFIG.n_params, f"{name} {precision}: {size} bytes is too few for float32"
    else:
        assert size < 0.75 * 4 * CONFIG.n_params, f"{name} {precision}: {size} bytes is hardly below float32"
        # a reduced precision may flip a near tie, but not most of the first step's choices
        assert (tokens[:, 0] == reference_tokens[:, 0]).mean() >= 2 / 3


@pytest.mark.parametrize("name", list(PEERS))
def test_peer_decodes_one_sequence_as_it_decodes_it_in_a_batch(name: str, weights_dir: Path, work_dir: Path,
                                                               prompt: np.ndarray, reference_tokens: np.ndarray):
    peer = _require(name)
    runner = peer.make_runner(weights_dir, work_dir, next(iter(peer.precisions)), "cpu", 1)
    assert isinstance(runner, PeerRunner)
    runner.prepare()
    runner.load()
    ticks: list[int] = []
    tokens = runner.greedy(prompt[1:2], NEW_TOKENS, lambda: ticks.append(1))
    assert len(ticks) == NEW_TOKENS
    np.testing.assert_array_equal(tokens, reference_tokens[1:2])


@pytest.mark.parametrize("name", list(PEERS))
def test_a_second_prepare_reuses_the_converted_weights(name: str, weights_dir: Path, work_dir: Path):
    peer = _require(name)
    precision = next(iter(peer.precisions))
    peer.make_runner(weights_dir, work_dir, precision, "cpu", 1).prepare()
    written = {p: p.stat().st_mtime_ns for p in (work_dir / "").rglob("*") if p.is_file()}
    assert written
    peer.make_runner(weights_dir, work_dir, precision, "cpu", 1).prepare()
    assert {p: p.stat().st_mtime_ns for p in (work_dir / "").rglob("*") if p.is_file()} == written
