"""``quantised`` and ``quantised-int4``: GPT-2 with weight-only int8 or int4 weights, on the CPU.

Trade-off: a quarter (int8) or about a sixth (int4) of float32's weight memory,
and batch-1 decoding that streams that many fewer bytes, in exchange for
logits that are only close to GPT-2's, not equal. The variants are
approximate: the conformance harness holds them to distribution-level bounds
(KL divergence and relative logit error against Hugging Face in float64), and
their exported weights are the dequantised ones, not those imported.

How: ``pure``'s model with its Linear layers swapped for quantised ones
(gpt-fast's design), everything else (attention, static KV cache, padding,
LayerNorms, position embedding) ``pure``'s own, computed in bfloat16, which is
the one dtype offered: the CPU kernels are fast with bfloat16 activations and
slow with float32.

- ``quantised``: every Linear int8 with one scale per output channel,
  through ``torch.ops.aten._weight_int8pack_mm``.
- ``quantised-int4``: every Linear of the blocks int4 with a scale and a zero
  per 32 weights along the input dimension, through
  ``_weight_int4pack_mm_for_cpu``; input and output dimensions are
  zero-padded to the kernel's multiples and the output sliced back.

Those kernels are made for decoding, a few rows at a time. From
``DENSE_FROM_ROWS`` (128) rows, a prefill, each Linear dequantises its weight
to bfloat16 and runs a dense matmul instead (oneDNN, AMX where the CPU has
it): the same values, about 8x faster there, at the cost of one layer's
bfloat16 weight held while it runs.

Biases are kept (bfloat16) in every Linear. The ``lm_head``/``wte`` tie is
kept on purpose: the token embedding is stored once, as int8 with one scale
per vocabulary row, in both variants; the lookup dequantises the gathered
rows and the logits multiply by the same int8 tensor (a row scale of ``wte``
is an output-channel scale of ``lm_head``). It is int8 in ``quantised-int4``
too: the head is where quantisation error reaches the logits most directly,
and rows cannot be gathered from the int4 kernel's packed layout. The
vocabulary is never padded, so logits are exactly ``vocab_size`` wide and no
padded id can be sampled.

Devices: CPU only. The CUDA int4 kernel wants another packing and the
variants have not been run on a GPU; ``build`` on another device raises
:class:`zoo.CapabilityError`.
"""

from __future__ import annotations

import zoo

from .model import INT4_GROUP, Int4GPT, Int8GPT

__all__ = ["TOLERANCES_INT4", "TOLERANCES_INT8"]

# Bounds measured on the conformance harness's examples (weights up to 30x GPT-2's init scale),
# worst values seen over the ci profile and a 300-example thorough run, with a margin of about 2x.
# int8: mean KL 0.073, relative logit error 0.078. A doubled scale, a dropped bias or a transposed
# weight gives KL >= 0.43 and relative error >= 0.56.
TOLERANCES_INT8 = zoo.Tolerances(max_kl=0.15, max_rel_logit_error=0.2)
# int4: mean KL 0.84; the relative logit error reached 1.08 on a 2-token vocabulary whose
# logits are nearly zero, so its bound only guards against garbage. The KL bound catches a
# dropped bias (KL >= 2.0) or a transposed weight (KL >= 5), not a scale off by 2x in one layer
# (KL 1.0 to 1.5): random weights at large scales leave int4 too little room for that.
# Top-1 agreement is declared for neither: random weights give nearly flat logits whose argmax
# flips between near-ties.
TOLERANCES_INT4 = zoo.Tolerances(max_kl=1.5, max_rel_logit_error=2.0)

_CAPABILITIES = zoo.Capabilities(devices=("cpu",), dtypes=("bfloat16",), exact=False, kv_cache=True,
                                 padding=True, trainable=False, lossless_weights=False)


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="quantised",
            build=Int8GPT.build,
            summary="weight-only int8 per output channel (bfloat16 activations, tied int8 embedding, CPU)",
            capabilities=_CAPABILITIES,
            tolerances=TOLERANCES_INT8,
            precision="int8",
            notes="approximate: logits within the declared KL and relative error of GPT-2's; "
            "bfloat16 only; export_weights() returns the dequantised weights.",
        ),
        zoo.Variant(
            name="quantised-int4",
            build=Int4GPT.build,
            summary=f"weight-only int4 in groups of {INT4_GROUP} (int8 tied embedding, bfloat16 activations, CPU)",
            capabilities=_CAPABILITIES,
            tolerances=TOLERANCES_INT4,
            precision="int4",
            notes="approximate, more so than quantised: logits within the declared KL and relative "
            "error of GPT-2's; bfloat16 only; export_weights() returns the dequantised weights.",
        ),
    ]
