"""GPT-2 run by CTranslate2: the model spec made from canonical weights, and the model.

CTranslate2's own converter reads a Hugging Face model folder through
transformers; here its model spec (``TransformerDecoderModelSpec``, what that
converter's GPT-2 loader fills) is filled straight from the canonical weights,
so an import writes no Hugging Face folder and loads no transformers model.
The spec is saved in float32 to a temporary folder and loaded by a
``ctranslate2.Generator`` at the compute type asked for (``int8_float32``
quantises the weights as it loads them); the folder is deleted once loaded.

Logits come from ``Generator.forward_batch``, which returns those of every
position. It keeps no cache between calls, so the variant declares no KV
cache. A left-padded row is run as its real tokens alone (what a mask selects,
at positions ``0...``): CTranslate2 pads a batch of unequal rows itself, on
the right.

Greedy generation (:meth:`CTranslate2GPT2.generate_greedy`, which
``zoo.generate`` and ``zoo bench`` use) goes through ``generate_batch``
instead, whose loop keeps a KV cache.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

import zoo
from zoo.host import HostGPT2, float32_copies, initial_weights, placement

if TYPE_CHECKING:
    import torch

COMPUTE_TYPES = {"float32": "float32", "int8": "int8_float32"}


def spec(config: zoo.GPT2Config, weights: Mapping[str, np.ndarray]) -> Any:
    """CTranslate2's model spec of GPT-2 holding canonical ``weights`` (float32, ``nn.Linear`` orientation)."""
    from ctranslate2.specs import common_spec, transformer_spec

    model = transformer_spec.TransformerDecoderModelSpec.from_config(
        config.n_layer, config.n_head, pre_norm=True, activation=common_spec.Activation.GELUTanh)
    # CTranslate2's GPT-2 converter leaves this unset (its default is 1e-5, GPT-2's): set it for other configs
    model.config.layer_norm_epsilon = config.layer_norm_epsilon
    decoder = model.decoder
    decoder.scale_embeddings = False
    decoder.embeddings.weight = weights["wte.weight"]
    decoder.position_encodings.encodings = weights["wpe.weight"]
    decoder.layer_norm.gamma, decoder.layer_norm.beta = weights["ln_f.weight"], weights["ln_f.bias"]
    decoder.projection.weight = weights["wte.weight"]  # the tied head: the saved model aliases the two

    def linear(target: Any, name: str) -> None:
        target.weight, target.bias = weights[name + ".weight"], weights[name + ".bias"]

    for i, layer in enumerate(decoder.layer):
        p = f"h.{i}."
        attention, ffn = layer.self_attention, layer.ffn
        attention.layer_norm.gamma, attention.layer_norm.beta = weights[p + "ln_1.weight"], weights[p + "ln_1.bias"]
        linear(attention.linear[0], p + "attn.c_attn")
        linear(attention.linear[1], p + "attn.c_proj")
        ffn.layer_norm.gamma, ffn.layer_norm.beta = weights[p + "ln_2.weight"], weights[p + "ln_2.bias"]
        linear(ffn.linear_0, p + "mlp.c_fc")
        linear(ffn.linear_1, p + "mlp.c_proj")
    tokens = token_names(config.vocab_size)
    model.register_vocabulary(tokens)
    model.config.bos_token = model.config.eos_token = model.config.unk_token = tokens[config.eos_token_id]
    return model


def token_names(vocab_size: int) -> list[str]:
    """The vocabulary the model is saved with: ``<0>``, ``<1>``...; ids are what it is given, names only label them."""
    return [f"<{i}>" for i in range(vocab_size)]


def generator(config: zoo.GPT2Config, weights: Mapping[str, np.ndarray], compute_type: str, threads: int) -> Any:
    """A ``ctranslate2.Generator`` on the CPU holding ``weights`` at ``compute_type``."""
    import ctranslate2

    model = spec(config, weights)
    model.validate()
    model.optimize(quantization="float32")
    with tempfile.TemporaryDirectory(prefix="zoo-ctranslate2-") as tmp:
        model.save(tmp)
        return ctranslate2.Generator(tmp, device="cpu", compute_type=compute_type, intra_threads=threads,
                                     inter_threads=1)


class CTranslate2GPT2(HostGPT2):
    """``zoo.GPT2`` run by a CTranslate2 ``Generator``, made on the first forward after an import."""

    def __init__(self, config: zoo.GPT2Config, scheme: str = "float32") -> None:
        if scheme not in COMPUTE_TYPES:
            raise ValueError(f"unknown scheme {scheme!r}; choose from {', '.join(COMPUTE_TYPES)}")
        self.config, self.scheme = config, scheme
        self.weights: dict[str, np.ndarray] = {}
        self.generator: Any = None
        self.threads: int | None = None  # intra-op threads; None: torch.get_num_threads() when it is made

    @classmethod
    def build(cls, config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
              weights: Mapping[str, Any] | None = None, scheme: str = "float32") -> CTranslate2GPT2:
        placement("the CTranslate2 variants (this CPU offers no bfloat16 compute type)", device, dtype)
        model = cls(config, scheme)
        model.import_weights(initial_weights(config, weights))
        return model

    def import_weights(self, weights: Mapping[str, Any]) -> None:
        self.weights, self.generator = float32_copies(weights, self.config), None

    def export_weights(self) -> dict[str, torch.Tensor]:
        """Copies of the float32 weights imported (CTranslate2 does not give back the int8 ones it holds)."""
        import torch

        return {name: torch.from_numpy(array.copy()) for name, array in self.weights.items()}

    def _generator(self) -> Any:
        if self.generator is None:
            import torch

            self.generator = generator(self.config, self.weights, COMPUTE_TYPES[self.scheme],
                                       self.threads or torch.get_num_threads())
        return self.generator

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        zoo.check_inputs(self.config, input_ids, attention_mask, input_pos, device=self.device)
        if input_pos is not None:
            raise zoo.CapabilityError("the CTranslate2 variants have no KV cache (forward_batch keeps none); "
                                      "run full forwards instead")
        ids = input_ids.numpy()
        B, T = ids.shape
        keep = np.ones((B, T), dtype=bool) if attention_mask is None else attention_mask.numpy().astype(bool)
        rows = [ids[b][keep[b]].tolist() for b in range(B)]  # each row's real tokens, at positions 0...
        logits = np.zeros((B, T, self.config.vocab_size), dtype=np.float32)  # padded positions: zeros
        ran = [b for b in range(B) if rows[b]]
        if ran:
            out = np.asarray(self._generator().forward_batch([rows[b] for b in ran]))  # (B', T', V), right-padded
            for i, b in enumerate(ran):
                logits[b, keep[b]] = out[i, : len(rows[b])]
        return torch.from_numpy(logits)

    def generate_greedy(self, prompts: list[list[int]], max_new_tokens: int, *,
                        stop_token: int | None) -> Iterator[list[int | None]]:
        """Greedy decoding by ``Generator.generate_batch`` (``sampling_topk=1``), whose loop keeps a KV cache.

        ``generate_batch`` forwards the first ``shortest`` tokens of every prompt
        at once and feeds each longer prompt's remaining tokens through its
        loop, one a step, reporting them as steps too: row ``b``'s ``k``-th new
        token is its step ``len(prompts[b]) - shortest + k``. Its loop runs in a
        thread of its own; its callback hands each row's new tokens over and
        stops a row once it has ``max_new_tokens``. ``end_token=[]`` stops no
        row (CTranslate2's default would stop at the vocabulary's end token).
        """
        names = token_names(self.config.vocab_size)
        B = len(prompts)
        shortest = min(len(p) for p in prompts)
        fed = [len(p) - shortest for p in prompts]  # prompt tokens each row's first steps report
        tokens: queue.SimpleQueue[tuple[int, int] | BaseException | None] = queue.SimpleQueue()
        closed = threading.Event()

        def on_step(step: Any) -> bool:  # on CTranslate2's thread: True stops that row
            b = step.batch_id
            k = step.step - fed[b]
            if k >= 0:
                tokens.put((b, step.token_id))
            return closed.is_set() or k + 1 >= max_new_tokens

        def run(engine: Any) -> None:
            try:
                engine.generate_batch(
                    [[names[t] for t in p] for p in prompts], max_length=max_new_tokens + max(fed),
                    include_prompt_in_result=False, sampling_topk=1, beam_size=1,
                    end_token=[] if stop_token is None else [stop_token], return_end_token=True, callback=on_step)
                tokens.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
                tokens.put(exc)

        thread = threading.Thread(target=run, args=(self._generator(),), name="zoo-ctranslate2-generate",
                                  daemon=True)
        thread.start()
        waiting: list[deque[int]] = [deque() for _ in range(B)]
        stopped = [False] * B
        try:
            for _ in range(max_new_tokens):
                while any(not stopped[b] and not waiting[b] for b in range(B)):
                    item = tokens.get()
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:
                        raise RuntimeError("CTranslate2's generate_batch ended before every row had its tokens")
                    waiting[item[0]].append(item[1])
                step: list[int | None] = []
                for b in range(B):
                    if stopped[b]:
                        step.append(None)
                        continue
                    token = waiting[b].popleft()
                    stopped[b] = token == stop_token
                    step.append(token)
                yield step
                if all(stopped):
                    return
        finally:
            closed.set()  # a consumer that stops early stops the engine at its next step
            thread.join()
