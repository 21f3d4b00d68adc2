"""Small valid weight files of every format, and the ways the hostile-file tests read and time them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo import GPT2Config, ZooError
from zoo._convert import convert
from zoo._weights import read_weights
from zoo.formats import FORMATS
from zoo.weight_map import canonical_shapes

CONFIG = GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4)
#: each reader, as the file it reads: (format zoo convert writes, file name)
READERS = {"hf": "folder", "safetensors": "m.safetensors", "nanogpt": "m.pt", "llmc": "m.bin", "gguf": "m.gguf"}
#: a refusal must come this fast, however large the sizes a header declares
SECONDS = 5.0


def canonical_weights(config: GPT2Config = CONFIG, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in canonical_shapes(config).items()}


def build(fmt: str, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> Path:
    """A valid small file (or folder) of ``fmt`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return convert(weights or canonical_weights(), folder / READERS[fmt], to=fmt, config=CONFIG,
                   layout="canonical", force=True)


def read_all(source: Any, **kwargs: Any) -> tuple[GPT2Config, dict[str, tuple[int, ...]]]:
    """Read ``source`` as ``zoo convert`` does, every tensor; check each is the shape and kind declared."""
    config, weights = read_weights(source, dequantize=True, **kwargs)
    shapes = canonical_shapes(config)
    assert set(weights) == set(shapes)
    for name in weights:
        tensor = torch.as_tensor(weights[name])
        assert tuple(tensor.shape) == shapes[name], name
        assert tensor.is_floating_point(), name
    return config, shapes


def refused(
    call: Callable[[], Any], error: type[ZooError] | tuple[type[ZooError], ...] = ZooError, match: str | None = None
) -> ZooError:
    """The named error ``call`` raises, raised within :data:`SECONDS`."""
    start = time.perf_counter()
    try:
        call()
    except ZooError as exc:
        elapsed = time.perf_counter() - start
        assert isinstance(exc, error), f"{type(exc).__name__}: {exc}"
        assert match is None or match in str(exc), str(exc)
        assert elapsed < SECONDS, f"refused after {elapsed:.1f}s"
        return exc
    raise AssertionError(f"{call} was accepted")


def formats() -> list[str]:
    assert set(READERS) == set(FORMATS)  # a new format gets a file here, and so a fuzz test
    return list(READERS)
