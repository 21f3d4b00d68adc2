"""``zoo.load`` of a Hugging Face hub id, from a hub cache built as ``huggingface_hub`` writes it, offline."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from load_helpers import ATOL, CONFIG, VARIANTS, logits

import zoo
from zoo import WeightsSourceError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


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



@pytest.fixture
def hub_cache(tmp_path, pretrained, monkeypatch) -> Path:
    """A hub cache holding ``org/name`` (files linked into blobs/) and ``gpt2`` (plain files)."""
    build_hub_cache(tmp_path, "org/name", pretrained, blobs=True)
    build_hub_cache(tmp_path, "gpt2", pretrained, blobs=False)
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


def test_hub_cache_is_found_through_the_environment_alone(tmp_path, pretrained, expected, ids):
    """A user sets HF_HUB_CACHE and HF_HUB_OFFLINE before Python starts; nothing is patched."""
    build_hub_cache(tmp_path / "cache", "org/name", pretrained, blobs=True)
    ids_path, out_path = tmp_path / "ids.pt", tmp_path / "logits.pt"
    torch.save(ids, ids_path)
    code = ("import torch, zoo; torch.set_num_threads(1); m = zoo.load('pure', weights='org/name'); "
            f"torch.save(m(torch.load({str(ids_path)!r}, weights_only=True)).detach(), {str(out_path)!r})")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    torch.testing.assert_close(torch.load(out_path, weights_only=True), expected, atol=ATOL, rtol=0)


def test_hub_id_not_in_the_cache_says_the_hub_cannot_be_reached(hub_cache):
    with pytest.raises(WeightsSourceError) as info:
        zoo.load("pure", weights="someone/missing-model")
    message = str(info.value)
    assert "'someone/missing-model' is no local file or folder" in message
    assert "hub cannot be reached" in message and "HF_HUB_OFFLINE" in message and str(hub_cache) in message
    assert "weights='/path/to/missing-model'" in message and "save_pretrained" in message
    assert "zoo convert" in message and "HF_HUB_CACHE" in message and "--weights random" in message
    assert isinstance(info.value, OSError)
