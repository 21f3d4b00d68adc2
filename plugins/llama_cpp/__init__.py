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

Cannot: load a vocabulary of 256 ids or fewer (llama.cpp's BPE loader wants
at least one merge; building such a model raises ``zoo.CapabilityError``),
train, run on a GPU here (llama-cpp-python is built for the CPU),
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

# Small configs the harness draws from: widths a multiple of 32, the block of Q8_0 and Q4_0, and more than 256
# ids (llama.cpp loads no GPT-2 vocabulary without a BPE merge, and GPT-2's first makes id 256); among them the
# fidelity preset's (zoo.fidelity.LEARNED_CONFIG), which the fidelity property builds whatever is declared here.
TEST_CONFIGS = (
    zoo.GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4),
    zoo.GPT2Config(vocab_size=257, n_positions=128, n_embd=32, n_layer=1, n_head=2),
    zoo.GPT2Config(vocab_size=1024, n_positions=128, n_embd=96, n_layer=3, n_head=4),  # zoo.fidelity.LEARNED_CONFIG
)


def build(config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
          weights: Mapping[str, Any] | None = None, scheme: str = "float32") -> zoo.GPT2:
    from .model import LlamaCppGPT2  # llama-cpp-python, torch: imported when a model is built, not listed

    return LlamaCppGPT2.build(config, device=device, dtype=dtype, weights=weights, scheme=scheme)


def _unavailable() -> str | None:
    return zoo.missing_modules("llama_cpp", install=INSTALL)


def _quantised(scheme: str, what: str, tolerances: zoo.Tolerances, finding: str) -> zoo.Variant:
    return zoo.Variant(
        name=f"llama.cpp-{scheme}",
        build=functools.partial(build, scheme=scheme),
        summary=f"llama.cpp on {scheme.upper()} GGUF by its own quantiser ({what}), CPU",
        capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",), exact=False, lossless_weights=False,
                                      test_configs=TEST_CONFIGS),
        tolerances=tolerances,
        notes=f"approximate. Finding: {finding} " + NO_EXTRA_BUFFERS + "export_weights() returns the float32 "
        "weights imported.",
        precision=scheme,
        unavailable=_unavailable,
    )


OUTLIERS = ("close to float32 on learned weights, but with GPT-2's activation outliers planted it multiplies "
            "perplexity about {ppl} times and agrees on the top token at about half the positions: llama.cpp's "
            "CPU kernels for Q8_0 and Q4_0 weights quantise the activations too, to 8 bits in blocks of 32, "
            "so it is W8A8, not weight-only.")


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="llama.cpp",
            build=build,
            summary="llama.cpp on the GGUF zoo convert writes (F32, or BF16 for bfloat16), KV cache, CPU",
            capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32", "bfloat16"), exact=False,
                                          lossless_weights=False, test_configs=TEST_CONFIGS),
            # not exact: on an F32 file the logits differ from Hugging Face float32 by up to 1.8% (relative error,
            # `zoo check --profile ci`, at 30 times GPT-2's weight scale, less at smaller ones), far beyond
            # float32 rounding. The larger of KL and relative error reached 0.018 on random weights; `--property
            # fidelity`: KL 1.4e-8 (F32) and 1.9e-6 (BF16), top-1 99.85% (BF16), perplexity x1.00005 on both
            # presets. On a BF16 file the relative error reached 0.0371 (ci profile, 30 times the weight scale).
            # Declared about twice that.
            tolerances=zoo.Tolerances(max_kl=0.075, max_rel_logit_error=0.075, fidelity={
                "learned": zoo.Fidelity(max_kl=4e-6, max_ppl_ratio=1.0002, min_top1=0.997),
                "outliers": zoo.Fidelity(max_kl=4e-6, max_ppl_ratio=1.0002, min_top1=0.997)}),
            notes="Finding: an F32 GGUF is not float32 arithmetic here: logits differ from Hugging Face "
            "float32 by up to about 2% of their size with large weights, far beyond rounding, so the variant "
            "is declared approximate; on the learned presets it is as close as bfloat16 or closer. Each import "
            "writes a GGUF file and loads it; the KV cache is llama.cpp's own, in the model's precision. "
            "export_weights() returns the float32 weights imported.",
            unavailable=_unavailable,
        ),
        # `zoo check --profile ci`: on random weights the larger of KL and relative error reached 0.131 (q8_0)
        # and 2.36 (q4_0); `--property fidelity`, learned: KL 1.7e-5 and 1.2e-4, top-1 99.80% and 99.31%,
        # perplexity x1.00004 and x1.0002; outliers: KL 3.13 and 3.00, top-1 53.4% and 52.9%, perplexity x21.6
        # and x19.1. Declared about twice that; the outliers budgets describe an accuracy cliff, not a tolerance.
        _quantised("q8_0", "int8 in blocks of 32", zoo.Tolerances(max_kl=0.3, max_rel_logit_error=0.3, fidelity={
            "learned": zoo.Fidelity(max_kl=4e-5, max_ppl_ratio=1.0002, min_top1=0.996),
            "outliers": zoo.Fidelity(max_kl=6.5, max_ppl_ratio=43.0)}), OUTLIERS.format(ppl=22)),
        _quantised("q4_0", "4-bit in blocks of 32", zoo.Tolerances(max_kl=5.0, max_rel_logit_error=5.0, fidelity={
            "learned": zoo.Fidelity(max_kl=2.5e-4, max_ppl_ratio=1.0004, min_top1=0.986),
            "outliers": zoo.Fidelity(max_kl=6.0, max_ppl_ratio=38.0)}), OUTLIERS.format(ppl=19)),
    ]
