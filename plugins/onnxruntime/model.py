"""The ONNX Runtime model: canonical weights kept in NumPy, a session made from :mod:`.graph` on first use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

import zoo
from zoo.host import HostGPT2, float32_copies, initial_weights, placement
from zoo.weight_map import HF, TIED, from_canonical, to_canonical

from .graph import SCHEMES, dequantised, io_names, quantise_int4, quantise_int8, with_weights

if TYPE_CHECKING:
    import torch


class OnnxGPT2(HostGPT2):
    """``zoo.GPT2`` run by an ONNX Runtime session made from the graph of its config and its weights.

    The weights are kept as canonical float32 NumPy arrays; the session (and
    its quantisation) is made on the first forward after an import. The KV
    cache is the graph's ``present`` outputs, kept as ``OrtValue`` between
    calls and bound back as ``past`` inputs, so no step copies it.
    """

    def __init__(self, config: zoo.GPT2Config, scheme: str = "float32") -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
        self.config, self.scheme = config, scheme
        self.weights: dict[str, np.ndarray] = {}
        self.session: Any = None
        self.threads: int | None = None  # intra-op threads; None: torch.get_num_threads() at session creation
        self._dequantised: dict[str, np.ndarray] | None = None
        self._weight_bytes = 0
        self.max_batch_size = 0
        self.max_seq_length: int | None = None
        self._cache: list[Any] = []  # OrtValues: past.{i}.key, past.{i}.value
        self._cache_len = 0

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
              weights: Mapping[str, Any] | None = None, scheme: str = "float32") -> OnnxGPT2:
        placement("the ONNX Runtime variants", device, dtype)
        model = cls(config, scheme)
        model.import_weights(initial_weights(config, weights))
        return model

    # -- weights
    def import_weights(self, weights: Mapping[str, Any]) -> None:
        self.weights, self.session, self._dequantised = float32_copies(weights, self.config), None, None
        self._cache, self._cache_len = [], 0

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Copies: the float32 weights imported, or (quantised) the values the session computes with."""
        import torch

        if self.scheme == "float32":
            return {name: torch.from_numpy(array.copy()) for name, array in self.weights.items()}
        if self._dequantised is None:
            self._session()
        assert self._dequantised is not None
        return {name: torch.from_numpy(np.array(t, dtype=np.float32)) for name, t in self._dequantised.items()}

    def weight_bytes(self) -> int:
        """Bytes of the graph's initializers, as stored (quantised ones with their scales)."""
        self._session()
        return self._weight_bytes

    def _session(self) -> Any:
        if self.session is not None:
            return self.session
        import onnxruntime as ort
        import torch

        graph = with_weights(self.config, self.weights)
        if self.scheme != "float32":
            graph = quantise_int8(graph) if self.scheme == "int8" else quantise_int4(graph)
            shapes = {key: t.shape for key, t in from_canonical(self.weights, HF) if key != TIED[0]}
            hf = {key: _fit(value, shapes[key]) for key, value in dequantised(graph).items()}
            self._dequantised = {name: np.ascontiguousarray(t, dtype=np.float32)
                                 for name, t in to_canonical(hf, self.config, HF).items()}
        self._weight_bytes = sum(init.ByteSize() for init in graph.graph.initializer)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: it warns about every shape it cannot infer
        self.session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._names = io_names(self.config.n_layer)
        return self.session

    # -- running
    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        zoo.check_cache_size(self.config, max_batch_size, max_seq_length)
        self.max_batch_size, self.max_seq_length = max_batch_size, max_seq_length
        self._cache, self._cache_len = [], 0

    def _empty(self, batch: int) -> list[Any]:
        from onnxruntime import OrtValue

        empty = np.zeros((batch, self.config.n_head, 0, self.config.head_size), dtype=np.float32)
        return [OrtValue.ortvalue_from_numpy(empty) for _ in range(2 * self.config.n_layer)]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        import torch
        from onnxruntime import OrtValue

        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device,
                         max_seq_length=self.max_seq_length, max_batch_size=self.max_batch_size,
                         cache_cursor=self._cache_len)
        session = self._session()
        ids = input_ids.numpy().astype(np.int64)
        B, T = ids.shape
        if input_pos is None:
            start, past = 0, self._empty(B)
        else:
            start = int(input_pos[0])  # check_inputs: consecutive, and start <= the slots written
            if start == 0 or not self._cache:
                past = self._empty(B)
            elif start < self._cache_len:  # going back: forget the slots from start on
                past = [OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v.numpy()[:, :, :start]))
                        for v in self._cache]
            else:
                past = self._cache
        if attention_mask is None:
            mask = np.ones((B, start + T), dtype=np.int64)
            positions = np.broadcast_to(np.arange(start, start + T, dtype=np.int64), (B, T))
        else:
            mask = attention_mask.numpy().astype(np.int64)
            positions = np.where(mask > 0, mask.cumsum(-1) - 1, 1)[:, start: start + T]  # as Hugging Face's generate
        inputs, outputs = self._names
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids))
        binding.bind_cpu_input("position_ids", np.ascontiguousarray(positions))
        binding.bind_cpu_input("attention_mask", np.ascontiguousarray(mask))
        for name, value in zip(inputs[3:], past, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        logits, *present = binding.get_outputs()
        if input_pos is not None:
            self._cache, self._cache_len = present, start + T
        return torch.from_numpy(logits.numpy())


def _fit(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` cut to ``shape`` (4-bit weights are padded to whole blocks along the input dimension)."""
    return np.ascontiguousarray(array[tuple(slice(0, n) for n in shape)], dtype=np.float32)
