"""The ``zoo`` command line: ``zoo list``, ``zoo info``, ``zoo generate`` (and ``zoo check``)."""

from __future__ import annotations

import argparse
import codecs
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from . import __version__
from ._errors import ZooError
from ._registry import broken_plugins, get_variant, list_variants

__all__ = ["main"]


def _capabilities(name: str) -> dict[str, Any]:
    return asdict(get_variant(name).capabilities)


def _caps_text(caps: dict[str, Any]) -> str:
    flags = [k for k in ("exact", "kv_cache", "padding", "trainable") if caps[k]]
    return f"{','.join(caps['devices'])} | {','.join(caps['dtypes'])} | {' '.join(flags)}"


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    broken = {b.name: b for b in broken_plugins()}
    for name in list_variants(args.pattern, include_broken=True):
        if name in broken:
            rows.append({"name": name, "status": "broken", "source": broken[name].source,
                         "error": broken[name].message, "summary": "", "capabilities": None})
        else:
            v = get_variant(name)
            rows.append({"name": name, "status": "ok", "source": v.source, "error": None,
                         "summary": v.summary, "capabilities": asdict(v.capabilities)})
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    if not rows:
        print(f"no variant matches {args.pattern!r}" if args.pattern else "no variants registered")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["status"] == "ok":
            print(f"{r['name']:<{width}}  ok      {r['summary']}")
            print(f"{'':<{width}}          {_caps_text(r['capabilities'])}  [{r['source']}]")
        else:
            print(f"{r['name']:<{width}}  broken  {r['error']}")
            print(f"{'':<{width}}          [{r['source']}]")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    v = get_variant(args.name)
    print(f"{v.name}: {v.summary}")
    print(f"  source:       {v.source}")
    for key, value in asdict(v.capabilities).items():
        print(f"  {key + ':':<13} {', '.join(value) if isinstance(value, tuple) else value}")
    tol = asdict(v.tolerances)
    print(f"  tolerances:   {', '.join(f'{k}={val}' for k, val in tol.items() if val is not None)}")
    if v.notes:
        print(f"  notes:        {v.notes}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ._generate import stream
    from ._load import load
    from ._tokenizer import get_tokenizer

    weights = None if args.weights == "random" else args.weights
    if weights is None:
        print("zoo: note: random weights (--weights random): the text will be gibberish", file=sys.stderr)
    model = load(args.name, weights, config=args.config, device=args.device, dtype=args.dtype, seed=args.seed)
    enc = get_tokenizer()
    prompt = enc.encode(args.prompt, allowed_special={"<|endoftext|>"})
    if not prompt:
        prompt = [model.config.eos_token_id]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    for step in stream(model, [prompt], args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, seed=args.seed):
        token = step[0]
        if token is None or token == model.config.eos_token_id:
            break
        out.write(decoder.decode(enc.decode_single_token_bytes(token)))
        out.flush()
    out.write(decoder.decode(b"", final=True) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="GPT-2 implementations behind one interface.")
    parser.add_argument("--version", action="version", version=f"gpt2-zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the zoo does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list the registered variants")
    p.add_argument("pattern", nargs="?", help="shell-style wildcard, e.g. 'quant*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="describe one variant")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("generate", help="generate text with a variant, streaming it")
    p.add_argument("name", help="variant name (see `zoo list`)")
    p.add_argument("--weights", default="gpt2",
                   help="hub id, save_pretrained folder, .safetensors, .bin/.pt or nanoGPT checkpoint; "
                        "'random' for random weights (default: gpt2)")
    p.add_argument("--config", default=None, help="preset for --weights random (default: gpt2)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32, float64, bfloat16 (default: the variant's first)")
    p.set_defaults(func=cmd_generate)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="zoo: %(levelname)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
