"""``zoo convert``: what it writes, what it refuses, and that a refusal writes nothing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

import zoo
from zoo import ConfigError, GPT2Config, WeightsError, WeightsMismatchError, WeightsSourceError
from zoo._cli import main
from zoo._convert import convert
from zoo.formats import FORMATS
from zoo.weight_map import HF, NANOGPT, canonical_shapes, from_canonical

CONFIG = GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4)


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {n: torch.randn(s, generator=generator) * 0.1 for n, s in canonical_shapes(CONFIG).items()}


@pytest.fixture(scope="module")
def source(tmp_path_factory, weights) -> Path:
    """A safetensors file every test converts from."""
    return convert(weights, tmp_path_factory.mktemp("src") / "model.safetensors", to="safetensors",
                   config=CONFIG, layout="canonical")


@pytest.fixture(scope="module")
def llmc_file(tmp_path_factory, source) -> Path:
    return convert(source, tmp_path_factory.mktemp("llmc") / "gpt2.bin", to="llmc")


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, source) -> Path:
    return convert(source, tmp_path_factory.mktemp("gguf") / "model.gguf", to="gguf")


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_nothing_written(folder: Path, before: list[str]) -> None:
    """The folder holds exactly what it held: no output, no temporary leftovers."""
    assert listing(folder) == before


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


# -- what convert writes --------------------------------------------------------------------------------


def test_the_hf_folder_loads_in_transformers(tmp_path, source, weights):
    folder = convert(source, tmp_path / "tiny-gpt2", to="hf")
    assert listing(folder) == ["config.json", "model.safetensors"]
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    expected = dict(from_canonical(weights, HF))
    for key, tensor in model.state_dict().items():
        if not key.endswith((".attn.bias", ".attn.masked_bias")):
            assert torch.equal(tensor, expected[key]), key
    ids = torch.arange(10).view(1, 10)
    ours = zoo.load("pure", folder)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), model(ids).logits, rtol=0, atol=1e-5)


def test_the_nanogpt_checkpoint_is_what_nanogpt_saves(tmp_path, source, weights):
    path = convert(source, tmp_path / "ckpt.pt", to="nanogpt", dtype="bfloat16")
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["model_args"] == {"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, "bias": True,
                                        "vocab_size": 300, "dropout": 0.0}
    state = checkpoint["model"]
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()  # tied, stored once
    assert state["transformer.h.1.mlp.c_fc.weight"].shape == (128, 32)  # nn.Linear: [out, in]
    assert state["transformer.h.1.mlp.c_fc.weight"].dtype == torch.bfloat16
    assert torch.equal(state["transformer.h.1.mlp.c_fc.weight"], weights["h.1.mlp.c_fc.weight"].to(torch.bfloat16))


def test_a_compiled_nanogpt_state_dict_converts(tmp_path, weights):
    checkpoint = {"model": {"_orig_mod." + k: v for k, v in from_canonical(weights, NANOGPT)},
                  "model_args": {"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, "bias": True,
                                 "vocab_size": 300}}
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    config, read = zoo.open_weights(convert(tmp_path / "ckpt.pt", tmp_path / "out.gguf", to="gguf"))
    assert config == CONFIG and all(torch.equal(read[n], weights[n]) for n in weights)


def test_a_compiled_models_bare_state_dict_loses_its_prefix(tmp_path, capsys, weights):
    (tmp_path / "config.json").write_text(CONFIG.to_hf().to_json_string())
    hf = {"_orig_mod." + k: v for k, v in from_canonical(weights, HF)}  # torch.compile(GPT2LMHeadModel)
    torch.save(hf, tmp_path / "hf.pt")
    config, read = zoo.open_weights(tmp_path / "hf.pt")
    assert config == CONFIG and all(torch.equal(read[n], weights[n]) for n in weights)
    config, read = zoo.open_weights(hf, config=CONFIG)  # in memory too
    assert all(torch.equal(read[n], weights[n]) for n in weights)
    # nanoGPT's own layout is named, as for an uncompiled state dict, and no key keeps the prefix
    torch.save({"_orig_mod." + k: v for k, v in from_canonical(weights, NANOGPT)}, tmp_path / "sd.pt")
    code, _, err = cli(capsys, tmp_path / "sd.pt", tmp_path / "out.bin", "--to", "llmc")
    assert code == 1 and "_orig_mod." not in err and err.rstrip().endswith("pass layout='nanogpt'")
    code, _, err = cli(capsys, tmp_path / "sd.pt", tmp_path / "out.bin", "--to", "llmc",
                       "--layout", "nanogpt")
    assert (code, err) == (0, "")
    config, read = zoo.open_weights(tmp_path / "out.bin")
    assert config == CONFIG and all(torch.equal(read[n], weights[n]) for n in weights)


def test_a_bare_nanogpt_state_dict_needs_its_layout_named(tmp_path, capsys, weights):
    torch.save(dict(from_canonical(weights, NANOGPT)), tmp_path / "sd.pt")
    (tmp_path / "config.json").write_text(CONFIG.to_hf().to_json_string())
    code, _, err = cli(capsys, tmp_path / "sd.pt", tmp_path / "out.bin", "--to", "llmc")
    assert code == 1 and err.count("\n") == 1  # the mismatch report, in one line
    assert "mis-shaped: transformer.h.0.mlp.c_fc.weight is [128, 32], expected [32, 128]" in err
    assert err.rstrip().endswith("is this a nanogpt checkpoint? pass layout='nanogpt'")
    code, _, err = cli(capsys, tmp_path / "sd.pt", tmp_path / "out.bin", "--to", "llmc", "--layout", "nanogpt")
    assert (code, err) == (0, "")
    assert zoo.open_weights(tmp_path / "out.bin")[0] == CONFIG


def test_the_safetensors_file_carries_its_config(source):
    config, _ = zoo.open_weights(source)  # no config.json beside it, a width no preset has
    assert config == CONFIG


def test_a_q8_0_gguf_converts_back_dequantised(tmp_path, source, weights):
    quantised = convert(source, tmp_path / "q.gguf", to="gguf", dtype="q8_0")
    assert quantised.stat().st_size < 0.5 * convert(source, tmp_path / "f.gguf", to="gguf").stat().st_size
    _, read = zoo.open_weights(convert(quantised, tmp_path / "back.safetensors", to="safetensors"))
    assert read["h.0.attn.c_attn.weight"].dtype == torch.float32
    error = (read["h.0.attn.c_attn.weight"] - weights["h.0.attn.c_attn.weight"]).abs().max()
    assert 0 < error < weights["h.0.attn.c_attn.weight"].abs().max() / 127
    assert torch.equal(read["h.0.ln_1.bias"], weights["h.0.ln_1.bias"])  # 1-D stays float32


def test_the_cli_writes_and_says_so(tmp_path, capsys, source):
    code, out, err = cli(capsys, source, tmp_path / "m.gguf", "--to", "gguf", "--dtype", "bfloat16")
    assert (code, err) == (0, "")
    assert out == f"wrote {tmp_path / 'm.gguf'} (gguf, bfloat16)\n"
    assert gguf.GGUFReader(tmp_path / "m.gguf").get_field("general.file_type").contents() == 32


# -- destinations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("to", "name"), [("gguf", "m.gguf"), ("hf", "folder")])
def test_an_existing_destination_needs_force(tmp_path, capsys, source, to, name):
    dst = tmp_path / name
    convert(source, dst, to=to, dtype="bfloat16")
    before = listing(tmp_path)
    stamp = sorted((p.name, p.stat().st_mtime_ns) for p in dst.parent.rglob("*"))
    with pytest.raises(WeightsError, match="exists; pass --force"):
        convert(source, dst, to=to)
    code, _, err = cli(capsys, source, dst, "--to", to)
    assert code == 1 and err.startswith("zoo: error: ") and err.count("\n") == 1 and "--force" in err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in dst.parent.rglob("*")) == stamp  # untouched
    code, _, _ = cli(capsys, source, dst, "--to", to, "--force")
    assert code == 0 and listing(tmp_path) == before
    _, read = zoo.open_weights(dst)
    assert read["wte.weight"].dtype == torch.float32  # replaced: it was bfloat16


def test_the_destination_must_name_its_type_and_its_folder_exist(tmp_path, source):
    with pytest.raises(WeightsError, match=r"--to gguf writes a \.gguf file.*'m\.gguf'"):
        convert(source, tmp_path / "m.bin", to="gguf")
    with pytest.raises(WeightsError, match=r"folder .* does not exist"):
        convert(source, tmp_path / "missing" / "m.gguf", to="gguf")
    (tmp_path / "m.gguf").mkdir()
    with pytest.raises(WeightsError, match="is a folder and --to gguf writes a file"):
        convert(source, tmp_path / "m.gguf", to="gguf", force=True)
    with pytest.raises(WeightsError, match="is the source"):
        convert(source, source, to="safetensors", force=True)
    assert listing(tmp_path) == ["m.gguf"]


def test_unknown_formats_and_dtypes_are_refused(tmp_path, capsys, source):
    with pytest.raises(WeightsError, match="unknown format 'onnx'; choose one of hf, safetensors, nanogpt, llmc, gguf"):
        convert(source, tmp_path / "m.onnx", to="onnx")
    with pytest.raises(WeightsError, match="the safetensors format stores float32, bfloat16, not 'q8_0'"):
        convert(source, tmp_path / "m.safetensors", to="safetensors", dtype="q8_0")
    code, _, err = cli(capsys, source, tmp_path / "m.gguf")  # --to is required
    assert code == 2 and err.count("\n") == 1 and "--to" in err
    assert listing(tmp_path) == []


# -- bad sources: a clear error and nothing written --------------------------------------------------------


def damaged(tmp_path: Path, original: Path, name: str, edit) -> Path:
    data = bytearray(original.read_bytes())
    path = tmp_path / name
    path.write_bytes(bytes(edit(data)))
    return path


def header_edit(index: int, value: int):
    def edit(data: bytearray) -> bytearray:
        data[4 * index : 4 * index + 4] = int(value).to_bytes(4, "little", signed=True)
        return data

    return edit


LLMC_DAMAGE = {
    "truncated": (lambda d: d[:-10], WeightsSourceError, r"is truncated: its header .* needs \d+ bytes"),
    "header only half there": (lambda d: d[:600], WeightsSourceError, "shorter than llm.c's 1024-byte header"),
    "wrong magic": (header_edit(0, 1234), WeightsSourceError, "neither a torch file .* nor an llm.c model file"),
    "state file": (header_edit(0, 20240327), WeightsSourceError, "is an llm.c debug state file"),
    "version 4": (header_edit(1, 4), WeightsSourceError, "llm.c model version 4; the zoo reads versions 3 .* 5"),
    "more layers than data": (header_edit(4, 3), WeightsSourceError, "is truncated: .*'L': 3"),
    "fewer layers than data": (header_edit(4, 1), WeightsSourceError,
                               "has more data than its header describes.*shapes do not match the header"),
    "wrong padded vocab": (header_edit(7, 300), WeightsSourceError, "padded vocab Vp=300 .* multiple of 128, 384"),
    "heads not dividing": (header_edit(5, 5), WeightsSourceError, "impossible llm.c header .*not divisible"),
    "zero width": (header_edit(6, 0), WeightsSourceError, "impossible llm.c header .*n_embd=0 must be positive"),
}


@pytest.mark.parametrize("damage", list(LLMC_DAMAGE))
def test_a_damaged_llmc_file_is_refused_and_nothing_is_written(tmp_path, capsys, llmc_file, damage):
    edit, error, message = LLMC_DAMAGE[damage]
    path = damaged(tmp_path, llmc_file, "gpt2.bin", edit)
    before = listing(tmp_path)
    with pytest.raises(error, match=message):
        convert(path, tmp_path / "out.gguf", to="gguf")
    with pytest.raises(error, match=message):
        zoo.load("pure", path)
    code, _, err = cli(capsys, path, tmp_path / "out.safetensors", "--to", "safetensors")
    assert code == 1 and err.count("\n") == 1
    assert_nothing_written(tmp_path, before)


def gguf_with(tmp_path: Path, arch: str = "gpt2", drop: str | None = None, **overrides) -> Path:
    """A small GGUF file written directly with the gguf package, to plant one fault."""
    writer = gguf.GGUFWriter(tmp_path / "planted.gguf", arch)
    values = {"context_length": 16, "embedding_length": 32, "feed_forward_length": 128, "block_count": 2,
              "head_count": 4}
    values.update(overrides)
    for key, value in values.items():
        writer.add_uint32(f"{arch}.attention.head_count" if key == "head_count" else f"{arch}.{key}", value)
    writer.add_float32(f"{arch}.attention.layer_norm_epsilon", 1e-5)
    for name, shape in canonical_shapes(CONFIG).items():
        key = FORMATS["gguf"].layout.key(name)
        if key != drop:
            writer.add_tensor(key, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "planted.gguf"


GGUF_DAMAGE = {
    "truncated": (lambda p, t: damaged(t, p, "m.gguf", lambda d: d[: len(d) // 2]), WeightsSourceError,
                  "cannot read GGUF file .* truncated or corrupt"),
    "wrong magic": (lambda p, t: damaged(t, p, "m.gguf", lambda d: b"GGUX" + d[4:]), WeightsSourceError,
                    "is not a GGUF file: it starts with b'GGUX', not b'GGUF'"),
    "another architecture": (lambda p, t: gguf_with(t, arch="llama"), WeightsSourceError,
                             "holds a 'llama' model, not 'gpt2'"),
    "a tensor missing": (lambda p, t: gguf_with(t, drop="blk.1.ffn_up.bias"), WeightsMismatchError,
                         r"missing \(1\): blk.1.ffn_up.bias"),
    "shapes against the metadata": (lambda p, t: gguf_with(t, block_count=3), WeightsMismatchError,
                                    r"missing \(12\): blk.2.attn_norm.weight"),
    "another MLP width": (lambda p, t: gguf_with(t, feed_forward_length=96), ConfigError,
                          "feed_forward_length=96; GPT-2 uses 4 \\* n_embd = 128"),
    "metadata missing": (lambda p, t: damaged(t, gguf_with(t), "m.gguf",
                                              lambda d: d.replace(b"gpt2.block_count", b"gpt2.block_cOunt")),
                         WeightsSourceError, "lacks the GGUF metadata key 'gpt2.block_count'"),
}


@pytest.mark.parametrize("damage", list(GGUF_DAMAGE))
def test_a_bad_gguf_file_is_refused_and_nothing_is_written(tmp_path, capsys, gguf_file, damage):
    make, error, message = GGUF_DAMAGE[damage]
    work = tmp_path / "work"
    work.mkdir()
    path = make(gguf_file, work)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(error, match=message):
        convert(path, out / "m.bin", to="llmc")
    with pytest.raises(error, match=message):
        zoo.load("pure", path)
    code, _, err = cli(capsys, path, out / "m.safetensors", "--to", "safetensors")
    assert code == 1 and err.count("\n") == 1
    assert listing(out) == []


def test_a_corrupt_safetensors_source_writes_nothing(tmp_path, source):
    path = damaged(tmp_path, source, "model.safetensors", lambda d: d[: len(d) // 3])
    with pytest.raises(WeightsSourceError, match="cannot read safetensors file"):
        convert(path, tmp_path / "out.gguf", to="gguf")
    assert listing(tmp_path) == ["model.safetensors"]


class Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": dict(from_canonical(weights, HF)), "model_args": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsSourceError, match=r"could run code, so it is refused.*weights_only=True"):
        convert(tmp_path / "evil.pt", tmp_path / "out.gguf", to="gguf")
    assert listing(tmp_path) == ["evil.pt"]  # nothing written, and nothing ran


# -- bad weights -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize(("to", "name"), [("llmc", "m.bin"), ("gguf", "m.gguf"), ("hf", "folder")])
def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, capsys, weights, bad, to, name):
    poisoned = dict(weights)
    poisoned["h.1.ln_2.bias"] = weights["h.1.ln_2.bias"].clone()
    poisoned["h.1.ln_2.bias"][3] = bad
    torch.save(dict(from_canonical(poisoned, HF)), tmp_path / "sd.pt")
    (tmp_path / "config.json").write_text(CONFIG.to_hf().to_json_string())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(WeightsError, match=r"h.1.ln_2.bias holds 1 NaN or Inf value.*--allow-nonfinite"):
        convert(tmp_path / "sd.pt", out / name, to=to)
    code, _, err = cli(capsys, tmp_path / "sd.pt", out / name, "--to", to)
    assert code == 1 and err.count("\n") == 1 and "--allow-nonfinite" in err
    assert listing(out) == []
    code, _, err = cli(capsys, tmp_path / "sd.pt", out / name, "--to", to, "--allow-nonfinite")
    assert (code, err) == (0, "")
    _, read = zoo.open_weights(out / name)  # loading refuses them too, as it reads them
    with pytest.raises(WeightsError, match=r"h.1.ln_2.bias holds 1 NaN or Inf value.*allow_nonfinite=True"):
        read["h.1.ln_2.bias"]
    _, read = zoo.open_weights(out / name, allow_nonfinite=True)
    got = read["h.1.ln_2.bias"][3]
    assert got.isnan() if math.isnan(bad) else got.item() == bad


def test_values_that_round_to_inf_are_refused(tmp_path, weights):
    big = dict(weights)
    big["h.0.ln_1.weight"] = weights["h.0.ln_1.weight"].clone()
    big["h.0.ln_1.weight"][0] = 3.4e38  # finite in float32, beyond bfloat16's largest (about 3.39e38)
    dst = tmp_path / "m.safetensors"
    with pytest.raises(WeightsError, match=r"h.0.ln_1.weight holds 1 NaN or Inf value\(s\) after rounding"):
        convert(big, dst, to="safetensors", dtype="bfloat16", config=CONFIG, layout="canonical")
    convert(big, dst, to="safetensors", config=CONFIG, layout="canonical")  # float32 keeps it
    assert zoo.open_weights(dst)[1]["h.0.ln_1.weight"][0].item() == pytest.approx(3.4e38)


def test_values_beyond_q8_0_are_refused(tmp_path, weights):
    big = dict(weights)
    big["h.0.mlp.c_fc.weight"] = weights["h.0.mlp.c_fc.weight"] * 1e8
    with pytest.raises(WeightsError, match=r"blk\.0\.ffn_up\.weight .* beyond what Q8_0 can store"):
        convert(big, tmp_path / "m.gguf", to="gguf", dtype="q8_0", config=CONFIG, layout="canonical")
    assert listing(tmp_path) == []
    convert(big, tmp_path / "m.gguf", to="gguf", dtype="bfloat16", config=CONFIG, layout="canonical")


def test_formats_without_an_epsilon_refuse_another(tmp_path, weights):
    config = CONFIG.replace(layer_norm_epsilon=1e-6)
    for to, name in (("llmc", "m.bin"), ("nanogpt", "m.pt")):
        with pytest.raises(WeightsError, match="no layer_norm_epsilon"):
            convert(weights, tmp_path / name, to=to, config=config, layout="canonical")
    assert listing(tmp_path) == []
    read_config, _ = zoo.open_weights(convert(weights, tmp_path / "m.gguf", to="gguf", config=config,
                                              layout="canonical"))
    assert read_config == config  # GGUF stores it


def test_a_failing_writer_leaves_no_temporary_files(tmp_path, weights, monkeypatch):
    def broken(weights, config, path, dtype):
        Path(path).write_bytes(b"half")
        raise WeightsError("disk full")

    monkeypatch.setattr(FORMATS["gguf"].module, "write", broken)
    with pytest.raises(WeightsError, match="disk full"):
        convert(weights, tmp_path / "m.gguf", to="gguf", config=CONFIG, layout="canonical")
    assert listing(tmp_path) == []
