"""The ``zoo`` command line: ``zoo list``, ``info``, ``generate``, ``convert``, ``bench``, and plugins' commands.

Plugins add commands through the ``zoo_addcommands`` hook: the conformance harness adds ``zoo check`` so.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import fnmatch
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from ._config import PRESETS, GPT2Config
from ._errors import CapabilityError, ConfigError, InvalidInputError, WeightsMismatchError, ZooError
from ._inputs import SEED_LIMIT
from ._registry import _natural_key, broken_plugins, distribution_of, get_variant, list_variants
from .progress import Progress

__all__ = ["main"]

EOT = "<|endoftext|>"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _caps_text(caps: dict[str, Any]) -> str:
    flags = [k for k in ("exact", "kv_cache", "padding", "trainable") if caps[k]]
    return f"{','.join(caps['devices'])} | {','.join(caps['dtypes'])} | {' '.join(flags)}"


def _rows(pattern: str | None) -> list[dict[str, Any]]:
    rows = []
    for name in list_variants(pattern):
        v = get_variant(name)
        missing = v.why_unavailable()
        rows.append({"name": name, "status": "unavailable" if missing else "ok", "summary": v.summary,
                     "distribution": distribution_of(name), "source": v.source, "error": missing,
                     "capabilities": asdict(v.capabilities)})
    for b in broken_plugins():
        if pattern is None or fnmatch.fnmatchcase(b.name, pattern.lower()):
            rows.append({"name": b.name, "status": "broken", "summary": "", "distribution": None,
                         "source": b.source, "error": b.message, "capabilities": None})
    return sorted(rows, key=lambda r: _natural_key(r["name"]))


def cmd_list(args: argparse.Namespace) -> int:
    rows = _rows(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    if not rows:
        print(f"no variant matches {args.pattern!r}" if args.pattern else "no variants registered")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["status"] in ("ok", "unavailable"):
            print(f"{r['name']:<{width}}  {r['status'] if r['status'] == 'ok' else 'n/a':<6}  {r['summary']}")
            print(f"{'':<{width}}          {_caps_text(r['capabilities'])}  [{r['source']}]")
            if r["error"]:
                print(f"{'':<{width}}          unavailable: {r['error']}")
        else:
            print(f"{r['name']:<{width}}  broken  {r['error']}")
            print(f"{'':<{width}}          [{r['source']}]")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    v = get_variant(args.name)
    print(f"{v.name}: {v.summary}")
    print(f"  distribution: {distribution_of(v.name) or '(registered at run time)'}")
    print(f"  source:       {v.source}")
    for field in dataclasses.fields(v.capabilities):
        value = getattr(v.capabilities, field.name)
        text = ", ".join(map(str, value)) if isinstance(value, (tuple, list)) else value
        print(f"  {field.name + ':':<13} {text if text != '' else '-'}")
    tol = asdict(v.tolerances)
    print(f"  tolerances:   {', '.join(f'{k}={val}' for k, val in tol.items() if val is not None)}")
    if v.notes:
        print(f"  notes:        {v.notes}")
    missing = v.why_unavailable()
    if missing:
        print(f"  unavailable:  {missing}")
    return 0


def _config(text: str | None) -> GPT2Config | None:
    """``--config``: a preset name, or a Hugging Face ``config.json`` (or the folder holding one)."""
    if text is None or text in PRESETS or text.removeprefix("openai-community/") in PRESETS:
        return None if text is None else GPT2Config.preset(text)
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        return GPT2Config.from_json_file(path)
    raise ConfigError(
        f"--config {text!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json file"
    )


def _device(text: str) -> str:
    import torch

    try:
        torch.device(text)
    except RuntimeError as exc:
        raise CapabilityError(f"--device {text!r} is not a device torch knows ({exc}); try cpu or cuda") from None
    return text


def cmd_generate(args: argparse.Namespace) -> int:
    from ._generate import stream
    from ._load import load
    from ._tokenizer import get_tokenizer

    config = _config(args.config)
    device = _device(args.device)
    weights = None if args.weights == "random" else args.weights
    enc = get_tokenizer()  # before the model: a broken tokenizer should fail fast
    try:
        model = load(args.name, weights, config=config, device=device, dtype=args.dtype, seed=args.seed,
                     allow_nonfinite=args.allow_nonfinite)
    except WeightsMismatchError as exc:
        raise WeightsMismatchError(_mismatch_line(exc, args.config)) from exc
    logging.getLogger("zoo.compile").setLevel(logging.INFO)  # a compiling variant says why the first token waits
    prompt = enc.encode(args.prompt, allowed_special={EOT})
    if not prompt:
        prompt = [model.config.eos_token_id]
    if max(prompt) >= model.config.vocab_size:
        raise InvalidInputError(
            f"the prompt has token id {max(prompt)}, beyond this model's vocab_size="
            f"{model.config.vocab_size}; GPT-2's tokenizer needs vocab_size >= {enc.n_vocab}"
        )
    steps = stream(model, [prompt], args.max_new_tokens, temperature=args.temperature,  # checks arguments
                   top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if weights is None:
        print("zoo: note: random weights (--weights random): the text will be gibberish", file=sys.stderr)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    for step in steps:
        token = step[0]
        if token is None or token == model.config.eos_token_id:
            break
        out.write(decoder.decode(enc.decode_single_token_bytes(token)))
        out.flush()
    out.write(decoder.decode(b"", final=True) + "\n")
    out.flush()
    return 0


def _mismatch_line(exc: WeightsMismatchError, config: str | None) -> str:
    """A weights/config mismatch in one line: what does not match, the first example, and the fix."""
    counts = [f"{len(exc.missing)} missing" if exc.missing else "",
              f"{len(exc.unexpected)} unexpected" if exc.unexpected else "",
              f"{len(exc.mismatched)} mis-shaped" if exc.mismatched else ""]
    first = (f"{exc.mismatched[0][0]} is {list(exc.mismatched[0][1])}, expected {list(exc.mismatched[0][2])}"
             if exc.mismatched else (exc.missing or exc.unexpected or [""])[0])
    head = str(exc).splitlines()[0].rstrip(":")
    fix = ("drop --config to use the config the weights carry, or give the one they were saved with" if config
           else "check that --weights holds GPT-2 weights, or give their config with --config")
    if not any(counts):  # refused on the tensor count alone, before any name was compared
        return f"{head.split(': pass ')[0]}; {fix}"
    return f"{head}: {', '.join(c for c in counts if c)} tensors (first: {first}); {fix}"


def cmd_convert(args: argparse.Namespace) -> int:
    from ._convert import convert
    from .formats import FORMATS

    config = _config(args.config)

    def tensors(done: int, total: int) -> None:
        if progress.total != total:
            progress.set_total(total)
            if progress.bar:  # off a terminal the command stays silent until its one line, as before
                progress(f"writing {total} tensors to {args.dst}")
        progress.advance()

    progress = Progress("zoo convert", quiet=args.quiet, unit="tensor")
    try:
        with progress:
            dst = convert(args.src, args.dst, to=args.to, dtype=args.dtype, force=args.force,
                          allow_nonfinite=args.allow_nonfinite, config=config, layout=args.layout, progress=tensors)
    except ZooError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if len(lines) > 1:  # a mismatch report lists its problems line by line; a command-line error is one line
            raise type(exc)(f"{lines[0]} {'; '.join(lines[1:])}") from exc
        raise
    print(f"wrote {dst} ({args.to}, {args.dtype or FORMATS[args.to].dtypes[0]})")
    return 0


def _checked(kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type that also checks the value's range, naming the rule when it fails."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what
    return parse


_NON_NEGATIVE_INT = _checked(int, "an int >= 0", lambda v: v >= 0)
_POSITIVE_INT = _checked(int, "an int >= 1", lambda v: v >= 1)
_TEMPERATURE = _checked(float, "a number >= 0", lambda v: math.isfinite(v) and v >= 0)
_PROBABILITY = _checked(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
_SEED = _checked(int, "an int in [0, 2**64)", lambda v: 0 <= v < SEED_LIMIT)

def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import Settings, add_ratios, format_report, run_bench

    config = _config(args.config)
    device = _device(args.device)
    if args.json:  # fail before an hour of measuring, not after
        _writable(Path(args.json))
    if args.plot:
        from .bench.plot import _matplotlib

        _writable(Path(args.plot), "--plot")
        _matplotlib()
    _something_to_measure(args.names, args.dtype, device)
    settings = Settings.quick() if args.quick else Settings.full()
    if args.runs is not None:
        settings = dataclasses.replace(settings, runs=args.runs)
    if args.no_fidelity:
        settings = dataclasses.replace(settings, fidelity=False)

    def step(n: int, total: int) -> None:
        if progress.total != total:
            progress.set_total(total)
        progress.advance(n)

    with Progress("zoo bench", bar=False if args.json else None, quiet=args.quiet) as progress:
        report = add_ratios(run_bench(args.names, config=config, device=device, dtype=args.dtype,
                                      threads=args.threads, settings=settings, progress=progress, on_step=step))
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"zoo bench: wrote {args.json}", file=sys.stderr)
    if args.plot:
        from .bench.plot import plot

        print(f"zoo bench: drew {plot(report, args.plot)}", file=sys.stderr)
    failed = [r["label"] for r in report["results"] if r["status"] == "error"]
    if failed:
        print(f"zoo bench: error: {', '.join(failed)} failed; see the reasons above", file=sys.stderr)
    return 1 if failed else 0


def _something_to_measure(names: list[str], dtype: str | None, device: str) -> None:
    """Refuse, before measuring, a run whose every asked-for subject would be skipped (the reference alone)."""
    from .bench.run import subjects_for

    asked = [s for s in subjects_for(names, dtype, device) if s.kind != "reference"]
    if asked and all(s.skip for s in asked):
        reasons = "; ".join(dict.fromkeys(s.skip for s in asked))
        raise CapabilityError(f"nothing to measure: {reasons}")


def _writable(path: Path, option: str = "--json") -> None:
    if path.is_dir():
        example = path / ("bench.json" if option == "--json" else "bench.png")
        raise ConfigError(f"{option} {path} is a folder; give a file name, e.g. {example}")
    if not path.parent.exists():
        raise ConfigError(f"{option} {path}: the folder {path.parent} does not exist; create it first")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoo", description="GPT-2 implementations behind one interface.")
    parser.add_argument("--version", action="version", version=f"gpt2-zoo {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what the zoo does, with the warnings and log lines of the libraries it uses")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines: results and errors only")
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
    p.add_argument("--config", default=None,
                   help="preset name or config.json path; for --weights random (default: gpt2), "
                        "or to override the config the weights carry")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=_NON_NEGATIVE_INT, default=50)
    p.add_argument("--temperature", type=_TEMPERATURE, default=0.0, help="0 (default) is greedy")
    p.add_argument("--top-k", type=_POSITIVE_INT, default=None, help="sample from the k likeliest tokens")
    p.add_argument("--top-p", type=_PROBABILITY, default=None, help="nucleus sampling: keep this much mass")
    p.add_argument("--seed", type=_SEED, default=0, help="for sampling and random weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32, float64, bfloat16 (default: the variant's first)")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="load weights holding NaN or Inf instead of refusing them (the text will be garbage)")
    p.set_defaults(func=cmd_generate)

    from .formats import DTYPES, FORMATS
    from .weight_map import LAYOUTS

    p = sub.add_parser("convert", help=f"convert weights between formats ({', '.join(FORMATS)})")
    p.add_argument("src", help="a file or folder in any of the --to formats (or any torch state dict), "
                               "or a hub id")
    p.add_argument("dst", help="where to write: a folder or a file, as --to says")
    p.add_argument("--to", required=True, choices=list(FORMATS),
                   help="; ".join(f"{f.name}: {f.summary}" for f in FORMATS.values()))
    stores: dict[tuple[str, ...], list[str]] = {}
    for f in FORMATS.values():
        stores.setdefault(f.dtypes, []).append(f.name)
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="precision of the written weights, the first listed by default: "
                        + "; ".join(f"{', '.join(names)}: {', '.join(dtypes)}" for dtypes, names in stores.items()))
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--allow-nonfinite", action="store_true", help="write NaN and Inf instead of refusing them")
    p.add_argument("--config", default=None, help="preset name or config.json path, for a SRC without one")
    p.add_argument("--layout", choices=list(LAYOUTS), default=None,
                   help="key layout of a bare state dict SRC (default: hf)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("bench", help="measure registered variants against Hugging Face on the 124M shape")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="registered variants to measure (see `zoo list`), the engines among them: NAME, or "
                        "NAME@PRECISION for a dtype it offers (pure@bfloat16) or its sibling NAME-PRECISION "
                        "(llama.cpp@q8_0); default: every registered variant, those that cannot run here listed "
                        "as skipped. Hugging Face's generate in float32 is always measured as the reference")
    p.add_argument("--json", default=None, metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--quick", action="store_true", help="2 runs and 32 new tokens instead of 5 and 128")
    p.add_argument("--runs", type=_POSITIVE_INT, default=None, help="timed runs per measurement")
    p.add_argument("--threads", type=_POSITIVE_INT, default=None, help="threads per subject (default: all cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="dtype of every variant (default: each variant's first)")
    p.add_argument("--config", default=None,
                   help="preset name or config.json path (default: gpt2, 124M; a small config.json for a quick try)")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="also draw decode speed against the floor, and speed against fidelity (needs matplotlib)")
    p.add_argument("--no-fidelity", action="store_true",
                   help="skip measuring each subject's KL and top-1 agreement on learned weights")
    p.set_defaults(func=cmd_bench)

    _add_plugin_commands(sub)  # `zoo check` arrives this way, from the conformance harness
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """The commands plugins add through the ``zoo_addcommands`` hook, one plugin at a time.

    A plugin whose hook raises is logged by name and the other commands still
    work; a command it added before raising fails with that error when run.
    """
    from ._errors import BrokenPluginError
    from ._registry import DISABLE_AUTOLOAD_ENV, plugin_manager

    pm = plugin_manager()
    for impl in reversed(pm.hook.zoo_addcommands.get_hookimpls()):  # the order pluggy calls them in
        before = dict(sub.choices)
        try:
            impl.function(*[{"subparsers": sub}[arg] for arg in impl.argnames])
            taken = [command for command, p in before.items() if sub.choices[command] is not p]
            if taken:  # Python 3.10's argparse replaces a command silently; 3.11's raises
                sub.choices.update(before)
                raise ValueError(f"command {', '.join(map(repr, taken))} is already taken; choose another name")
        except (Exception, SystemExit) as exc:  # noqa: BLE001  # one plugin must not take the other commands down
            error = BrokenPluginError(
                f"zoo plugin {pm.get_name(impl.plugin)!r} could not add its commands: {type(exc).__name__}: "
                f"{exc}; the other commands work. Fix or uninstall the package that provides it "
                f"({DISABLE_AUTOLOAD_ENV}=1 leaves third-party plugins out)"
            )
            logging.getLogger("zoo").warning("%s", error)
            for command in set(sub.choices) - set(before):
                sub.choices[command].set_defaults(func=_failing(error))


def _failing(error: ZooError) -> Callable[[argparse.Namespace], int]:
    """A command's ``func`` that reports ``error`` (its plugin failed while adding it)."""

    def func(args: argparse.Namespace) -> int:
        raise error

    return func


# -- what reaches the terminal ------------------------------------------------------------------
OURS = ("zoo", "conformance")  # logger names whose records are our own lines


class _OwnLines(logging.Filter):
    """Without ``-v``, only our own records: libraries' log lines and warnings stay out of the output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in OURS


class _Formatter(logging.Formatter):
    """``zoo: LEVEL: message``; with ``-v`` a library's record also names its logger."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.name.split(".")[0] in OURS:
            return f"zoo: {record.levelname}: {text}"
        return f"zoo: {record.levelname}: [{record.name}] {text}"


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the command line: a warning is a log record of ``py.warnings``."""
    logging.getLogger("py.warnings").warning("%s: %s (%s:%d)", category.__name__, message, filename, lineno)


# Libraries that configure their own loggers when imported; without -v they say only errors. torch and
# transformers read these when first imported (zoo list never imports them); the commands' worker
# processes (zoo bench) inherit them.
_QUIET_ENV = {"TORCH_LOGS": "-torch", "TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
_QUIET_LOGGERS = ("torch", "transformers", "huggingface_hub")  # for those already imported (tests call main)


@contextmanager
def _output(verbose: bool) -> Iterator[None]:
    """While a command runs: warnings become log records, and without ``verbose`` only ours are shown.

    The filtering is the command line's alone: importing the library changes no warning filter or logger.
    """
    handler: logging.Handler | None = None
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host that configured logging keeps its own
        handler = logging.StreamHandler()
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
    saved_level = root.level
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    saved_env = {name: os.environ.get(name) for name in _QUIET_ENV}
    saved_levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    if not verbose:
        if handler is not None:
            handler.addFilter(_OwnLines())
        for name, default in _QUIET_ENV.items():
            os.environ.setdefault(name, default)
        for name in _QUIET_LOGGERS:
            if name in sys.modules:
                logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _log_warning
            yield
    finally:
        for name, saved in saved_env.items():
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(saved_level)
        if handler is not None:
            root.removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    # configured before the parser is built: building it discovers the plugins (they may add commands),
    # and a broken plugin's warning must read like every other line of ours
    with _output(_verbose(sys.argv[1:] if argv is None else argv)):
        return _main(argv)


def _verbose(argv: Sequence[str]) -> bool:
    """Whether ``-v`` is among the options before the command (known before the parser is built)."""
    for arg in argv:
        if arg in ("-v", "--verbose"):
            return True
        if not arg.startswith("-"):
            return False
    return False


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already reported in one line
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:  # one line, whatever the message: a report that lists its problems line by line is joined
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        print(f"zoo: error: {'; '.join(lines)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zoo list | head`: stop quietly, and keep Python's exit flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file the user named cannot be read (permissions, a directory...)
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1
