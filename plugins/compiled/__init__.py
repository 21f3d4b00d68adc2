"""``compiled``, ``quantised-compiled``, ``quantised-int4-compiled``: decode steps under ``torch.compile``.

Trade-off: the fastest decoding the zoo offers on one device, paid for with a
compilation of the decode step for each batch size and cache size (seconds to
tens of seconds on a CPU; cached on disk by Inductor, so a second process
compiles faster) and, on the CPU, a second copy of the weights that freezing
folds into each compiled step.

How: :func:`zoo.nn.compile_decode` applied to ``pure``'s model, and to the
``int8`` and ``int4`` quantised ones (gpt-fast's pairing of quantisation and
compilation): only the one-token decode step is compiled, prefill and full
forwards run eagerly; the static cache's length is rounded up to a power of
two; on the CPU Inductor's ``max-autotune-no-cudagraphs`` with freezing, on
CUDA CUDA graphs. At 124M, batch 1, the int8 step took 13 ms against 20.5 ms
eager (2-core CPU): Inductor fuses the LayerNorms, GELU and residual adds
around the int8 matmuls. See ``zoo/nn/compile.py`` for the details.
"""

from __future__ import annotations

import zoo
from zoo.nn import declare

FIRST_CALL = ("about 30 to 60 s for GPT-2 124M on a 2-core CPU (less in a second process: Inductor caches "
              "on disk), which zoo generate shows and the logger zoo.compile logs at INFO;")
MAX_COMPILED_STEPS = 4  # zoo.nn.compile.MAX_COMPILED_STEPS, stated here without importing torch
# The conformance harness draws from this config only: each model it builds compiles its
# own decode steps (freezing makes them private to its weights), so a small one keeps
# `zoo check compiled` in minutes rather than hours.
TEST_CONFIG = zoo.GPT2Config(vocab_size=101, n_positions=16, n_embd=32, n_layer=2, n_head=4)
NOTES = (f"the first decode step for each batch size and cache size compiles: {FIRST_CALL} prefill and full "
         "forwards run eagerly; cache lengths are rounded up to a power of two; at most "
         f"{MAX_COMPILED_STEPS} compiled steps per process, then decoding runs eagerly; importing weights "
         "discards the compiled steps.")

# (variant, quantisation scheme or None, summary)
VARIANTS = (
    ("compiled", None, "GPT-2 under torch.compile: compiled decode step, static KV cache, SDPA, CUDA graphs"),
    ("quantised-compiled", "int8",
     "quantised (weight-only int8, bfloat16 activations) with the compiled decode step (CPU)"),
    ("quantised-int4-compiled", "int4",
     "quantised-int4 (int4 blocks, int8 tied embedding) with the compiled decode step (CPU)"),
)


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    dense = {"devices": ("cpu", "cuda"), "dtypes": ("float32", "bfloat16")}
    return [
        declare(name, summary, scheme=scheme, compiled=True, test_configs=(TEST_CONFIG,),
                notes=(f"approximate ({scheme} scheme); " if scheme else "") + NOTES,
                **({} if scheme else dense))
        for name, scheme, summary in VARIANTS
    ]
