"""``quantised`` and ``quantised-int4``: GPT-2 with weight-only int8 or int4 weights, on the CPU.

Trade-off: a quarter (int8) or about a sixth (int4) of float32's weight memory,
and batch-1 decoding that streams that many fewer bytes, in exchange for
logits that are only close to GPT-2's, not equal. The variants are
approximate: the conformance harness holds them to their scheme's
distribution-level bounds (KL divergence and relative logit error against
Hugging Face in float64), and their exported weights are the dequantised ones,
not those imported.

How: :class:`zoo.nn.GPT` transformed by :func:`zoo.nn.quantise_` with the
``int8`` or ``int4`` row of ``zoo.nn.SCHEMES`` (gpt-fast's module swap).
Attention, the static KV cache, padding, LayerNorms and the position embedding
stay the model's own, computed in bfloat16, the one dtype offered: the CPU
kernels are fast with bfloat16 activations and slow with float32.

- ``quantised``: every Linear int8 with one scale per output channel,
  through ``torch.ops.aten._weight_int8pack_mm``.
- ``quantised-int4``: every Linear of the blocks int4 with a scale and a zero
  per 32 weights along the input dimension, through
  ``_weight_int4pack_mm_for_cpu``; input and output dimensions are
  zero-padded to the kernel's multiples and the output sliced back.

Those kernels are made for decoding, a few rows at a time. From 128 rows (a
prefill), each Linear dequantises its weight to bfloat16 and runs a dense
matmul instead (oneDNN, AMX where the CPU has it): the same values, about 8x
faster there, at the cost of one layer's bfloat16 weight held while it runs.

Biases are kept (bfloat16) in every Linear. The ``lm_head``/``wte`` tie is
kept on purpose: the token embedding is stored once, as int8 with one scale
per vocabulary row, in both variants; the lookup dequantises the gathered rows
and the logits multiply by the same int8 tensor. It is int8 in
``quantised-int4`` too: the head is where quantisation error reaches the
logits most directly, and rows cannot be gathered from the int4 kernel's
packed layout. The vocabulary is never padded, so logits are exactly
``vocab_size`` wide and no padded id can be sampled.

Devices: CPU only. The CUDA int4 kernel wants another packing and the
variants have not been run on a GPU; building on another device raises
:class:`zoo.CapabilityError`.
"""

from __future__ import annotations

import zoo
from zoo.nn import declare

# (variant, scheme): a new scheme's variant is one more row
VARIANTS = (("quantised", "int8"), ("quantised-int4", "int4"))
SUMMARIES = {
    "int8": "weight-only int8 per output channel (bfloat16 activations, tied int8 embedding, CPU)",
    "int4": "weight-only int4 in groups of 32 (int8 tied embedding, bfloat16 activations, CPU)",
}


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        declare(name, SUMMARIES[scheme], scheme=scheme,
                notes=f"approximate ({scheme} scheme): logits within the declared KL and relative error of "
                "GPT-2's; bfloat16 only; export_weights() returns the dequantised weights.")
        for name, scheme in VARIANTS
    ]
