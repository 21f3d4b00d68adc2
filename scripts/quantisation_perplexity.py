"""Perplexity of the quantised variants against float32, on a small GPT-2 trained here.

Random weights are a poor judge of quantisation: their logits are nearly flat,
so a tiny error flips the top token. This script trains a small GPT-2 (the real
50257-token vocabulary) with ``pure`` on text every machine has, the running
Python's standard library source, and judges each variant on held-out files:

- text: the ``*.py`` files under ``sysconfig.get_paths()["stdlib"]``, sorted,
  without ``site-packages``/``dist-packages`` and the test suites (``test``,
  ``tests``, ``idle_test``: large, repetitive, and some deliberately not
  UTF-8), tokenised with ``zoo.get_tokenizer()``, each file followed by
  ``<|endoftext|>``;
- split by file, not by position in a stream: a file is held out when the
  SHA-256 of its path relative to the root, read as an integer, is divisible
  by ``--held-out-every`` (10). A file's side never depends on which other
  files exist, so the split holds across Python versions;
- training (``scripts/quantisation_training.py``): ``zoo.load("pure", None,
  config=...)`` and ``torch.optim.AdamW`` (warm-up, then cosine decay; no weight
  decay on biases and LayerNorms) on random windows of the training stream; the
  weights are written with ``zoo.convert`` as a ``save_pretrained`` folder
  (``OUT/model``) that also holds a ``training.json`` record (settings, split,
  losses), so ``--weights OUT/model`` evaluates again without training, on the
  same split;
- evaluation: ``--eval-tokens`` held-out targets in windows of ``--context``
  tokens spread evenly over the held-out stream, and for every variant on the
  same windows: perplexity, its ratio to ``pure`` float32's, the mean
  KL(float32 || variant) of the next-token distributions, top-1 agreement with
  float32, and weight memory. A unigram model of the training tokens (add-one
  smoothing) is scored on the same targets, as the floor that a model with
  structure must clearly beat.

Usage::

    python scripts/quantisation_perplexity.py                       # train (a few minutes), then evaluate
    python scripts/quantisation_perplexity.py --weights out-quantisation/model   # evaluate only

It prints a Markdown table and writes ``OUT/results.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import platform
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import zoo

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # run as a script it is there already; loaded by path (the tests), it is not
    sys.path.insert(0, HERE)
from quantisation_training import train  # noqa: E402 - the training half, beside this file

MiB = 1024 * 1024
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
BASELINE = "pure float32"


@dataclasses.dataclass(frozen=True)
class Judged:
    """One variant as the table shows it: a label, and how ``zoo.load`` builds it."""

    label: str
    name: str
    dtype: str | None  # None: the variant's own (first declared) dtype


# the baseline first: every other row is compared with it
JUDGED = (
    Judged(BASELINE, "pure", "float32"),
    Judged("pure bfloat16", "pure", "bfloat16"),
    Judged("quantised (int8)", "quantised", None),
    Judged("quantised-int4", "quantised-int4", None),
    Judged("cpu (NumPy float32)", "cpu", None),
)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- text ----------------------------------------------------------------------------------
def source_files(root: Path) -> list[Path]:
    """The ``*.py`` files under ``root``, sorted by relative path, outside :data:`EXCLUDED_DIRS`."""
    files = (p for p in root.rglob("*.py") if p.is_file())
    return sorted((p for p in files if not EXCLUDED_DIRS & set(p.relative_to(root).parts[:-1])),
                  key=lambda p: p.relative_to(root).as_posix())


def is_held_out(relative_path: str, every: int) -> bool:
    """Whether a file is held out: a fixed hash of its relative path, so one in ``every`` on average."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % every == 0


@dataclasses.dataclass
class Corpus:
    root: str
    train: torch.Tensor  # (N_train,) int64 token ids, files joined by <|endoftext|>
    held_out: torch.Tensor  # (N_held_out,)
    train_files: int
    held_out_files: int
    skipped_files: list[str]  # not UTF-8

    def summary(self) -> dict[str, Any]:
        return {"root": self.root, "train_files": self.train_files, "held_out_files": self.held_out_files,
                "train_tokens": int(self.train.numel()), "held_out_tokens": int(self.held_out.numel()),
                "skipped_files": self.skipped_files}


def load_corpus(root: Path, held_out_every: int, max_files: int | None) -> Corpus:
    """Read, split and tokenise the files under ``root``; ``max_files`` caps each side of the split."""
    if not root.is_dir():
        raise SystemExit(f"error: the text root {str(root)!r} is not a folder; pass --source DIR")
    enc = zoo.get_tokenizer()
    sides: dict[bool, list[str]] = {False: [], True: []}
    skipped: list[str] = []
    for path in source_files(root):
        rel = path.relative_to(root).as_posix()
        side = sides[is_held_out(rel, held_out_every)]
        if max_files is not None and len(side) >= max_files:
            continue
        try:
            side.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            skipped.append(rel)
    for held, texts in sides.items():
        if not texts:
            raise SystemExit(f"error: no {'held-out' if held else 'training'} file under {str(root)!r} "
                             f"(held out: one in --held-out-every={held_out_every}); raise --max-files, "
                             "or pass --source with more .py files")
    streams = {}
    for held, texts in sides.items():
        ids: list[int] = []
        for doc in enc.encode_ordinary_batch(texts):
            ids.extend(doc)
            ids.append(enc.eot_token)
        streams[held] = torch.tensor(ids, dtype=torch.int64)
    return Corpus(str(root), streams[False], streams[True], len(sides[False]), len(sides[True]), skipped)


def eval_windows(held_out: torch.Tensor, context: int, eval_tokens: int) -> torch.Tensor:
    """``(W, context + 1)`` windows, each scoring ``context`` targets, spread evenly over the stream."""
    available = (held_out.numel() - 1) // context
    if available < 1:
        raise SystemExit(f"error: the held-out text has {held_out.numel()} tokens, fewer than one window of "
                         f"--context={context}; lower --context or raise --max-files")
    count = max(1, min(available, eval_tokens // context))
    starts = torch.linspace(0, available - 1, count).round().long() * context  # (W,)
    return torch.stack([held_out[s: s + context + 1] for s in starts.tolist()])


def unigram_perplexity(train: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on ``targets`` of training-token frequencies with add-one smoothing."""
    counts = torch.bincount(train, minlength=vocab_size).double() + 1
    logp = counts.log() - counts.sum().log()
    return math.exp(-float(logp[targets.flatten()].mean()))


# -- evaluation -----------------------------------------------------------------------------
@dataclasses.dataclass
class Score:
    """Sums over the evaluated targets, turned into the table's figures by :meth:`row`."""

    nll: float = 0.0
    kl: float = 0.0
    agree: int = 0
    count: int = 0
    seconds: float = 0.0

    def add(self, logp: torch.Tensor, base_logp: torch.Tensor, targets: torch.Tensor, seconds: float) -> None:
        """``logp``, ``base_logp``: ``(N, V)`` log-probabilities; ``targets``: ``(N,)``."""
        self.nll -= float(logp.gather(1, targets[:, None]).double().sum())
        self.kl += float((base_logp.exp() * (base_logp - logp)).sum(dim=1).double().sum())
        self.agree += int((logp.argmax(dim=1) == base_logp.argmax(dim=1)).sum())
        self.count += targets.numel()
        self.seconds += seconds

    def row(self, judged: Judged, model: Any, baseline_ppl: float | None) -> dict[str, Any]:
        ppl = math.exp(self.nll / self.count)
        return {"label": judged.label, "variant": judged.name,
                "dtype": str(model.dtype).removeprefix("torch."), "weight_bytes": int(model.weight_bytes()),
                "perplexity": ppl,
                "ratio_to_float32": ppl / (baseline_ppl if baseline_ppl is not None else ppl),
                "mean_kl_from_float32": self.kl / self.count, "top1_agreement": self.agree / self.count,
                "eval_seconds": self.seconds}


def batches(windows: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for i in range(0, windows.size(0), size):
        yield windows[i: i + size]


def runnable() -> tuple[list[Judged], dict[str, str]]:
    """The rows of :data:`JUDGED` whose variant runs here, and why each other one does not (by label)."""
    reasons = {j.label: zoo.get_variant(j.name).why_unavailable() for j in JUDGED}
    return [j for j in JUDGED if reasons[j.label] is None], {k: v for k, v in reasons.items() if v is not None}


def evaluate(weights: Path, windows: torch.Tensor, batch: int, judging: Sequence[Judged]) -> list[dict[str, Any]]:
    """Every variant of ``judging`` (the baseline first) on the same windows, batch by batch against the baseline."""
    models = {}
    for judged in judging:
        progress(f"loading {judged.label}")
        models[judged.label] = zoo.load(judged.name, weights, dtype=judged.dtype)
    scores = {judged.label: Score() for judged in judging}
    done = 0
    with torch.inference_mode():
        for chunk in batches(windows, batch):
            inputs, targets = chunk[:, :-1], chunk[:, 1:].flatten()  # (b, T), (b * T,)
            base_logp: torch.Tensor | None = None
            for judged in judging:  # the baseline first, so base_logp is set for the rest
                start = time.perf_counter()
                logits = models[judged.label](inputs)  # (b, T, V)
                seconds = time.perf_counter() - start
                logp = F.log_softmax(logits.float().flatten(0, 1), dim=-1)  # (b * T, V)
                if base_logp is None:
                    base_logp = logp
                scores[judged.label].add(logp, base_logp, targets, seconds)
            done += chunk.size(0)
            if done == windows.size(0) or done // batch % 10 == 0:
                progress(f"evaluated {done}/{windows.size(0)} windows")
    baseline_ppl = math.exp(scores[BASELINE].nll / scores[BASELINE].count)
    return [scores[j.label].row(j, models[j.label], baseline_ppl) for j in judging]


# -- report ---------------------------------------------------------------------------------
def table(rows: Sequence[dict[str, Any]], unigram: float) -> str:
    header = ("variant", "dtype", "weight memory", "perplexity", "ratio to float32",
              "mean KL(float32 ‖ variant)", "top-1 agreement", "forward time")
    lines = ["| " + " | ".join(header) + " |", "| --- | --- " + "| ---: " * (len(header) - 2) + "|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['dtype']} | {r['weight_bytes'] / MiB:.1f} MiB "
                     f"| {r['perplexity']:.3f} | {r['ratio_to_float32']:.4f} "
                     f"| {r['mean_kl_from_float32']:.2e} "
                     f"| {100 * r['top1_agreement']:.2f}% | {r['eval_seconds']:.1f}s |")
    lines.append(f"| unigram (training-token frequencies) | | | {unigram:.1f} | "
                 f"{unigram / rows[0]['perplexity']:.2f} | | | |")
    return "\n".join(lines)


def read_record(weights: Path) -> dict[str, Any] | None:
    path = weights / "training.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def split_settings(args: argparse.Namespace, record: dict[str, Any] | None) -> tuple[Path, int, int | None]:
    """The text and split to use: the flags, or for ``--weights``, those the weights were trained with.

    Held-out text must be text the model never saw, so a flag that contradicts
    the recorded split is refused rather than followed.
    """
    recorded = (record or {}).get("corpus_settings", {})
    chosen = {}
    for key in ("source", "held_out_every"):  # --max-files only reads fewer files: any split of them holds
        given, was = getattr(args, key), recorded.get(key)
        if given is not None and key in recorded:
            same = Path(given) == Path(was) if key == "source" else given == was
            if not same:
                flag = "--" + key.replace("_", "-")
                raise SystemExit(f"error: these weights were trained with {flag} {was}, so {flag} {given} "
                                 f"would score text they were trained on; drop {flag} or retrain")
        chosen[key] = given if given is not None else recorded.get(key)
    source = Path(chosen["source"] or sysconfig.get_paths()["stdlib"])
    return source, chosen["held_out_every"] or 10, args.max_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out-quantisation"),
                        help="folder for the trained weights (OUT/model) and results.json "
                        "(default: %(default)s)")
    parser.add_argument("--weights", type=Path,
                        help="a folder written by an earlier run (OUT/model): evaluate it, skip training")
    parser.add_argument("--json", type=Path, help="where to write the results (default: OUT/results.json)")
    text = parser.add_argument_group("text")
    text.add_argument("--source", help="folder of .py files (default: this Python's standard library)")
    text.add_argument("--held-out-every", type=int,
                      help="hold out one file in N, by hash of its path (default 10)")
    text.add_argument("--max-files", type=int,
                      help="read at most N files on each side of the split (quick trials)")
    model = parser.add_argument_group("model")
    model.add_argument("--n-layer", type=int, default=4)
    model.add_argument("--n-embd", type=int, default=128,
                       help="a multiple of 32 keeps the int4 kernel's groups unpadded (default %(default)s)")
    model.add_argument("--n-head", type=int, default=4)
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=int, default=200)
    training.add_argument("--batch", type=int, default=8, help="windows per step (default %(default)s)")
    training.add_argument("--context", type=int, default=128,
                          help="tokens per window, in training and evaluation (default %(default)s)")
    training.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default %(default)s)")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    training.add_argument("--log-every", type=int, default=25, help=argparse.SUPPRESS)
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--eval-tokens", type=int, default=32768,
                            help="held-out targets scored (default %(default)s)")
    evaluation.add_argument("--eval-batch", type=int, default=8,
                            help="windows per forward (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    for flag in ("steps", "batch", "context", "threads", "eval_tokens", "eval_batch", "held_out_every",
                 "max_files", "log_every"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise SystemExit(f"error: --{flag.replace('_', '-')} must be at least 1, not {value}")
    torch.set_num_threads(args.threads)
    record = None
    if args.weights is not None:
        if not (args.weights / "config.json").is_file():
            raise SystemExit(f"error: {str(args.weights)!r} is not a folder written by this script "
                             "(no config.json); pass OUT/model of an earlier run")
        record = read_record(args.weights)
    source, held_out_every, max_files = split_settings(args, record)
    progress(f"reading and tokenising {source}")
    corpus = load_corpus(source, held_out_every, max_files)
    info = corpus.summary()
    print(f"text: {info['root']} ({platform.python_implementation()} {platform.python_version()}), "
          f"held out one file in {held_out_every} by path hash")
    print(f"  training: {info['train_files']} files, {info['train_tokens']:,} tokens; "
          f"held out: {info['held_out_files']} files, {info['held_out_tokens']:,} tokens"
          + (f"; {len(corpus.skipped_files)} files skipped (not UTF-8)" if corpus.skipped_files else ""))

    if args.weights is None:
        config = zoo.GPT2Config(n_positions=max(args.context, 128), n_embd=args.n_embd,
                                n_layer=args.n_layer, n_head=args.n_head)
        model, training = train(config, corpus.train, args, progress)
        weights = args.out / "model"
        args.out.mkdir(parents=True, exist_ok=True)
        zoo.convert(model.export_weights(), weights, to="hf", config=config, layout="canonical", force=True)
        record = {"corpus_settings": {"source": str(source), "held_out_every": held_out_every,
                                      "max_files": max_files},
                  "corpus": info, "config": dataclasses.asdict(config), "training": training,
                  "torch": torch.__version__}
        (weights / "training.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        del model
    else:
        weights = args.weights
    config = zoo.GPT2Config.from_json_file(weights / "config.json")
    if args.context > config.n_positions:
        raise SystemExit(f"error: --context={args.context} exceeds the model's "
                         f"n_positions={config.n_positions}; lower --context")
    print(f"model: {config.n_layer} layers, n_embd {config.n_embd}, {config.n_head} heads, "
          f"vocabulary {config.vocab_size}, {config.n_params / 1e6:.1f}M parameters; weights in {weights}")
    if record is not None and "training" in record:
        t = record["training"]
        print(f"  trained {t['steps']} steps x {t['batch']} x {t['context']} tokens "
              f"({t['tokens_seen']:,} tokens) in {t['seconds']:.0f}s on {t['threads']} threads: "
              f"loss {t['initial_loss']:.3f} at step 0, {t['final_loss']:.3f} over the last tenth")

    windows = eval_windows(corpus.held_out, args.context, args.eval_tokens)
    targets = windows[:, 1:]
    unigram = unigram_perplexity(corpus.train, targets, config.vocab_size)
    judging, not_judged = runnable()
    rows = evaluate(weights, windows, args.eval_batch, judging)
    print(f"evaluation: {targets.numel():,} held-out targets in {windows.size(0)} windows of "
          f"{args.context} tokens; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, reason in not_judged.items():
        print(f"  not judged: {label}: {reason}")
    print()
    print(table(rows, unigram))
    results = {"corpus": info, "held_out_every": held_out_every, "config": dataclasses.asdict(config),
               "weights": str(weights), "training": (record or {}).get("training"),
               "eval_targets": int(targets.numel()), "context": args.context,
               "unigram_perplexity": unigram, "results": rows, "not_judged": not_judged, "torch": torch.__version__,
               "python": platform.python_version()}
    out_json = args.json or args.out / "results.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nwrote {out_json}")


if __name__ == "__main__":
    main()
