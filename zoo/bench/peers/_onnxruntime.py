"""ONNX Runtime: GPT-2 exported as a graph with past key/values, decoded by a greedy loop in NumPy.

The graph is Hugging Face's ``GPT2LMHeadModel`` (eager attention) behind a
wrapper whose inputs and outputs are flat tensors, exported with torch's
TorchScript exporter (``dynamo=False``: it needs only the ``onnx`` package,
where the dynamo exporter also needs ``onnxscript``)::

    input_ids [B, T], position_ids [B, T], attention_mask [B, P + T],
    past.{i}.key / past.{i}.value [B, nh, P, hs]   (P = 0 for the prompt)
    -> logits [B, V] (last position only), present.{i}.key / .value [B, nh, P + T, hs]

``int8`` is ONNX Runtime's own dynamic quantisation (``quantize_dynamic``,
int8 weights, activations quantised on the fly) of the float32 graph, with its
default settings, as a user would first try it. The loop keeps the KV cache
inside ONNX Runtime (IOBinding), so no step copies it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._common import PeerRunner, cached, file_bytes

__all__ = ["OnnxRuntimeRunner"]

OPSET = 17


def _names(n_layer: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(n_layer) for kv in ("key", "value")]
    return ["input_ids", "position_ids", "attention_mask", *past], ["logits", *(p.replace("past", "present") for p in past)]


def _export(weights_dir: Path, out: Path) -> None:
    """Write the float32 decoder-with-past graph of the weights in ``weights_dir`` to ``out``."""
    import torch
    from transformers import DynamicCache, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(weights_dir, attn_implementation="eager").eval()
    config = model.config
    n_layer, n_head, head_size = config.n_layer, config.n_head, config.n_embd // config.n_head
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
                             use_cache=True, logits_to_keep=1, **{cache_arg: cache})
            present = getattr(out, cache_arg)
            return out.logits[:, -1], *(t for layer in present.layers for t in (layer.keys, layer.values))

    B, T, P = 2, 3, 4  # example shapes only: every one of them is a dynamic axis
    inputs, outputs = _names(n_layer)
    past = [torch.zeros(B, n_head, P, head_size) for _ in range(2 * n_layer)]
    example = (torch.zeros(B, T, dtype=torch.long), torch.arange(P, P + T).expand(B, T),
               torch.ones(B, P + T, dtype=torch.long), *past)
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "B", 1: "T"}, "position_ids": {0: "B", 1: "T"},
                                       "attention_mask": {0: "B", 1: "S"}, "logits": {0: "B"}}
    axes |= {name: {0: "B", 2: "P"} for name in inputs[3:]}
    axes |= {name: {0: "B", 2: "S"} for name in outputs[1:]}
    with warnings.catch_warnings(), torch.no_grad():
        # tracing warns about every Python branch on a shape (the mask and cache code has several)
        # and transformers 5 warns that ``past_key_values`` (a name the tracer passes) is deprecated
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*past_key_values.*deprecated", category=FutureWarning)
        # the attention mask is built by indexing with arange-made (never negative) indices,
        # which the opset 17 export handles; the warning is about negative ones
        warnings.filterwarnings("ignore", message=r"Exporting aten::index operator of advanced indexing",
                                category=UserWarning)
        # torch deprecates its TorchScript exporter and warns about it, and about its own internals, from
        # inside; choosing it is deliberate (see the module's docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(WithPast(), example, str(out), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def _quantise(float32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(float32, out, weight_type=QuantType.QInt8)


class OnnxRuntimeRunner(PeerRunner):
    PEER = "onnxruntime"
    PRECISIONS: ClassVar[Mapping[str, str]] = {"float32": "float32", "int8": "int8"}
    # traced from transformers 4.57's GPT-2, the graph keeps a shape of the example input (as the
    # onnxruntime variants' graph does: plugins/onnxruntime)
    TRANSFORMERS = "5"

    session: Any = None

    def _graph(self, precision: str) -> Path:
        return self.cache_dir / f"gpt2-{precision}.onnx"

    def prepare(self) -> None:
        float32 = cached(self._graph("float32"), lambda out: _export(self.weights_dir, out))
        if self.precision == "int8":
            cached(self._graph("int8"), lambda out: _quantise(float32, out))

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: it warns about every shape it cannot infer
        self.session = ort.InferenceSession(str(self.converted(self._graph(self.precision))), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs, self.outputs = _names(self.config.n_layer)

    def _empty_cache(self, batch: int) -> list[Any]:
        from onnxruntime import OrtValue

        config = self.config
        empty = np.zeros((batch, config.n_head, 0, config.head_size), dtype=np.float32)
        return [OrtValue.ortvalue_from_numpy(empty) for _ in self.outputs[1:]]

    def _step(self, ids: np.ndarray, start: int, cache: list[Any]) -> tuple[np.ndarray, list[Any]]:
        """Run ``ids [B, T]`` at positions ``start...``; returns the last logits ``[B, V]`` and the new cache."""
        B, T = ids.shape
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        binding.bind_cpu_input("position_ids", np.ascontiguousarray(
            np.broadcast_to(np.arange(start, start + T, dtype=np.int64), (B, T))))
        binding.bind_cpu_input("attention_mask", np.ones((B, start + T), dtype=np.int64))
        for name, value in zip(self.inputs[3:], cache, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name in self.outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        logits, *cache = binding.get_outputs()
        return logits.numpy(), cache

    def prefill(self, ids: np.ndarray) -> None:
        self._step(ids, 0, self._empty_cache(len(ids)))

    def greedy(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> np.ndarray:
        B, T = ids.shape
        chosen = np.empty((B, max_new_tokens), dtype=np.int64)
        logits, cache = self._step(ids, 0, self._empty_cache(B))
        for step in range(max_new_tokens):
            chosen[:, step] = logits.argmax(-1)
            on_token()
            if step + 1 < max_new_tokens:
                logits, cache = self._step(chosen[:, step : step + 1], T + step, cache)
        return chosen

    def weight_bytes(self) -> int | None:
        return file_bytes(self._graph(self.precision))
