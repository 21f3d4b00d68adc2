"""``onnxruntime``, ``onnxruntime-int8``, ``onnxruntime-int4``: GPT-2 run by ONNX Runtime on the CPU.

Trade-off: the engine many users deploy GPT-2 with, judged here as any
variant is. ``onnxruntime`` runs Hugging Face's model exported as an ONNX
graph, in float32; ``onnxruntime-int8`` is that graph through ONNX Runtime's
dynamic quantisation with its defaults, as a user first tries it (int8
weights, one scale per tensor, activations quantised to uint8 on every call);
``onnxruntime-int4`` through its weight-only 4-bit ``MatMulNBits`` quantiser
(one scale per 32 weights, float32 activations). The quantisers leave the
tied ``lm_head``/``wte`` in float32 (the head multiplies by a transpose of the
embedding, not by a constant), and keep every bias.

The graph returns the logits of every position and takes and returns the
past keys and values, so the KV cache (``setup_caches`` and ``input_pos``)
and left padding (``attention_mask``, positions ``cumsum(mask) - 1``) work as
the interface asks. It is exported once per config and cached on disk
(:mod:`plugins.onnxruntime.graph` says how weights are swapped in); the
quantisations run again at each import, on the imported weights.

Cannot: run on a GPU here, compute in another dtype than float32, train.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import zoo

INSTALL = "pip install 'gpt2-zoo[onnxruntime]'"
# The graph is traced from transformers' GPT2LMHeadModel. Traced from transformers 4.57's, it keeps a
# shape of the example input (ONNX Runtime: "Reshape_2 ... Input shape:{5}, requested shape:{3,1}"
# on another batch), with torch 2.5 and 2.9 alike; traced from 5.x's, every axis stays dynamic.
TRANSFORMERS = "5"

# Small configs the harness draws from instead of random ones (an export per config costs about a second).
# LEARNED_CONFIG is the fidelity preset's, which the fidelity property builds whatever is declared here.
TEST_CONFIGS = (
    zoo.GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4),
    zoo.GPT2Config(vocab_size=50, n_positions=128, n_embd=16, n_layer=1, n_head=2, layer_norm_epsilon=1e-6),
    zoo.GPT2Config(vocab_size=1024, n_positions=128, n_embd=96, n_layer=3, n_head=4),  # zoo.fidelity.LEARNED_CONFIG
)


def build(config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
          weights: Mapping[str, Any] | None = None, scheme: str = "float32") -> zoo.GPT2:
    from .model import OnnxGPT2  # onnx, ONNX Runtime, torch: imported when a model is built, not listed

    return OnnxGPT2.build(config, device=device, dtype=dtype, weights=weights, scheme=scheme)


def _unavailable(*extra: str) -> Any:
    return lambda: (zoo.missing_modules("onnxruntime", "onnx", *extra, install=INSTALL)
                    or zoo.older_than("transformers", TRANSFORMERS, needs="the ONNX graph (traced from its GPT-2)"))


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    caps = zoo.Capabilities(devices=("cpu",), dtypes=("float32",), test_configs=TEST_CONFIGS)
    return [
        zoo.Variant(
            name="onnxruntime",
            build=build,
            summary="ONNX Runtime on Hugging Face's GPT-2 exported to ONNX, float32, KV cache, CPU",
            capabilities=caps,
            # ONNX Runtime's kernels sum in another order than torch's, yet the default bounds hold: with
            # `zoo check onnxruntime --profile ci` the worst logit error was 9.3e-5 against a bound of 1.6e-4
            tolerances=zoo.Tolerances(),
            notes="The graph is exported once per config (about a second) and cached under ZOO_CACHE; "
            "each import writes the weights into a copy of it and makes a new session.",
            unavailable=_unavailable(),
        ),
        zoo.Variant(
            name="onnxruntime-int8",
            build=functools.partial(build, scheme="int8"),
            summary="ONNX Runtime's dynamic int8 quantisation (quantize_dynamic defaults: W8A8 per tensor), CPU",
            capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",), exact=False,
                                          lossless_weights=False, test_configs=TEST_CONFIGS),
            # measured with `zoo check onnxruntime-int8 --profile ci` (random weights: KL up to 0.175, relative
            # error up to 0.136) and `--property fidelity` (learned: KL 4.2e-5, top-1 99.75%, perplexity x1.0005;
            # outliers: KL 2.48, top-1 48.7%, perplexity x11.2); declared about twice that. The outliers
            # budget describes an accuracy cliff, not a tolerance: activations quantised per tensor meet
            # values 500 times their neighbours'
            tolerances=zoo.Tolerances(max_kl=0.35, max_rel_logit_error=0.3, fidelity={
                "learned": zoo.Fidelity(max_kl=1e-4, max_ppl_ratio=1.001, min_top1=0.995),
                "outliers": zoo.Fidelity(max_kl=5.0, max_ppl_ratio=22.0)}),
            notes="approximate: quantize_dynamic as a user first runs it (activations quantised per tensor on "
            "every call). Finding: close to float32 on learned weights (KL 4e-5), but with GPT-2's activation "
            "outliers planted it multiplies perplexity about 11 times and agrees on the top token at under half "
            "the positions. export_weights() returns the dequantised weights; each import quantises again.",
            precision="int8",
            unavailable=_unavailable(),
        ),
        zoo.Variant(
            name="onnxruntime-int4",
            build=functools.partial(build, scheme="int4"),
            summary="ONNX Runtime's weight-only 4-bit MatMulNBits (blocks of 32, float32 activations), CPU",
            capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",), exact=False,
                                          lossless_weights=False, test_configs=TEST_CONFIGS),
            # measured with `zoo check onnxruntime-int4 --profile ci` (random weights: KL up to 2.25, relative
            # error up to 0.39) and `--property fidelity` (learned: KL 1.0e-4, top-1 99.26%, perplexity x1.0001;
            # outliers: KL 5.2e-3, top-1 98.13%, perplexity x1.0062); declared about twice that
            tolerances=zoo.Tolerances(max_kl=4.5, max_rel_logit_error=0.8, fidelity={
                "learned": zoo.Fidelity(max_kl=2.5e-4, max_ppl_ratio=1.0005, min_top1=0.985),
                "outliers": zoo.Fidelity(max_kl=0.01, max_ppl_ratio=1.0125, min_top1=0.96)}),
            notes="approximate. Hugging Face's Conv1D exports as Gemm, which the 4-bit quantiser skips (it "
            "would quantise nothing), so each is rewritten as MatMul + Add first; the quantiser needs onnx-ir. "
            "export_weights() returns the dequantised weights; each import quantises again.",
            precision="int4",
            unavailable=_unavailable("onnx_ir"),
        ),
    ]
