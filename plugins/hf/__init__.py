"""``hf``: Hugging Face transformers' ``GPT2LMHeadModel`` behind the zoo's interface.

Trade-off: this is the reference everything else is measured against, not an
implementation of our own. It is listed, loaded and benchmarked by name like any
variant. Its KV cache is transformers' own growing cache: ``setup_caches``
resets it, and ``input_pos`` continues where the last call stopped or goes back
(the cache is cropped there), as with every variant's static cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zoo


def build(config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
          weights: Mapping[str, Any] | None = None) -> zoo.GPT2:
    from .model import HFGPT2  # transformers and torch: imported when a model is built, not when listed

    return HFGPT2.build(config, device=device, dtype=dtype, weights=weights)


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="hf",
            build=build,
            summary="Hugging Face transformers' GPT2LMHeadModel (the reference)",
            capabilities=zoo.Capabilities(
                devices=("cpu", "cuda"),
                dtypes=("float32", "float64", "bfloat16"),
                trainable=True,
            ),
            notes="Uses transformers' default attention (sdpa); its KV cache grows as it is written.",
            reference=True,
        )
    ]


