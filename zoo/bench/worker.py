"""One subject of ``zoo bench``, measured in a process of its own.

``python -m zoo.bench.worker SPEC`` reads a JSON spec (see :func:`measure`),
prints progress lines on stderr and one JSON result on the last line of
stdout. A process per subject keeps peak memory, thread pools and compiled
code from leaking from one subject into the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["measure", "summary"]


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max of the timed runs."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def _progress(label: str, message: str) -> None:
    print(f"{label}: {message}", file=sys.stderr, flush=True)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # settable only before any parallel work has run
        torch.set_num_interop_threads(1)


def _runner(subject: dict[str, Any], weights_dir: Path, device: str, threads: int) -> Any:
    from .runners import ReferenceRunner, VariantRunner

    kind, name, precision = subject["kind"], subject["name"], subject["precision"]
    if kind == "reference":
        return ReferenceRunner(weights_dir, precision, device, threads)
    return VariantRunner(name, weights_dir, precision, device, threads)


def _time_runs(label: str, what: str, warmup: int, runs: int, once: Callable[[], Any]) -> tuple[list[Any], float]:
    """``warmup`` untimed calls, then ``runs`` calls; returns their results and the first call's time."""
    first = 0.0
    for i in range(warmup):
        start = time.perf_counter()
        once()
        if i == 0:
            first = time.perf_counter() - start
            _progress(label, f"{what}: warm-up took {first:.2f} s")
    results = []
    for i in range(runs):
        results.append(once())
        _progress(label, f"{what}: run {i + 1}/{runs}")
    return results, first


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one subject.

    ``spec``: ``subject`` (``kind`` reference or variant, ``name``, ``precision``),
    ``label``, ``weights_dir``, ``device``, ``threads``, ``warmup``, ``runs``,
    ``prefill`` (list of ``[B, T]``), ``decode`` (list of ``B``),
    ``prompt_tokens``, ``new_tokens``, ``vocab_size``, and ``reference`` (the
    name to measure fidelity against, or ``None`` to skip it). A subject that
    cannot decode (:meth:`~zoo.bench.runners.Runner.why_no_decode`) gets
    ``decode_missing``, the reason, instead of decode and time-to-first-token
    figures; one that decodes by a loop of its own gets ``decode_note``
    (:meth:`~zoo.bench.runners.Runner.decode_note`) beside them.
    """
    import numpy as np

    label = spec["label"]
    threads = int(spec["threads"])
    _set_threads(threads)
    runner = _runner(spec["subject"], Path(spec["weights_dir"]), spec["device"], threads)
    runner.prepare()
    rss_before = _peak_rss()
    start = time.perf_counter()
    runner.load()
    load_s = time.perf_counter() - start
    _progress(label, f"loaded in {load_s:.2f} s")
    out: dict[str, Any] = {"load_s": load_s, "weight_bytes": runner.weight_bytes(), "prefill": {}, "decode": {},
                           "ttft_s": {}, "first_call_s": {}}
    rng = np.random.default_rng(0)
    vocab, warmup, runs = spec["vocab_size"], spec["warmup"], spec["runs"]

    for batch, tokens in spec["prefill"]:
        ids = rng.integers(0, vocab, (batch, tokens), dtype=np.int64)
        key = f"{batch}x{tokens}"

        def prefill_once(ids: np.ndarray = ids) -> float:
            start = time.perf_counter()
            runner.prefill(ids)
            return ids.size / (time.perf_counter() - start)

        rates, first = _time_runs(label, f"prefill {key}", warmup, runs, prefill_once)
        out["prefill"][key], out["first_call_s"][f"prefill {key}"] = summary(rates), first

    new = spec["new_tokens"]
    no_decode = runner.why_no_decode()
    if no_decode:
        out["decode_missing"] = no_decode
        _progress(label, f"decode: not measured: {no_decode}")
    elif runner.decode_note():
        out["decode_note"] = runner.decode_note()
        _progress(label, f"decode: {out['decode_note']}")
    for batch in [] if no_decode else spec["decode"]:
        ids = rng.integers(0, vocab, (batch, spec["prompt_tokens"]), dtype=np.int64)
        key = f"b{batch}"

        def decode_once(ids: np.ndarray = ids) -> tuple[float, float]:
            ticks: list[float] = []
            start = time.perf_counter()
            runner.generate(ids, new, lambda: ticks.append(time.perf_counter()))
            if len(ticks) != new:
                raise RuntimeError(f"{label} produced {len(ticks)} decoding steps, expected {new}")
            rate = ids.shape[0] * (new - 1) / (ticks[-1] - ticks[0])  # steps after the first token
            return rate, ticks[0] - start

        results, first = _time_runs(label, f"decode {key}", warmup, runs, decode_once)
        out["decode"][key] = summary([r for r, _ in results])
        out["ttft_s"][key] = summary([t for _, t in results])
        out["first_call_s"][f"decode {key}"] = first
    out["peak_rss_bytes"] = _peak_rss()
    out["rss_before_load_bytes"] = rss_before
    if spec.get("reference"):  # after the peak is read: the small learned model does not count
        _progress(label, "fidelity on learned weights")
        try:
            fidelity = runner.fidelity(spec["reference"])
        except Exception as exc:  # noqa: BLE001 - speed was measured; a fidelity failure is reported beside it
            fidelity = f"measuring it failed: {type(exc).__name__}: {exc}"
        out["fidelity" if isinstance(fidelity, dict) else "fidelity_missing"] = fidelity
    return out


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> int:
    spec = json.loads(sys.argv[1])
    os.environ.setdefault("ZOO_OFFLINE", "1")
    try:
        if "bandwidth" in spec:
            from .machine import memory_bandwidth

            result = {"status": "ok", **memory_bandwidth(int(spec["threads"]), spec["device"], int(spec["bandwidth"]))}
        else:
            result = {"status": "ok", **measure(spec)}
    except Exception as exc:  # noqa: BLE001 - any failure of one subject is reported, not fatal to the run
        import traceback

        traceback.print_exc(file=sys.stderr)
        result = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
