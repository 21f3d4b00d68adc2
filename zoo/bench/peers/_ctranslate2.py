"""CTranslate2: OpenNMT's inference engine for Transformers, with its own GPT-2 converter.

The weights are converted by ``ctranslate2.converters.TransformersConverter``
straight from the ``save_pretrained`` folder, once per precision (``int8``
stores int8 weights, so loading does not quantise). Decoding is
``Generator.generate_batch`` with the prompt forwarded at once
(``include_prompt_in_result=False``), greedy (``sampling_topk=1``), no end
token, so every sequence gets exactly ``max_new_tokens``; its per-token
callback marks each step. Prefill is the same call for one token: the prompt
forwarded into the KV cache and the first token chosen, as a user's first
call costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._common import PeerRunner, cached, file_bytes

__all__ = ["CTranslate2Runner"]


class _Vocabulary:
    """The part of a Hugging Face tokenizer that CTranslate2's GPT-2 loader reads: tokens and special tokens.

    The weights folder holds no tokenizer; the zoo's offline GPT-2 vocabulary
    (sized to the model, as the GGUF writer sizes it) stands in for one.
    """

    def __init__(self, tokens: list[str], eos_token_id: int) -> None:
        self.tokens = tokens
        self.bos_token = self.eos_token = self.unk_token = tokens[eos_token_id]

    def get_vocab(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}


def _convert(weights_dir: Path, out: Path, quantization: str, tokens: list[str], eos_token_id: int) -> None:
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class: Any, model_name_or_path: str, **kwargs: Any) -> _Vocabulary:
            return _Vocabulary(tokens, eos_token_id)

    Converter(str(weights_dir)).convert(str(out), quantization=quantization)


class CTranslate2Runner(PeerRunner):
    PEER = "ctranslate2"
    PRECISIONS: ClassVar[Mapping[str, str]] = {"float32": "float32", "int8": "int8"}

    generator: Any = None

    def _tokens(self) -> list[str]:
        from ...formats.gguf import gpt2_vocab

        return gpt2_vocab(self.config.vocab_size)[0]

    def _model_dir(self) -> Path:
        return self.cache_dir / self.precision

    def prepare(self) -> None:
        tokens = self._tokens()
        cached(self._model_dir(), lambda out: _convert(self.weights_dir, out, self.precision, tokens,
                                                        self.config.eos_token_id))

    def load(self) -> None:
        import ctranslate2

        self.tokens = self._tokens()
        self.generator = ctranslate2.Generator(str(self.converted(self._model_dir())), device="cpu", compute_type=self.precision,
                                               intra_threads=self.threads, inter_threads=1)

    def _prompts(self, ids: np.ndarray) -> list[list[str]]:
        tokens = self.tokens  # generate_batch takes token strings, not ids
        return [[tokens[i] for i in row] for row in ids.tolist()]

    def _generate(self, ids: np.ndarray, max_new_tokens: int,
                  callback: Callable[[Any], bool] | None = None) -> list[list[int]]:
        results = self.generator.generate_batch(
            self._prompts(ids), max_length=max_new_tokens, min_length=0, end_token=[],
            include_prompt_in_result=False, beam_size=1, sampling_topk=1, callback=callback,
        )
        return [result.sequences_ids[0] for result in results]

    def prefill(self, ids: np.ndarray) -> None:
        self._generate(ids, 1)

    def greedy(self, ids: np.ndarray, max_new_tokens: int, on_token: Callable[[], None]) -> np.ndarray:
        batch = len(ids)
        seen: dict[int, int] = {}

        def step(result: Any) -> bool:  # called once per sequence and step
            seen[result.step] = seen.get(result.step, 0) + 1
            if seen[result.step] == batch:
                on_token()
            return False

        return np.array(self._generate(ids, max_new_tokens, step), dtype=np.int64).reshape(batch, max_new_tokens)

    def weight_bytes(self) -> int | None:
        return file_bytes(self._model_dir() / "model.bin")
