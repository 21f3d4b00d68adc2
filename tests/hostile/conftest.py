"""The hostile-file tests' valid small files, written once per session and copied before a test corrupts them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hostile_files import build, formats


@pytest.fixture(scope="session")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("originals")
    return {fmt: build(fmt, root / fmt) for fmt in formats()}


@pytest.fixture
def copy(originals: dict[str, Path], tmp_path: Path):
    """``copy(fmt)``: a fresh copy of the valid file (or folder) of ``fmt``, to corrupt."""

    def make(fmt: str) -> Path:
        source = originals[fmt]
        target = tmp_path / source.name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
        return target

    return make
