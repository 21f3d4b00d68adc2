"""A state dict's config: given, stored with it, in a ``config.json`` beside it, or inferred from its shapes.

Shared by the formats that hold a state dict in a layout the caller may choose
(a ``save_pretrained`` folder, safetensors, torch files) and by in-memory state
dicts; llm.c and GGUF files carry their config in their own header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._config import PRESETS, GPT2Config
from .._errors import ConfigError
from ..weight_map import CanonicalWeights, Layout, to_canonical

__all__ = ["canonical", "infer_config"]

log = logging.getLogger("zoo")

_LAYER = re.compile(r"(?:^|\.)h\.(\d+)\.")


def canonical(
    tensors: Mapping[str, Any],
    layout: Layout,
    *,
    config: GPT2Config | None,
    found: GPT2Config | None,
    beside: Path | None,
) -> tuple[GPT2Config, CanonicalWeights]:
    """The config and checked canonical view of ``tensors``.

    The config is the first of: ``config`` (the caller's), ``found`` (stored
    with the weights), the ``config.json`` at ``beside``, the one inferred from
    the tensor shapes.
    """
    if config is None and found is None and beside is not None and beside.is_file():
        found = GPT2Config.from_json_file(beside)
    config = config or found or infer_config(tensors, layout)
    return config, to_canonical(tensors, config, layout)


def infer_config(source: Mapping[str, Any], layout: Layout) -> GPT2Config:
    """Sizes from tensor shapes; the head count only where the width is a GPT-2 preset's."""

    def shape(name: str) -> tuple[int, ...]:
        for key in source:
            if layout.strip(key).removeprefix(layout.body_prefix) == name:
                shape_of = getattr(source, "shape_of", None)
                return tuple(shape_of(key)) if shape_of else tuple(source[key].shape)
        raise ConfigError(
            f"cannot infer the config: the weights hold no {name!r} tensor "
            f"({layout.name} layout); pass config=zoo.GPT2Config(...)"
        )

    wte, wpe = shape("wte.weight"), shape("wpe.weight")
    if len(wte) != 2 or len(wpe) != 2:
        raise ConfigError(
            f"cannot infer the config: wte is {list(wte)} and wpe is {list(wpe)}, expected 2-D "
            "embeddings; pass config=zoo.GPT2Config(...)"
        )
    vocab_size, n_embd = wte
    layers = {int(m.group(1)) for key in source if (m := _LAYER.search(key))}
    if not layers:
        raise ConfigError("cannot infer the config: the weights hold no h.{i}. layers")
    widths = {p.n_embd: p.n_head for p in PRESETS.values()}
    if n_embd not in widths:
        raise ConfigError(
            f"cannot infer the number of attention heads for n_embd={n_embd} from the weights "
            f"alone (only GPT-2's own widths {sorted(widths)} are known); pass "
            "config=zoo.GPT2Config(n_head=...) or put a config.json beside the file"
        )
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=wpe[0],
        n_embd=n_embd,
        n_layer=max(layers) + 1,
        n_head=widths[n_embd],
    )
    log.info("no config given or found; inferred %s from the tensor shapes", config)
    return config
