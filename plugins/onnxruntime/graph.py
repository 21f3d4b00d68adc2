"""GPT-2 as an ONNX graph: exported once per config, weights written in, quantised by ONNX Runtime.

The graph is Hugging Face's ``GPT2LMHeadModel`` (eager attention) behind a
wrapper whose inputs and outputs are flat tensors, exported by torch's
TorchScript exporter (``dynamo=False``: it needs only the ``onnx`` package)::

    input_ids [B, T], position_ids [B, T], attention_mask [B, P + T],
    past.{i}.key / past.{i}.value [B, nh, P, hs]   (P = 0 for a full forward)
    -> logits [B, T, V] (every position), present.{i}.key / .value [B, nh, P + T, hs]

It depends on the config only, so it is exported once per config and kept,
without its weights, under ``zoo.cache_dir("engines", "onnxruntime")``. It is
exported with ``do_constant_folding=False`` and distinct values in every
parameter (the exporter merges initializers of equal value, GPT-2's zero
biases among them), so that its initializers are exactly Hugging Face's
parameters, named ``model.`` + their key. Importing weights writes them into
a copy of that graph; no export runs again.

Why not ``SessionOptions.add_initializer``, ONNX Runtime's own way to swap
weights: with graph optimisations on, ONNX Runtime folds constants from the
graph's initializers before the override applies (the ``lm_head`` transpose of
``wte`` kept the exported values), and the logits were wrong. Writing the
weights into the graph costs a copy of them per import and is always right.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import zoo
from zoo.weight_map import HF, TIED, from_canonical

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("zoo")

OPSET = 17
PREFIX = "model."  # the wrapper's attribute: initializers are "model." + Hugging Face's parameter names
SCHEMES = ("float32", "int8", "int4")
INT4_BLOCK = 32  # MatMulNBits: weights along the input dimension per scale


def io_names(n_layer: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    return ["input_ids", "position_ids", "attention_mask", *past], ["logits", *(p.replace("past", "present") for p in past)]


# -- the graph, once per config ---------------------------------------------------------------
def export(config: zoo.GPT2Config, out: Path) -> None:
    """Write the float32 graph with past key/values of ``config`` to ``out``, with random (distinct) weights."""
    import torch
    from transformers import DynamicCache

    import zoo.hf

    model = zoo.hf.hf_model(config, attn_implementation="eager").eval()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in model.parameters():  # distinct values: the exporter merges equal initializers
            p.copy_(torch.randn(p.shape, generator=generator))
    n_layer, n_head, hs = config.n_layer, config.n_head, config.head_size
    # transformers 5 renamed ``past_key_values`` to ``cache``, in the arguments and in the output
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    class WithPast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, position_ids: Any, attention_mask: Any, *past: Any) -> tuple[Any, ...]:
            cache = DynamicCache()
            for i in range(n_layer):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                             use_cache=True, **{cache_arg: cache})
            present = getattr(out, cache_arg)
            return out.logits, *(t for layer in present.layers for t in (layer.keys, layer.values))

    B, T, P = 2, 3, 4  # example shapes only: every one of them is a dynamic axis
    inputs, outputs = io_names(n_layer)
    mask = torch.ones(B, P + T, dtype=torch.long)
    mask[0, :2] = 0  # traced with padding, so no branch on an all-ones mask is taken for good
    example = (torch.zeros(B, T, dtype=torch.long), torch.arange(P, P + T).expand(B, T), mask,
               *(torch.zeros(B, n_head, P, hs) for _ in range(2 * n_layer)))
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "B", 1: "T"}, "position_ids": {0: "B", 1: "T"},
                                       "attention_mask": {0: "B", 1: "S"}, "logits": {0: "B", 1: "T"}}
    axes |= {name: {0: "B", 2: "P"} for name in inputs[3:]}
    axes |= {name: {0: "B", 2: "S"} for name in outputs[1:]}
    with warnings.catch_warnings(), torch.no_grad():
        # tracing warns about every Python branch on a shape (the mask and cache code has several),
        # transformers 5 that ``past_key_values`` (a name the tracer passes) is deprecated, and torch
        # that its TorchScript exporter is deprecated: choosing it is deliberate (see the docstring)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*past_key_values.*deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Exporting aten::index operator of advanced indexing",
                                category=UserWarning)
        torch.onnx.export(WithPast(), example, str(out), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=False)


def _graph_file(config: zoo.GPT2Config) -> Path:
    import onnx
    import torch
    import transformers

    key = repr((config, OPSET, torch.__version__, transformers.__version__, onnx.__version__))
    return zoo.cache_dir("engines", "onnxruntime", f"gpt2-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx")


@functools.lru_cache(maxsize=16)
def skeleton(config: zoo.GPT2Config) -> onnx.ModelProto:
    """The graph of ``config`` without weights (its initializers' data emptied), exported on first use."""
    import onnx

    path = _graph_file(config)
    if path.is_file():
        try:
            return onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001  # a damaged cache entry costs an export, nothing else
            log.warning("ignoring the unreadable ONNX graph %s (%s); exporting again", path, exc)
    with tempfile.TemporaryDirectory() as tmp:
        export(config, Path(tmp) / "gpt2.onnx")
        graph = onnx.load(str(Path(tmp) / "gpt2.onnx"))
    for init in graph.graph.initializer:
        init.ClearField("raw_data")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        onnx.save(graph, str(partial))
        os.replace(partial, path)
    except OSError as exc:
        log.warning("could not cache the ONNX graph in %s (%s); it will be exported again", path.parent, exc)
    return graph


def with_weights(config: zoo.GPT2Config, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The graph of ``config`` holding canonical ``weights`` (float32 NumPy arrays)."""
    import onnx

    hf = {PREFIX + key: np.ascontiguousarray(t) for key, t in from_canonical(weights, HF) if key != TIED[0]}
    graph = onnx.ModelProto()
    graph.CopyFrom(skeleton(config))
    names = {init.name for init in graph.graph.initializer}
    if names != set(hf):
        raise zoo.WeightsError(f"the ONNX graph's initializers are not GPT-2's parameters: the graph has "
                               f"{sorted(names - set(hf))} besides them and lacks {sorted(set(hf) - names)}; "
                               f"delete {_graph_file(config)} to export it again")
    for init in graph.graph.initializer:
        init.raw_data = hf[init.name].tobytes()
    return graph


# -- quantisations, run on the graph with the weights in ----------------------------------------
@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence the quantisers' advice and progress logging (INFO per node; a WARNING to pre-process)."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def quantise_int8(graph: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's dynamic quantisation with its defaults: int8 weights, activations quantised per call."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet("root", "onnxruntime.quantization"):
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(graph, out, weight_type=QuantType.QInt8)
        return onnx.load(str(out))


def _gemms_as_matmuls(graph: onnx.ModelProto) -> None:
    """Rewrite ``Gemm(x, W, b)`` with a constant ``W`` as ``MatMul(x, W) + b``, in place.

    Hugging Face's ``Conv1D`` exports as ``Gemm``, and ONNX Runtime's 4-bit
    quantiser quantises ``MatMul`` only: without this it leaves every weight
    in float32.
    """
    import onnx

    constants = {init.name for init in graph.graph.initializer}
    nodes = []
    for node in graph.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or node.input[1] not in constants or attrs.get("transB", 0) or not plain:
            nodes.append(node)
            continue
        product = node.output[0] + "/matmul"
        nodes.append(onnx.helper.make_node("MatMul", node.input[:2], [product], name=node.name + "/MatMul"))
        nodes.append(onnx.helper.make_node("Add", [product, node.input[2]], node.output, name=node.name + "/Add"))
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)


def quantise_int4(graph: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's weight-only 4-bit ``MatMulNBits``: symmetric, one scale per 32 weights."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    _gemms_as_matmuls(graph)
    with _quiet("onnxruntime.quantization.matmul_nbits_quantizer"):
        quantiser = MatMulNBitsQuantizer(graph, block_size=INT4_BLOCK, is_symmetric=True)
        quantiser.process()
    return quantiser.model.model


def dequantised(graph: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The float32 value of every initializer named after a parameter, dequantised where it was quantised.

    ``quantize_dynamic`` stores ``W`` as ``W_quantized``, ``W_scale`` and
    ``W_zero_point`` (one scale per tensor); ``MatMulNBits`` as ``W_Q4``
    ``[N, blocks, 16]`` (two 4-bit weights a byte, low nibble first, offset 8)
    and ``W_scales`` ``[N * blocks]``. Returns Hugging Face keys (no prefix).
    """
    from onnx import numpy_helper

    arrays = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if name.endswith("_quantized"):
            base = name.removesuffix("_quantized")
            scale, zero = arrays[base + "_scale"], arrays[base + "_zero_point"]
            out[base] = (value.astype(np.float32) - zero.astype(np.float32)) * scale
        elif name.endswith("_Q4"):
            base = name.removesuffix("_Q4")
            n, blocks, _ = value.shape
            nibbles = np.stack([value & 0xF, value >> 4], axis=-1).reshape(n, blocks, -1).astype(np.float32) - 8
            out[base] = (nibbles * arrays[base + "_scales"].reshape(n, blocks, 1)).reshape(n, -1).T  # [K padded, N]
    for name, value in arrays.items():  # the rest, kept in float32
        if name.startswith(PREFIX) and name not in out and not any(
                name.startswith(base) and name != base for base in out):
            out[name] = value
    return {name.removeprefix(PREFIX): value for name, value in out.items() if name.startswith(PREFIX)}
