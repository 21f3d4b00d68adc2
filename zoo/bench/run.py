"""``zoo bench``: what to measure, the weights every subject reads, one worker process per subject."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import zoo
from zoo import CapabilityError, GPT2Config, Variant, ZooError

from .machine import describe

__all__ = ["REFERENCE_DTYPE", "NoReferenceError", "Settings", "Subject", "reference_variant", "run_bench",
           "subjects_for"]

log = logging.getLogger("zoo")

REFERENCE_DTYPE = "float32"  # every ratio is against the reference at float32, in the same run
SCHEMA = "gpt2-zoo/bench/1"  # the layout of the report and of --json files: zoo/schemas/bench.schema.json


@dataclass(frozen=True)
class Settings:
    """What is measured; :meth:`full` is what the README's table reports."""

    runs: int = 5  # timed runs after the warm-up; the table shows their median, min and max
    warmup: int = 1
    prefill: tuple[tuple[int, int], ...] = ((1, 1024), (8, 128))  # (batch, tokens)
    decode: tuple[int, ...] = (1, 8)  # batch sizes
    prompt_tokens: int = 16
    new_tokens: int = 128
    bandwidth_bytes: int = 1 << 30  # buffer streamed to measure memory bandwidth: far beyond any cache
    fidelity: bool = True  # also measure each subject on learned weights (zoo.fidelity), after its timings

    def steps(self) -> int:
        """The progress lines one subject's worker prints: its load, each measurement's warm-up and runs, and
        its fidelity."""
        return 1 + (len(self.prefill) + len(self.decode)) * (min(self.warmup, 1) + self.runs) + int(self.fidelity)

    @classmethod
    def full(cls) -> Settings:
        return cls()

    @classmethod
    def quick(cls) -> Settings:
        """Fewer runs and a shorter decode: a first look in about a quarter of the time."""
        return cls(runs=2, new_tokens=32)

    def fitted(self, config: GPT2Config) -> Settings:
        """The same settings, clipped to the context of a config smaller than GPT-2's."""
        n = config.n_positions
        prompt = min(self.prompt_tokens, n // 2)
        return replace(self, prefill=tuple((b, min(t, n)) for b, t in self.prefill), prompt_tokens=prompt,
                       new_tokens=max(2, min(self.new_tokens, n - prompt)))


@dataclass(frozen=True)
class Subject:
    """One row of the table: the reference or a variant, in one dtype."""

    kind: str  # "reference" or "variant"
    name: str
    precision: str  # the dtype it is loaded and computes in: "float32", "bfloat16"...
    family: str  # what its weights are stored as, for comparing like with like: float32, bfloat16, int8, int4
    skip: str = ""  # why it is not measured (not installed, dtype not offered...)
    notes: str = ""
    # bits per weight a decode step reads (zoo.PRECISIONS); None where the precision is unknown (a skipped row)
    bits_per_weight: float | None = None

    @property
    def label(self) -> str:
        name = f"{self.name} generate" if self.kind == "reference" else self.name  # timed through generate()
        if self.kind == "variant" and self.family != self.precision:  # quantised: int8 weights, bf16 activations
            return f"{name} {self.family}/{self.precision}"
        return f"{name} {self.precision}"


class NoReferenceError(ZooError, LookupError):
    """Not exactly one registered variant declares ``reference=True``."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


def reference_variant(variants: Iterable[Variant] | None = None) -> Variant:
    """The variant every other is measured against: the one that declares ``reference=True``.

    :param variants: where to look (default: every registered variant).
    :raises NoReferenceError: if none or several declare it, saying how to fix it.
    """
    if variants is None:
        variants = [zoo.get_variant(name) for name in zoo.list_variants()]
    found = [v for v in variants if v.reference]
    if len(found) == 1:
        return found[0]
    if not found:
        broken = "; ".join(f"{b.name}: {b.message}" for b in zoo.broken_plugins())
        raise NoReferenceError(
            "no registered variant declares reference=True, so there is nothing to measure the others against; "
            "install (or repair) the plugin that provides the reference, or register one with "
            "zoo.register(zoo.Variant(..., reference=True))" + (f" (broken plugins: {broken})" if broken else "")
        )
    declared = ", ".join(f"{v.name!r} ({v.source or 'no source'})" for v in found)
    raise NoReferenceError(
        f"{len(found)} variants declare reference=True: {declared}; exactly one may, so "
        "unregister the others (zoo.unregister(NAME)) or uninstall the packages that declare them"
    )


def _variant_subject(spec: str, dtype: str | None, device: str) -> Subject:
    try:
        variant, asked = zoo.resolve(spec)
    except zoo.UnknownVariantError:  # a precision it does not offer is a skipped row; an unknown name raises
        name, _, asked = spec.partition("@")
        variant = zoo.get_variant(name)
    name, caps = variant.name, variant.capabilities
    precision = asked or dtype or caps.dtypes[0]
    skip = ""
    if zoo.distribution_of(name) is None:
        skip = (f"{name} was registered at run time, which the benchmark's worker processes cannot see; "
                "install it as a plugin (entry-point group 'zoo') to measure it")
    elif variant.why_unavailable():
        skip = f"{name} cannot run here: {variant.why_unavailable()}"
    elif precision not in caps.dtypes:
        skip = f"{name} does not offer {precision} (it offers {', '.join(caps.dtypes)})"
    elif device.split(":")[0] not in caps.devices:
        skip = f"{name} does not run on {device} (it runs on {', '.join(caps.devices)})"
    try:
        stored = variant.weight_precision(precision)
    except CapabilityError as exc:
        return Subject("variant", name, precision, precision, skip or str(exc), variant.notes)
    return Subject("variant", name, precision, stored.family, skip, variant.notes, stored.bits)


def subjects_for(names: Sequence[str], dtype: str | None, device: str) -> list[Subject]:
    """The reference first, then the variants ``names`` (``NAME`` or ``NAME@PRECISION``, see :func:`zoo.resolve`).

    The reference is :func:`reference_variant`, timed at :data:`REFERENCE_DTYPE`;
    without ``names``, every other registered variant follows it (one that
    cannot run here is a skipped row saying why).
    """
    reference = reference_variant()
    stored = reference.weight_precision(REFERENCE_DTYPE)
    subjects = [Subject("reference", reference.name, REFERENCE_DTYPE, stored.family, bits_per_weight=stored.bits)]
    chosen = list(names) or [n for n in zoo.list_variants() if n != reference.name]
    subjects += [_variant_subject(spec, dtype, device) for spec in chosen]
    return subjects


def default_work_dir() -> Path:
    """``zoo.cache_dir("bench")``: ``$ZOO_CACHE/bench``, else ``$XDG_CACHE_HOME/gpt2-zoo/bench``..."""
    return zoo.cache_dir("bench")


def prepare_weights(config: GPT2Config, work_dir: Path, seed: int = 0) -> Path:
    """GPT-2's random initialisation at ``config``'s shape, as a float32 ``save_pretrained`` folder (cached)."""
    folder = work_dir / f"random-{config.n_layer}x{config.n_embd}-v{config.vocab_size}-p{config.n_positions}-s{seed}"
    if not (folder / "model.safetensors").is_file():
        work_dir.mkdir(parents=True, exist_ok=True)
        log.info("writing random weights for %s to %s", config, folder)
        zoo.convert(zoo.random_weights(config, seed), folder, to="hf", config=config, layout="canonical",
                    force=True)
    return folder


@dataclass
class Result:
    subject: Subject
    status: str  # "ok", "skipped", "error"
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self.subject), "label": self.subject.label, "status": self.status,
                "reason": self.reason, **self.figures}


def _worker(spec: dict[str, Any], threads: int, progress: Callable[[str], None],
            step: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Run one worker process; relay its progress lines (each a ``step``); return its JSON result."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)  # every pool in the worker gets the same, deliberate thread count
    tail: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "zoo.bench.worker", json.dumps(spec)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None and proc.stdout is not None  # both are pipes
        for line in proc.stderr:
            line = line.rstrip("\n")
            tail = [*tail[-20:], line]
            if line.startswith(f"{spec.get('label')}: "):  # the worker's own lines, not libraries' chatter
                progress(line)
                step()
        out = proc.stdout.read().strip().splitlines()
    if proc.returncode != 0 or not out:
        return {"status": "error", "reason": f"the worker exited with {proc.returncode}: " + " | ".join(tail[-3:])}
    result: dict[str, Any] = json.loads(out[-1])
    if result.get("status") == "error":
        log.debug("worker stderr for %s:\n%s", spec.get("label"), "\n".join(tail))
    return result


def run_bench(
    names: Sequence[str] = (),
    *,
    config: GPT2Config | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    threads: int | None = None,
    settings: Settings | None = None,
    work_dir: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
    on_step: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Measure the reference and the variants ``names`` (default: every registered one) on one set of weights.

    ``progress`` is called with a line at each phase of each subject;
    ``on_step(n, total)`` with ``n`` steps just finished out of ``total``
    (the bandwidth, then each subject's :meth:`Settings.steps`).
    Returns the report :mod:`zoo.bench.report` prints and ``--json`` writes.
    """
    config = config or GPT2Config()
    threads = threads or os.cpu_count() or 1
    settings = (settings or Settings.full()).fitted(config)
    if device != "cpu":
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise CapabilityError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    subjects = subjects_for(names, dtype, device)
    work_dir = work_dir or default_work_dir()
    weights_dir = prepare_weights(config, work_dir)
    started = time.time()
    per_subject, total = settings.steps(), 1 + len(subjects) * settings.steps()
    progress(f"measuring memory bandwidth ({threads} threads)")
    bandwidth = _worker({"bandwidth": settings.bandwidth_bytes, "threads": threads, "device": device}, threads, progress)
    if bandwidth.get("status") != "ok":
        raise ZooError(f"could not measure memory bandwidth: {bandwidth.get('reason')}")
    on_step(1, total)
    results = []
    for i, subject in enumerate(subjects, 1):
        label = f"[{i}/{len(subjects)}] {subject.label}"
        if subject.skip:
            progress(f"{label}: skipped: {subject.skip}")
            results.append(Result(subject, "skipped", subject.skip))
            on_step(per_subject, total)
            continue
        spec = {"subject": asdict(subject), "label": label, "weights_dir": str(weights_dir), "device": device, "threads": threads,
                "warmup": settings.warmup, "runs": settings.runs, "prefill": settings.prefill,
                "decode": settings.decode, "prompt_tokens": settings.prompt_tokens,
                "new_tokens": settings.new_tokens, "vocab_size": config.vocab_size,
                "reference": subjects[0].name if settings.fidelity else None}
        seen = 0

        def step() -> None:
            nonlocal seen
            seen += 1
            on_step(1, total)

        figures = _worker(spec, threads, progress, step)
        on_step(max(per_subject - seen, 0), total)  # a failed worker stops early; its steps are over too
        status, reason = figures.pop("status", "error"), figures.pop("reason", "")
        if status != "ok":
            progress(f"{label}: failed: {reason}")
        results.append(Result(subject, status, reason, figures))
    return {
        "schema": SCHEMA,
        "machine": describe(device),
        "device": device,
        "threads": threads,
        "config": asdict(config),
        "settings": asdict(settings),
        "bandwidth": {k: v for k, v in bandwidth.items() if k != "status"},
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": time.time() - started,
        "results": [r.as_json() for r in results],
    }
