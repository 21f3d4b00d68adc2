"""A weight format is one module and one row of ``zoo.formats.FORMATS``: a format added to the table
alone is recognised, read, written, converted and offered by ``zoo convert``."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import zoo
from zoo import GPT2Config
from zoo._cli import build_parser
from zoo.formats import DTYPES, FORMATS, Format
from zoo.weight_map import CANONICAL, canonical_shapes, to_canonical

CONFIG = GPT2Config(vocab_size=300, n_positions=16, n_embd=32, n_layer=2, n_head=4)
TOY_MAGIC = b"TOY1"


def toy_read(path: Path, *, config, layout, dequantize):
    data = torch.load(io.BytesIO(path.read_bytes()[len(TOY_MAGIC):]), weights_only=True)
    found = GPT2Config(**data["config"])
    return config or found, to_canonical(data["weights"], config or found, CANONICAL)


def toy_write(weights, config, path: Path, dtype: str) -> None:
    assert all(weights[n].dtype == getattr(torch, weights.stored_dtype(n)) for n in weights)
    buffer = io.BytesIO()
    torch.save({"config": dataclasses.asdict(config), "weights": {n: weights[n].contiguous() for n in weights}},
               buffer)
    path.write_bytes(TOY_MAGIC + buffer.getvalue())


#: a format module, as small as one can be: its file is a magic number and torch.save of the canonical weights
TOY = SimpleNamespace(
    DESCRIPTION=f"a toy file (magic {TOY_MAGIC!r})",
    recognise=lambda path, head: head[:4] == TOY_MAGIC,
    read=toy_read,
    write=toy_write,
)


@pytest.fixture
def toy(monkeypatch) -> Format:
    row = Format("toy", TOY, CANONICAL, ("float32", "bfloat16"), (".toy",),
                 summary="a toy format: a magic number and the canonical weights")
    monkeypatch.setitem(FORMATS, "toy", row)
    return row


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {n: torch.randn(s, generator=generator) * 0.1 for n, s in canonical_shapes(CONFIG).items()}


def test_a_format_added_as_one_row_is_written_recognised_read_and_converted(tmp_path, toy, weights):
    written = zoo.convert(weights, tmp_path / "m.toy", to="toy", dtype="bfloat16", config=CONFIG,
                          layout="canonical")
    renamed = written.rename(tmp_path / "m.bin")  # told by its magic number, not by its name
    config, read = zoo.open_weights(renamed)
    assert config == CONFIG
    assert all(torch.equal(read[n], weights[n].to(torch.bfloat16)) for n in weights)
    back = zoo.convert(renamed, tmp_path / "m.gguf", to="gguf")
    assert zoo.open_weights(back)[0] == CONFIG
    with torch.no_grad():
        assert zoo.load("pure", renamed)(torch.tensor([[1, 2, 3]])).shape == (1, 3, CONFIG.vocab_size)


def test_zoo_convert_offers_what_the_table_declares(toy, capsys):
    parser = build_parser()
    args = parser.parse_args(["convert", "src", "dst.toy", "--to", "toy", "--dtype", "bfloat16"])
    assert (args.to, args.dtype) == ("toy", "bfloat16")
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{hf,safetensors,nanogpt,llmc,gguf,toy}" in help_text
    assert f"{{{','.join(DTYPES)}}}" in help_text
    assert "toy: a toy format: a magic number and the canonical weights" in help_text
    with pytest.raises(zoo.WeightsError, match=r"the toy format stores float32, bfloat16, not 'q8_0'"):
        zoo.convert("src", "dst.toy", to="toy", dtype="q8_0")
