"""``sdpa``: GPT-2 with its attention on ``torch.nn.functional.scaled_dot_product_attention``.

Trade-off: speed and memory over transparency. The attention arithmetic (scores,
mask, softmax, weighted sum) is one call, which PyTorch dispatches to the best
kernel it has for the inputs (FlashAttention or memory-efficient attention on
CUDA), so the scores matrix need never be written out. What that kernel does
inside is PyTorch's business: its rounding differs from Hugging Face's eager
attention, within the zoo's tolerances. float32 and bfloat16, on CPU and CUDA,
with a static KV cache, left padding and gradients.

The zoo finds this module through the ``zoo`` entry-point group (see this
package's ``pyproject.toml``) and calls :func:`zoo_variants`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:
    from .model import SdpaGPT

__all__ = ["build", "zoo_variants"]
__version__ = "0.1.0"


def build(config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None) -> SdpaGPT:
    """A randomly initialised ``sdpa`` model (``dtype`` defaults to float32)."""
    import torch

    from .model import SdpaGPT  # torch loads when a model is built, not when `zoo list` runs

    return SdpaGPT.build(config, device=device, dtype=torch.float32 if dtype is None else dtype)


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="sdpa",
            build=build,
            summary="GPT-2 with attention on torch's scaled_dot_product_attention (fused kernels)",
            capabilities=zoo.Capabilities(
                devices=("cpu", "cuda"),
                dtypes=("float32", "bfloat16"),
                trainable=True,
            ),
            notes="the KV cache and the padding mask reach SDPA as one boolean attn_mask; "
                  "a forward without either uses is_causal=True",
        )
    ]
