"""Run the conformance properties on variants and collect what happened.

>>> from conformance.runner import check  # doctest: +SKIP
>>> results = check(["pure"], profile="quick")  # doctest: +SKIP
>>> [(r.prop, r.status) for r in results]  # doctest: +SKIP
[('interface', 'pass'), ('logits', 'pass'), ...]

Each property runs as a hypothesis test, called directly; a failure is
caught with its shrunk counterexample (hypothesis attaches it to the
exception as notes). The interface check runs first: if it fails, the
variant's properties are skipped with one clear failure.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
import unittest
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis.errors import HypothesisException

import zoo

from . import models, profiles
from .assertions import ConformanceFailure, Stats
from .database import VariantDatabase
from .properties import PROPERTIES, Context, Property, check_interface, get_property

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

__all__ = ["PropertyResult", "check", "check_variant", "reproducer"]

log = logging.getLogger("zoo.conformance")

INTERFACE = "interface"


@dataclass
class PropertyResult:
    """One cell of the ``zoo check`` table."""

    variant: str
    prop: str
    status: str  # "pass", "fail", "skip"
    examples: int = 0
    seconds: float = 0.0
    worst: float | None = None  # worst error seen (or agreement, for top-1)
    bound: float | None = None  # its bound
    measure: str = ""
    message: str = ""  # why it failed or was skipped
    counterexample: list[str] = field(default_factory=list)  # hypothesis' notes: the shrunk example
    reproduce: str = ""
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # fidelity: "preset@dtype" -> kl, top1...
    replayed: int | None = None  # stored examples replayed from the database (None: no database)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reproducer(variant: str, profile: str, device: str, seed_value: int | None) -> Callable[[str], str]:
    """The ``zoo check`` command that reruns one property of this run."""

    def command(prop: str) -> str:
        parts = ["zoo check", variant, "--property", prop, "--profile", profile]
        if device != "cpu":
            parts += ["--device", device]
        if seed_value is not None and not profiles.is_derandomized(profile):
            parts += ["--seed", str(seed_value)]
        return " ".join(parts)

    return command


def _notes(exc: BaseException) -> list[str]:
    return [str(n) for n in getattr(exc, "__notes__", [])]


def run_property(prop: Property, ctx: Context, profile: str, seed_value: int | None = None, *,
                 database: VariantDatabase | None = None, replay: bool = False) -> PropertyResult:
    """Run one property's hypothesis test and summarise it; never raises for a variant's failure.

    ``database``: failing examples are replayed from it first and saved to it;
    ``replay``: only the ones it holds are run (a property with none is a skip).
    """
    ctx.stats = Stats()
    result = PropertyResult(ctx.variant.name, prop.name, "pass", reproduce=ctx.reproducer(prop.name))
    start = time.perf_counter()
    fetched = database.fetched if database is not None else 0
    try:
        prop.test(ctx, profiles.get(profile), seed_value, database=database, replay=replay)()
    except ConformanceFailure as exc:
        result.status, result.message = "fail", str(exc)
        result.counterexample = _notes(exc)
    except HypothesisException as exc:  # a health check, an unsatisfiable strategy: the harness's problem
        result.status = "fail"
        result.message = f"{ctx.variant.name} {prop.name}: hypothesis could not run: {type(exc).__name__}: {exc}"
    except unittest.SkipTest:  # hypothesis, told to replay, found nothing stored
        result.status, result.message = "skip", "no stored failure to replay"
    except Exception as exc:  # noqa: BLE001  # the variant crashed on a valid input: report it as a failure
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.status = "fail"
        result.message = (
            f"{ctx.variant.name} fails {prop.name}: raised {type(exc).__name__}: {exc}\n"
            f"  at {where.filename}:{where.lineno} in {where.name}\n  reproduce: {result.reproduce}"
        )
        result.counterexample = _notes(exc)
    if database is not None:
        result.replayed = database.fetched - fetched
    result.seconds = time.perf_counter() - start
    result.examples = ctx.stats.examples
    result.figures = dict(ctx.stats.figures)
    if ctx.stats.worst is not None:
        result.worst, result.bound = ctx.stats.worst.value, ctx.stats.worst.bound
        result.measure = ctx.stats.worst.measure
    return result


def _device_problem(variant: zoo.Variant, device: str) -> str | None:
    import torch

    kind = torch.device(device).type
    if kind not in variant.capabilities.devices:
        return f"{variant.name} does not declare device {kind!r} (it offers {', '.join(variant.capabilities.devices)})"
    if kind == "cuda" and not torch.cuda.is_available():
        return "torch sees no CUDA GPU here"
    return None


def check_variant(
    name: str,
    *,
    profile: str | None = None,
    device: str = "cpu",
    properties: Sequence[str] | None = None,
    seed_value: int | None = None,
    progress: Callable[[str], None] | None = None,
    database: ExampleDatabase | None = None,
    replay: bool = False,
    on_result: Callable[[PropertyResult], None] | None = None,
) -> list[PropertyResult]:
    """Check one variant: the interface first, then each property its capabilities call for.

    :param progress: called with a line as each check starts and ends.
    :param database: a hypothesis example database: the variant's failing examples are
        saved to it, and replayed first next time (see :mod:`conformance.database`).
    :param replay: run only the examples ``database`` holds for this variant.
    :param on_result: called with each result (skips included) as soon as it is known.
    """
    profile = profiles.resolve(profile)
    variant, dtype = zoo.resolve(name)
    if dtype is not None:  # NAME@DTYPE: that dtype alone, reported under the spec
        variant = dataclasses.replace(variant, name=name, capabilities=dataclasses.replace(
            variant.capabilities, dtypes=(dtype,)))
    name = variant.name
    say = progress or (lambda line: None)
    if replay and database is None:
        raise ValueError("replay=True needs a database to replay from")
    own = None if database is None else VariantDatabase(database, name, str(device).split(":")[0])
    ctx = Context(variant, device, reproducer(name, profile, device, seed_value))
    wanted = [get_property(p) for p in properties] if properties else list(PROPERTIES)
    results: list[PropertyResult] = []

    def record(result: PropertyResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    unusable = variant.why_unavailable() or _device_problem(variant, device)
    if unusable is not None:
        for p in wanted:
            record(PropertyResult(name, p.name, "skip", message=unusable))
        return results

    say(f"{name}: {INTERFACE} ...")
    start = time.perf_counter()
    problems = check_interface(variant, device)
    interface = PropertyResult(name, INTERFACE, "fail" if problems else "pass", examples=1,
                               seconds=time.perf_counter() - start,
                               message="\n".join(f"{name} fails interface: {p}" for p in problems))
    say(f"{name}: {INTERFACE} {interface.status} ({interface.seconds:.1f}s)")
    record(interface)
    try:
        for prop in wanted:
            if problems:
                record(PropertyResult(name, prop.name, "skip", message="the interface check failed"))
                continue
            reason = prop.requires(variant.capabilities)
            if reason is not None:
                record(PropertyResult(name, prop.name, "skip", message=reason))
                continue
            say(f"{name}: {prop.name} ...")
            result = run_property(prop, ctx, profile, seed_value, database=own, replay=replay)
            replayed = f"{result.replayed} replayed, " if result.replayed else ""
            say(f"{name}: {prop.name} {result.status} ({replayed}{result.examples} examples, {result.seconds:.1f}s)")
            record(result)
    finally:
        models.clear(name)
    return results


def check(
    names: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[PropertyResult]:
    """Check ``names`` (default: every registered variant); see :func:`check_variant` for the options."""
    results: list[PropertyResult] = []
    for name in names or zoo.list_variants():
        results.extend(check_variant(name, **kwargs))
    return results


# -- presentation ---------------------------------------------------------------------------
def _cell(result: PropertyResult) -> str:
    if result.status == "skip":
        return "skip"
    text = result.status
    if result.worst is not None and result.bound is not None and result.measure != "max abs difference":
        text += f" {result.worst:.1e}/{result.bound:.1e}"
    return text


def _render(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns, the first a heading underlined with dashes."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: Sequence[PropertyResult]) -> str:
    """One row per variant and property: status, examples, worst error / bound, time.

    A variant whose every property was skipped for one reason (an engine not
    installed, a device it does not run on) is one row: ``(all)``.
    """
    head = ("variant", "property", "result", "examples", "worst / bound", "time")
    rows: list[tuple[str, ...]] = [head]
    by_variant: dict[str, list[PropertyResult]] = {}
    for r in results:
        by_variant.setdefault(r.variant, []).append(r)
    collapsed = {v for v, rs in by_variant.items()
                 if len(rs) > 1 and all(r.status == "skip" for r in rs) and len({r.message for r in rs}) == 1}
    for r in results:
        if r.variant in collapsed:
            if r is by_variant[r.variant][0]:
                rows.append((r.variant, "(all)", "skip", "", r.message, ""))
            continue
        worst = ""
        if r.worst is not None and r.bound is not None and r.status != "skip":
            worst = f"{r.worst:.2e} / {r.bound:.2e} ({r.measure})"
        rows.append((r.variant, r.prop, r.status.upper() if r.status == "fail" else r.status,
                     str(r.examples) if r.status != "skip" else "",
                     worst or (r.message if r.status == "skip" else ""),
                     f"{r.seconds:.1f}s" if r.status != "skip" else ""))
    return _render(rows)


def fidelity_table(results: Sequence[PropertyResult]) -> str:
    """The fidelity figures: one row per variant, preset and dtype; empty when none were measured."""
    head = ("variant", "preset", "dtype", "KL", "top-1", "perplexity", "ratio")
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        for key, f in sorted(r.figures.items()):
            preset, _, dtype = key.partition("@")
            rows.append((r.variant, preset, dtype, f"{f['kl']:.2e}", f"{f['top1']:.4f}", f"{f['ppl']:.4g}",
                         f"{f['ppl_ratio']:.4f}"))
    if len(rows) == 1:
        return ""
    return _render(rows)


def failures(results: Sequence[PropertyResult]) -> str:
    """Each failure's message, shrunk counterexample and reproducer."""
    blocks = []
    for r in results:
        if r.status != "fail":
            continue
        block = [f"== {r.variant} / {r.prop} ==", r.message]
        block += [f"  {line}" for note in r.counterexample for line in note.splitlines()]
        if r.reproduce and r.reproduce not in r.message:
            block.append(f"  reproduce: {r.reproduce}")
        blocks.append("\n".join(block))
    return "\n\n".join(blocks)
