"""``compiled``: GPT-2 under ``torch.compile``, with a static KV cache so decoding keeps one shape.

Trade-off: the fastest exact decoding the zoo offers on one device, paid for
with a compilation of the decode step for each batch size and cache size
(seconds to tens of seconds on a CPU; cached on disk by Inductor, so a second
process compiles faster) and, on the CPU, a second copy of the weights that
freezing folds into each compiled step.

How (gpt-fast's design): ``pure``'s modules, with attention on
``F.scaled_dot_product_attention``; the KV cache is preallocated buffers
written in place, and its length is rounded up to a power of two so that
``zoo.generate``'s many cache sizes share a few compiled steps. Only the
one-token decode step is compiled (prefill and full forwards run eagerly, with
SDPA): on the CPU with Inductor's ``max-autotune-no-cudagraphs`` mode and
freezing (scoped to each call, never set for the whole process), on CUDA with
CUDA graphs (``mode="reduce-overhead"``). Importing weights throws the
compiled steps away, since freezing baked the old weights into them. A process
keeps at most ``MAX_COMPILED_STEPS`` compiled steps alive; past that, decode
steps run eagerly, with the same result, and a warning says so.

``quantised-compiled`` and ``quantised-int4-compiled`` are ``quantised``'s and
``quantised-int4``'s models (bfloat16 activations, the tied int8 embedding,
the dense prefill) with the same compiled decode step: gpt-fast's pairing of
quantisation and compilation, with the same trade-off, on the CPU only,
approximate as the quantised variants are.
"""

from __future__ import annotations

import zoo

from ..quantised import TOLERANCES_INT4, TOLERANCES_INT8
from .model import MAX_COMPILED_STEPS, CompiledGPT, CompiledInt4GPT, CompiledInt8GPT

__all__ = ["QUANTISED", "TEST_CONFIG"]

FIRST_CALL = ("about 30 to 60 s for GPT-2 124M on a 2-core CPU (less in a second process: Inductor caches "
              "on disk), which zoo generate shows and the logger zoo.compile logs at INFO;")
# The conformance harness draws from this config only: each model it builds compiles its
# own decode steps (freezing makes them private to its weights), so a small one keeps
# `zoo check compiled` in minutes rather than hours.
TEST_CONFIG = zoo.GPT2Config(vocab_size=101, n_positions=16, n_embd=32, n_layer=2, n_head=4)
QUANTISED = zoo.Capabilities(devices=("cpu",), dtypes=("bfloat16",), exact=False, trainable=False,
                             lossless_weights=False, test_configs=(TEST_CONFIG,))


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="compiled",
            build=CompiledGPT.build,
            summary="GPT-2 under torch.compile: compiled decode step, static KV cache, SDPA, CUDA graphs",
            capabilities=zoo.Capabilities(
                devices=("cpu", "cuda"),
                dtypes=("float32", "bfloat16"),
                test_configs=(TEST_CONFIG,),
            ),
            notes=f"the first decode step for each batch size and cache size compiles: {FIRST_CALL} "
            "prefill and full forwards run eagerly; cache lengths are rounded up to a power of two; at most "
            f"{MAX_COMPILED_STEPS} compiled steps per process, then decoding runs eagerly; importing weights "
            "discards the compiled steps.",
        ),
        zoo.Variant(
            name="quantised-compiled",
            build=CompiledInt8GPT.build,
            summary="quantised (weight-only int8, bfloat16 activations) with the compiled decode step (CPU)",
            capabilities=QUANTISED,
            tolerances=TOLERANCES_INT8,
            precision="int8",
            notes=f"approximate, as quantised; the first decode step for each batch size and cache size "
            f"compiles: {FIRST_CALL} then as compiled.",
        ),
        zoo.Variant(
            name="quantised-int4-compiled",
            build=CompiledInt4GPT.build,
            summary="quantised-int4 (int4 blocks, int8 tied embedding) with the compiled decode step (CPU)",
            capabilities=QUANTISED,
            tolerances=TOLERANCES_INT4,
            precision="int4",
            notes=f"approximate, as quantised-int4; the first decode step for each batch size and cache size "
            f"compiles: {FIRST_CALL} then as compiled.",
        ),
    ]
