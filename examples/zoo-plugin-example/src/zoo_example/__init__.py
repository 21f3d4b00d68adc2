"""Two GPT-2 variants built on ``zoo.nn``, as a third party writes them.

- ``explicit``: :class:`zoo.nn.GPT` with its attention written out step by
  step (:mod:`zoo_example.explicit`): a module of one's own swapped into the
  zoo's model. Exact in float32, float64 and bfloat16, trainable; declared
  for the CPU only, the one device it has been checked on.
- ``w8a8``: :class:`zoo.nn.GPT` quantised by a scheme of one's own,
  :data:`W8A8` below (int8 weights per output channel, int8 activations per
  token, an integer matmul; :mod:`zoo_example.w8a8`). Approximate, float32
  around the quantised Linears, CPU only.

The zoo finds this module through the ``zoo`` entry-point group (see this
package's ``pyproject.toml``) and calls :func:`zoo_variants`. Nothing here
imports torch: ``zoo list`` stays fast, and torch loads when a model is built.
"""

from __future__ import annotations

import zoo
from zoo.nn import Scheme, declare

__all__ = ["W8A8", "zoo_variants"]
__version__ = "0.1.0"

# A row of the scheme table's shape, kept here (the zoo's own table, zoo.nn.SCHEMES, is the zoo's):
# declare() and zoo.nn.quantise_ take the Scheme itself. `linear` is imported only when a model is built.
# Bounds: measured on the conformance harness's examples (random weights up to 30x GPT-2's init scale),
# worst values seen over `zoo check w8a8` on the ci profile and a 300-example thorough run: mean KL
# 0.019 (ci, logits), relative logit error 0.070 (thorough, weights); declared at about twice that.
# A dropped bias gives KL 0.43, one layer's output scale doubled KL 1.2: both fail on the first example.
# Top-1 agreement is not declared: random weights give nearly flat logits whose argmax flips between
# near-ties.
W8A8 = Scheme(
    "w8a8", "zoo_example.w8a8:W8A8Linear", embedding="dense", precision="int8",
    summary="int8 weights per output channel, int8 activations per token (dynamic, symmetric), "
            "int8 x int8 -> int32 matmul (torch._int_mm); float32 elsewhere, the tied embedding dense",
    activations="float32", devices=("cpu",),
    # Fidelity, on the harness's learned weights: KL 1.1e-5 and perplexity 1.00002x float32's; on the same
    # weights with GPT-2's activation outliers planted, KL 3.4 and perplexity 27x: the per-token scale is set
    # by the outlier channels and rounds every other channel to a few levels. The budget states that.
    tolerances=zoo.Tolerances(max_kl=0.04, max_rel_logit_error=0.15, fidelity={
        "learned": zoo.Fidelity(max_kl=1e-3, max_ppl_ratio=1.005, min_top1=0.97),
        "outliers": zoo.Fidelity(max_kl=6.0, max_ppl_ratio=60.0)}),
)


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        declare("explicit", "zoo.nn's GPT-2 with attention written out: q @ k.T, scale, bias, softmax, @ v",
                cls="zoo_example.explicit:ExplicitGPT",  # imported when a model is built, not by `zoo list`
                # only what `zoo check explicit` has passed: the harness skips the rest (cuda, here)
                devices=("cpu",), dtypes=("float32", "float64", "bfloat16"), trainable=True,
                notes="the scores matrix (B, n_head, T, S) is held whole, one layer at a time; CPU only: not yet "
                      "checked on a GPU (add cuda to devices, then run zoo check explicit --device cuda)"),
        declare("w8a8", "W8A8: int8 weights and int8 per-token activations, integer matmul (CPU)",
                scheme=W8A8,
                notes="approximate (w8a8 scheme): logits within the declared KL and relative error of GPT-2's "
                      "on random weights; without outlier handling W8A8 degrades badly on the trained GPT-2 "
                      "checkpoint; float32 only; export_weights() returns the dequantised weights."),
    ]
