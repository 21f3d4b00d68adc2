"""What ``zoo bench`` times: one :class:`Runner` per subject (the reference, or a registered variant).

Every runner does the same three things on the same weights, so one table can
compare them: load the weights, run a prefill over ``B x T`` prompt tokens,
and decode greedily with a KV cache, calling ``on_token`` as soon as each step's
tokens are known. The worker (``zoo.bench.worker``) does the timing; a runner
only has to make each call do the real work and return when it is done (on a
GPU: synchronised), or say why it cannot decode (:meth:`Runner.why_no_decode`)
and how it decodes where that is not the zoo's loop (:meth:`Runner.decode_note`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReferenceRunner", "Runner", "VariantRunner"]


class Runner(abc.ABC):
    """One subject of a benchmark.

    ``weights_dir`` is a ``save_pretrained`` folder (``config.json`` +
    ``model.safetensors``, float32) that every subject reads.
    """

    def __init__(self, weights_dir: Path, precision: str, device: str, threads: int) -> None:
        self.weights_dir = weights_dir
        self.precision = precision
        self.device = device
        self.threads = threads

    def prepare(self) -> None:  # noqa: B027 - optional: most runners have nothing to do before loading
        """Untimed, once, before :meth:`load`: import what loading needs, so import time is not load time."""

    @abc.abstractmethod
    def load(self) -> None:
        """Timed as load time: read the weights and make the model ready to run.

        Ready means it has computed the logits of one token: a variant that
        builds its engine on the first forward after an import (ONNX Runtime's
        session, llama.cpp's GGUF and quantisation) pays for that here, not in
        the first prefill's warm-up.
        """

    @abc.abstractmethod
    def prefill(self, ids: np.ndarray) -> None:
        """One forward pass over the prompt ``ids [B, T]`` (int64), filling the KV cache if there is one."""

    def why_no_decode(self) -> str | None:
        """``None`` when :meth:`generate` decodes with a KV cache; otherwise why decoding is not measured."""
        return None

    def decode_note(self) -> str | None:
        """How :meth:`generate` decodes, where that is not what the report's header says; else ``None``."""
        return None

    @abc.abstractmethod
    def generate(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> None:
        """Greedy decoding of exactly ``max_new_tokens`` after ``ids [B, T]``, with a KV cache.

        Call ``on_token()`` once per step, when that step's ``B`` tokens are known
        (the first call marks the time to first token).
        """

    def weight_bytes(self) -> int | None:
        """Bytes the loaded weights occupy, or ``None`` if the subject cannot tell."""
        return None

    @abc.abstractmethod
    def fidelity(self, reference: str) -> dict[str, float] | str:
        """KL, top-1 agreement and perplexity ratio against ``reference`` in float32 on learned weights
        (:func:`zoo.fidelity.figures_of`), or why the subject cannot report them."""


def _torch_dtype(precision: str) -> Any:
    import torch

    return getattr(torch, precision)


class VariantRunner(Runner):
    """A registered variant, loaded with :func:`zoo.load` and driven through its static KV cache.

    A variant without one (``capabilities.kv_cache`` false) is prefilled by a
    full forward over the prompt, which is all a prefill is without a cache. It
    is decoded by its own greedy loop where it has one
    (:meth:`zoo.GPT2.generate_greedy`: an engine's generation, with the
    engine's own cache), and otherwise not: each step would run the whole
    sequence again.
    """

    def __init__(self, name: str, weights_dir: Path, precision: str, device: str, threads: int) -> None:
        super().__init__(weights_dir, precision, device, threads)
        self.name = name
        self.model: Any = None
        self.kv_cache = True
        self.own_greedy = False  # no KV cache, but a greedy loop of its own: decoded through that

    def prepare(self) -> None:
        import zoo

        self.kv_cache = zoo.get_variant(self.name).capabilities.kv_cache  # imports the plugin: not load time

    def load(self) -> None:
        import torch

        import zoo

        self.model = zoo.load(self.name, self.weights_dir, device=self.device, dtype=self.precision)
        with torch.inference_mode():
            self.model(torch.zeros(1, 1, dtype=torch.int64, device=self.device))  # the first token's logits
            self._sync()
        self.own_greedy = not self.kv_cache and zoo.implements(self.model, "generate_greedy")

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def prefill(self, ids: np.ndarray) -> None:
        import torch

        B, T = ids.shape
        with torch.inference_mode():
            if not self.kv_cache:
                self.model(torch.as_tensor(ids, device=self.device))
            else:
                self.model.setup_caches(B, T)
                self.model(torch.as_tensor(ids, device=self.device), input_pos=torch.arange(T, device=self.device))
            self._sync()

    def why_no_decode(self) -> str | None:
        if self.kv_cache or self.own_greedy:
            return None
        return (f"{self.name} keeps no KV cache (capabilities.kv_cache is false) and has no greedy loop of its "
                "own (generate_greedy), so each decoding step would run the whole sequence again; decode speed "
                "and time to first token are not measured")

    def decode_note(self) -> str | None:
        if not self.own_greedy:
            return None
        return (f"decoded by {self.name}'s own greedy loop (generate_greedy: the engine's generation, with the "
                "engine's KV cache), not through the zoo interface's static KV cache")

    def generate(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> None:
        import torch

        B, T = ids.shape
        model = self.model
        if self.own_greedy:
            for _ in model.generate_greedy(ids.tolist(), max_new_tokens, stop_token=None):
                on_token()
            return
        with torch.inference_mode():
            model.setup_caches(B, T + max_new_tokens)
            logits = model(torch.as_tensor(ids, device=self.device), input_pos=torch.arange(T, device=self.device))
            token = logits[:, -1].argmax(-1)  # (B,)
            self._sync()
            on_token()
            for pos in range(T, T + max_new_tokens - 1):
                logits = model(token[:, None], input_pos=torch.tensor([pos], device=self.device))
                token = logits[:, -1].argmax(-1)
                self._sync()
                on_token()

    def weight_bytes(self) -> int | None:
        return int(self.model.weight_bytes())

    def fidelity(self, reference: str) -> dict[str, float] | str:
        from zoo.fidelity import figures_of

        return figures_of(self.name, self.precision, reference=reference, device=self.device).as_dict()


class ReferenceRunner(Runner):
    """Hugging Face transformers as its users run it: ``from_pretrained`` and ``generate``."""

    def prepare(self) -> None:
        from transformers import GPT2LMHeadModel, generation  # noqa: F401 - import time is not load time

    def load(self) -> None:
        import torch
        from transformers import GPT2LMHeadModel

        model: Any = GPT2LMHeadModel.from_pretrained(self.weights_dir, dtype=_torch_dtype(self.precision))
        self.model = model.to(self.device).eval()
        self.model.generation_config.pad_token_id = self.model.config.eos_token_id
        with torch.inference_mode():
            self.model(torch.zeros(1, 1, dtype=torch.int64, device=self.device))  # the first token's logits
            self._sync()

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def prefill(self, ids: np.ndarray) -> None:
        import torch

        with torch.inference_mode():
            self.model(torch.as_tensor(ids, device=self.device), use_cache=True)
            self._sync()

    def generate(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> None:
        import torch
        from transformers.generation.streamers import BaseStreamer

        sync = self._sync

        class Ticks(BaseStreamer):  # generate() hands over the prompt first, then each step's [B] tokens
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                sync()
                on_token()

            def end(self) -> None:
                pass

        prompt = torch.as_tensor(ids, device=self.device)
        with torch.inference_mode():
            self.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                use_cache=True, streamer=Ticks())

    def fidelity(self, reference: str) -> dict[str, float] | str:
        from zoo.fidelity import figures_of

        return figures_of(reference, self.precision, reference=reference, device=self.device).as_dict()

    def weight_bytes(self) -> int | None:
        # the state dict: parameters and persistent buffers, each storage once (the tie); transformers 4.x
        # also keeps each layer's causal mask as a non-persistent buffer, which is no weight
        tensors = list(self.model.state_dict().values())
        return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())
