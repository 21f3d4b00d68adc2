"""Weight formats: the declarations in the spec, llm.c's and llama.cpp's layouts byte for byte,
round trips between every pair of formats, and ``zoo.load`` from each."""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import zoo
from zoo import GPT2Config, WeightsError
from zoo._convert import convert
from zoo._weights import read_weights
from zoo.formats import FORMATS, Q8_0_BLOCK
from zoo.formats.gguf import gpt2_vocab
from zoo.weight_map import SPEC, TIED, canonical_shapes, template_of

GGUF, LLMC = FORMATS["gguf"].layout, FORMATS["llmc"].layout
CONFIG = GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4)
LAYER_KINDS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
               "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
               "mlp.c_proj.weight", "mlp.c_proj.bias")


def canonical_weights(config: GPT2Config, seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Every canonical tensor distinct and random, biases and norms included."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) * scale for name, shape in canonical_shapes(config).items()}


def write(weights: dict[str, torch.Tensor], config: GPT2Config, path: Path, to: str, dtype: str = "float32") -> Path:
    return convert(weights, path, to=to, dtype=dtype, config=config, layout="canonical")


def file_name(fmt: str, stem: str = "model") -> str:
    suffixes = FORMATS[fmt].suffixes
    return stem + (suffixes[0] if suffixes else "")


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return canonical_weights(CONFIG, seed=0)


# -- the declarations -----------------------------------------------------------------------------------


def test_every_format_is_declared_with_its_layout_and_precisions():
    assert list(FORMATS) == ["hf", "safetensors", "nanogpt", "llmc", "gguf"]
    assert {name: f.dtypes for name, f in FORMATS.items()} == {
        "hf": ("float32", "bfloat16"), "safetensors": ("float32", "bfloat16"),
        "nanogpt": ("float32", "bfloat16"), "llmc": ("float32", "bfloat16"),
        "gguf": ("float32", "bfloat16", "q8_0"),
    }
    assert FORMATS["hf"].folder and not any(f.folder for n, f in FORMATS.items() if n != "hf")


@pytest.mark.parametrize("layout", [LLMC, GGUF], ids=["llmc", "gguf"])
def test_renaming_layouts_name_every_tensor_once(layout):
    renamed = dict(layout.names)
    assert [t.name for t in SPEC] == [n for n in renamed if n != TIED[0]]
    stored = [layout.key(name) for name in canonical_shapes(CONFIG)]
    assert len(set(stored)) == len(stored)


def test_template_of_splits_the_layer_index():
    assert template_of("h.12.mlp.c_fc.bias") == ("h.{i}.mlp.c_fc.bias", 12)
    assert template_of("wte.weight") == ("wte.weight", None)
    assert LLMC.key("h.3.attn.c_attn.weight") == "qkvw[3]"
    assert GGUF.key("h.3.mlp.c_proj.weight") == "blk.3.ffn_down.weight"
    assert GGUF.key(TIED[0]) == "output.weight"


def test_gguf_precisions_follow_llama_cpp():
    gguf_format = FORMATS["gguf"]
    shapes = canonical_shapes(CONFIG)
    reduced = {n for n, s in shapes.items() if gguf_format.stored_dtype(n, s, "bfloat16") == "bfloat16"}
    # llama.cpp keeps 1-D tensors and the position embedding in float32
    assert reduced == {"wte.weight"} | {f"h.{i}.{k}" for i in range(2) for k in LAYER_KINDS if "c_" in k and "weight" in k}
    assert gguf_format.stored_dtype("h.0.mlp.c_fc.weight", (128, 32), "q8_0") == "q8_0"
    assert gguf_format.stored_dtype("h.0.mlp.c_fc.weight", (96, 24), "q8_0") == "float32"  # 24 is no whole block
    assert all(FORMATS["llmc"].stored_dtype(n, s, "bfloat16") == "bfloat16" for n, s in shapes.items())
    with pytest.raises(WeightsError, match="the llmc format stores float32, bfloat16, not 'q8_0'"):
        FORMATS["llmc"].stored_dtype("wte.weight", (300, 32), "q8_0")


# -- llm.c, byte for byte --------------------------------------------------------------------------------


def llmc_bytes(weights: dict[str, torch.Tensor], config: GPT2Config, version: int) -> bytes:
    """The file llm.c's train_gpt2.py write_model writes, rebuilt here from its description."""
    padded = math.ceil(config.vocab_size / 128) * 128
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, version, config.n_positions, config.vocab_size, config.n_layer, config.n_head,
                  config.n_embd, padded]
    wte = torch.cat([weights["wte.weight"], torch.zeros(padded - config.vocab_size, config.n_embd)])
    parts = [wte, weights["wpe.weight"]]
    for kind in LAYER_KINDS:  # each kind for all layers, in llm.c's order
        parts += [weights[f"h.{i}.{kind}"] for i in range(config.n_layer)]
    parts += [weights["ln_f.weight"], weights["ln_f.bias"]]
    if version == 3:
        body = [p.numpy().astype("<f4").tobytes() for p in parts]
    else:
        body = [p.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes() for p in parts]
    return header.tobytes() + b"".join(body)


@pytest.mark.parametrize(("dtype", "version"), [("float32", 3), ("bfloat16", 5)])
def test_llmc_file_is_llm_c_write_model_layout(tmp_path, weights, dtype, version):
    path = write(weights, CONFIG, tmp_path / "gpt2.bin", "llmc", dtype)
    assert path.read_bytes() == llmc_bytes(weights, CONFIG, version)


@pytest.mark.parametrize("version", [3, 5])
def test_llmc_file_from_llm_c_is_read(tmp_path, weights, version):
    path = tmp_path / "gpt2_124M.bin"
    path.write_bytes(llmc_bytes(weights, CONFIG, version))
    config, read = zoo.open_weights(path)
    assert config == CONFIG
    for name, tensor in weights.items():
        expected = tensor if version == 3 else tensor.to(torch.bfloat16)
        assert read[name].dtype == expected.dtype and torch.equal(read[name], expected), name


# -- GGUF, as llama.cpp reads it -------------------------------------------------------------------------


def gguf_names(config: GPT2Config) -> list[str]:
    per_layer = ("attn_norm.weight", "attn_norm.bias", "attn_qkv.weight", "attn_qkv.bias", "attn_output.weight",
                 "attn_output.bias", "ffn_norm.weight", "ffn_norm.bias", "ffn_up.weight", "ffn_up.bias",
                 "ffn_down.weight", "ffn_down.bias")
    names = ["token_embd.weight", "position_embd.weight"]
    for i in range(config.n_layer):
        names += [f"blk.{i}.{n}" for n in per_layer]
    return [*names, "output_norm.weight", "output_norm.bias"]


def field(reader: gguf.GGUFReader, key: str):
    f = reader.get_field(key)
    assert f is not None, key
    return f.contents()


@pytest.mark.parametrize(("dtype", "kind"), [("float32", "F32"), ("bfloat16", "BF16"), ("q8_0", "Q8_0")])
def test_gguf_file_has_llama_cpp_gpt2_names_metadata_and_types(tmp_path, weights, dtype, kind):
    path = write(weights, CONFIG, tmp_path / "model.gguf", "gguf", dtype)
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.architecture") == "gpt2"
    assert field(reader, "gpt2.context_length") == 16
    assert field(reader, "gpt2.embedding_length") == 32
    assert field(reader, "gpt2.feed_forward_length") == 128
    assert field(reader, "gpt2.block_count") == 2
    assert field(reader, "gpt2.attention.head_count") == 4
    assert field(reader, "gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5)
    assert field(reader, "general.file_type") == {"F32": 0, "BF16": 32, "Q8_0": 7}[kind]
    assert field(reader, "general.name") == "gpt2"
    assert field(reader, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    tensors = {t.name: t for t in reader.tensors}
    assert list(tensors) == gguf_names(CONFIG)  # no output.weight: llama.cpp ties it to token_embd
    # GGUF lists the innermost dimension first: [in, out] there is nn.Linear's [out, in]
    assert tensors["token_embd.weight"].shape.tolist() == [32, 300]
    assert tensors["position_embd.weight"].shape.tolist() == [32, 16]
    assert tensors["blk.1.attn_qkv.weight"].shape.tolist() == [32, 96]
    assert tensors["blk.1.ffn_down.weight"].shape.tolist() == [128, 32]
    for name, tensor in tensors.items():
        matrix = name.endswith(("token_embd.weight", "qkv.weight", "output.weight", "up.weight", "down.weight"))
        assert tensor.tensor_type.name == (kind if matrix else "F32"), name
    assert np.array_equal(tensors["blk.0.ffn_up.bias"].data, weights["h.0.mlp.c_fc.bias"].numpy())
    if kind == "F32":
        assert np.array_equal(tensors["blk.1.attn_output.weight"].data, weights["h.1.attn.c_proj.weight"].numpy())


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-ins for bytes, as its encoder.py defines them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def test_gguf_embeds_the_gpt2_tokenizer(tmp_path):
    config = GPT2Config(vocab_size=50260, n_positions=4, n_embd=32, n_layer=1, n_head=1)  # 3 ids beyond GPT-2's
    weights = {n: torch.zeros(s) for n, s in canonical_shapes(config).items()}
    reader = gguf.GGUFReader(write(weights, config, tmp_path / "m.gguf", "gguf"))
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert field(reader, "tokenizer.ggml.bos_token_id") == field(reader, "tokenizer.ggml.eos_token_id") == 50256
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    tokens, types = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == 50260
    assert tokens[50256:] == ["<|endoftext|>", "[PAD50257]", "[PAD50258]", "[PAD50259]"]
    assert types[50255:] == [1, 3, 4, 4, 4]  # normal, control, user-defined
    enc = zoo.get_tokenizer()
    to_bytes = {c: b for b, c in bytes_to_unicode().items()}
    for i in range(50256):
        assert bytes(to_bytes[c] for c in tokens[i]) == enc.decode_single_token_bytes(i), i
    merges = field(reader, "tokenizer.ggml.merges")
    assert len(merges) == 50000 and merges[0] == "Ġ t"
    assert "".join(merges[-1].split(" ")) == tokens[50255]  # the last merge makes the last BPE token


def test_a_small_vocabulary_keeps_the_merges_that_build_it():
    tokens, types, merges = gpt2_vocab(300)
    assert len(tokens) == len(types) == 300 and set(types) == {1}
    assert len(merges) == 300 - 256
    assert all("".join(m.split(" ")) in tokens for m in merges)


def test_gguf_output_weight_is_an_optional_tie(tmp_path, weights):
    path = write(weights, CONFIG, tmp_path / "model.gguf", "gguf")
    reader = gguf.GGUFReader(path)

    def rewrite(output: torch.Tensor, name: str) -> Path:
        writer = gguf.GGUFWriter(tmp_path / name, "gpt2")
        for key in ("context_length", "embedding_length", "feed_forward_length", "block_count"):
            writer.add_uint32(f"gpt2.{key}", field(reader, f"gpt2.{key}"))
        writer.add_uint32("gpt2.attention.head_count", 4)
        writer.add_float32("gpt2.attention.layer_norm_epsilon", 1e-5)
        for t in reader.tensors:
            writer.add_tensor(t.name, np.array(t.data))
        writer.add_tensor("output.weight", output.numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return tmp_path / name

    config, read = zoo.open_weights(rewrite(weights["wte.weight"], "tied.gguf"))
    assert config == CONFIG and torch.equal(read["wte.weight"], weights["wte.weight"])
    with pytest.raises(WeightsError, match=r"'output\.weight' differs from the token embedding"):
        zoo.open_weights(rewrite(weights["wte.weight"] + 1, "untied.gguf"))


# -- readers are chosen by file type, not by name or keys -------------------------------------------------


@pytest.mark.parametrize(("fmt", "renamed"), [("llmc", "weights.ckpt"), ("gguf", "weights.bin"),
                                              ("nanogpt", "weights.gguf")])
def test_the_reader_follows_the_magic_number_not_the_extension(tmp_path, weights, fmt, renamed):
    path = write(weights, CONFIG, tmp_path / file_name(fmt), fmt)
    path.rename(tmp_path / renamed)
    config, read = zoo.open_weights(tmp_path / renamed)
    assert config == CONFIG
    assert all(torch.equal(read[n], weights[n]) for n in weights)


# -- round trips between every pair of formats -------------------------------------------------------------


@st.composite
def configs(draw) -> GPT2Config:
    """Small configs; widths of whole Q8_0 blocks are drawn often, so Q8_0 really quantises."""
    n_head, head_size = draw(st.sampled_from([(1, 4), (2, 4), (3, 8), (2, 16), (1, 32), (4, 8)]))
    return GPT2Config(vocab_size=draw(st.integers(1, 260)), n_positions=draw(st.integers(1, 12)),
                      n_embd=n_head * head_size, n_layer=draw(st.integers(1, 2)), n_head=n_head)


def expected_after(x: torch.Tensor, hops: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What the declared precisions make of ``x`` through ``hops``: (expected value, allowed error).

    float32 is exact and bfloat16 rounding is idempotent, so without Q8_0 the
    result is exact; each Q8_0 hop may err by half a step of its block (the
    step is the block's largest magnitude / 127) plus 127 times the rounding of
    that step to the float16 the format stores it in (relative 2**-11, or
    2**-25 absolute where the step is a float16 subnormal).
    """
    lossy = set(hops) - {"float32"}
    if "q8_0" not in lossy:
        return (x.to(torch.bfloat16).float() if lossy else x), torch.zeros_like(x)
    blocks = x.reshape(-1, Q8_0_BLOCK).abs().amax(dim=1, keepdim=True).expand(-1, Q8_0_BLOCK).reshape(x.shape)
    step = blocks * 1.01 / 127
    error = hops.count("q8_0") * (0.5 * step + 127 * (step * 2.0**-11 + 2.0**-25))
    error = error + hops.count("bfloat16") * 2.0**-8 * (x.abs() + error)
    return x, error


PAIRS = list(itertools.product(FORMATS, repeat=2))


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs(), seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 300.0]), data=st.data())
def test_round_trip_a_to_b_to_a_keeps_what_the_formats_declare(a, b, config, seed, scale, data):
    dtype_a = data.draw(st.sampled_from(FORMATS[a].dtypes), label="dtype_a")
    dtype_b = data.draw(st.sampled_from(FORMATS[b].dtypes), label="dtype_b")
    weights = canonical_weights(config, seed, scale)
    with tempfile.TemporaryDirectory() as folder:
        first = write(weights, config, Path(folder) / file_name(a, "first"), a, dtype_a)
        middle = convert(first, Path(folder) / file_name(b, "middle"), to=b, dtype=dtype_b)
        last = convert(middle, Path(folder) / file_name(a, "last"), to=a, dtype=dtype_a)
        back_config, back = read_weights(last, dequantize=True)
        assert back_config == config
        for name, x in weights.items():
            hops = [FORMATS[f].stored_dtype(name, tuple(x.shape), d)
                    for f, d in ((a, dtype_a), (b, dtype_b), (a, dtype_a))]
            want, error = expected_after(x, hops)
            got = back[name].float()
            note(f"{name}: hops {hops}")
            if not error.any():
                assert torch.equal(got, want), f"{name} through {hops}"
            else:
                assert ((got - want).abs() <= error).all(), f"{name} through {hops}: beyond the Q8_0 error"


# -- zoo.load reads each format directly -------------------------------------------------------------------


def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


@pytest.mark.parametrize("fmt", ["hf", "safetensors", "nanogpt", "llmc", "gguf"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_zoo_load_reads_each_format(tmp_path, weights, fmt, dtype):
    ids = torch.randint(0, CONFIG.vocab_size, (2, 7), generator=torch.Generator().manual_seed(1))
    # the weights as the format declares it stores them
    declared = {n: t.to(torch.bfloat16).float() if FORMATS[fmt].stored_dtype(n, tuple(t.shape), dtype) == "bfloat16"
                else t for n, t in weights.items()}
    expected = logits_of(zoo.load("pure", declared, config=CONFIG, layout="canonical"), ids)
    model = zoo.load("pure", write(weights, CONFIG, tmp_path / file_name(fmt), fmt, dtype))
    assert model.config == CONFIG
    assert torch.equal(logits_of(model, ids), expected)
    if dtype == "bfloat16":  # and the rounding really happened
        assert not torch.equal(expected, logits_of(zoo.load("pure", weights, config=CONFIG, layout="canonical"), ids))


def test_zoo_load_refuses_q8_0_gguf_and_names_the_fix(tmp_path, weights):
    path = write(weights, CONFIG, tmp_path / "model.gguf", "gguf", "q8_0")
    with pytest.raises(WeightsError, match=r"quantised \(Q8_0\).*zoo convert .*model.gguf model.safetensors"):
        zoo.load("pure", path)
