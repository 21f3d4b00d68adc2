"""``pure``: GPT-2 written from scratch in readable PyTorch, nanoGPT style.

Trade-off: clarity over speed. Every operation is spelled out (attention
arithmetic, causal mask, tanh GELU, tied ``lm_head``), so it is the reference
a reader checks other variants against; it runs wherever PyTorch does, in
float32, float64 and bfloat16, and it can be trained.
"""

from __future__ import annotations

import zoo

from .model import GPT


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="pure",
            build=GPT.build,
            summary="GPT-2 from scratch in plain PyTorch (nanoGPT style, static KV cache)",
            capabilities=zoo.Capabilities(
                devices=("cpu", "cuda"),
                dtypes=("float32", "float64", "bfloat16"),
                trainable=True,
            ),
        )
    ]
