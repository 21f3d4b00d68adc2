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
"""

from __future__ import annotations

import zoo

from .model import MAX_COMPILED_STEPS, CompiledGPT

__all__ = ["TEST_CONFIG"]

# The conformance harness draws from this config only: each model it builds compiles its
# own decode steps (freezing makes them private to its weights), so a small one keeps
# `zoo check compiled` in minutes rather than hours.
TEST_CONFIG = zoo.GPT2Config(vocab_size=101, n_positions=16, n_embd=32, n_layer=2, n_head=4)


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
            notes="the first decode step for each batch size and cache size compiles: about 30 to 60 s "
            "for GPT-2 124M on a 2-core CPU (less in a second process: Inductor caches on disk), "
            "logged at INFO (zoo -v); prefill and full forwards run eagerly; cache lengths are rounded "
            f"up to a power of two; at most {MAX_COMPILED_STEPS} compiled steps per process, then "
            "decoding runs eagerly; importing weights discards the compiled steps.",
        )
    ]
