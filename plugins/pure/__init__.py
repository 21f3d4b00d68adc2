"""``pure``: GPT-2 from scratch in readable PyTorch, nanoGPT style: :class:`zoo.nn.GPT` as it is.

Trade-off: clarity over speed. One flat model file (``zoo/nn/model.py``) in
reading order, with Hugging Face's module names, the tanh GELU GPT-2 was
trained with, the tied ``lm_head``, a static KV cache, and attention in one
``F.scaled_dot_product_attention`` call with an additive causal and padding
bias. It runs wherever PyTorch does, in float32, float64 and bfloat16, and it
can be trained: its exported weights are its parameters.
"""

from __future__ import annotations

import zoo
from zoo.nn import declare


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        declare("pure", "GPT-2 from scratch in plain PyTorch (nanoGPT style, static KV cache)",
                devices=("cpu", "cuda"), dtypes=("float32", "float64", "bfloat16"), trainable=True),
    ]
