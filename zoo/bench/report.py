"""Ratios against the reference, and the tables ``zoo bench`` prints (Markdown, so the README can hold them)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_ratios", "format_report", "streamed_bytes"]

MiB = 1024 * 1024
OWN_LOOP = " †"  # marks the decode figures of a variant decoded by its own greedy loop (decode_note)

def streamed_bytes(config: dict[str, Any], bits_per_weight: float) -> float:
    """The fewest bytes one decoding step must read at ``bits_per_weight``, whatever the batch.

    Every block's four matrices and the output head (``vocab x n_embd``, the
    tied ``wte``) are streamed whole; the embedding lookups read one row per
    token, so ``wpe`` and an untied copy of ``wte`` do not count; biases and
    LayerNorms are counted at the same width. ``bits_per_weight`` is the row of
    :data:`zoo.PRECISIONS` a subject stores its weights in (``q8_0``: 8.5, its
    block scales included).
    """
    d, layers, vocab = config["n_embd"], config["n_layer"], config["vocab_size"]
    per_block = 12 * d * d + 13 * d  # c_attn 3d^2, attn.c_proj d^2, c_fc 4d^2, mlp.c_proj 4d^2; biases, LNs
    return bits_per_weight / 8 * (layers * per_block + vocab * d + 2 * d)


def _median(figures: dict[str, Any], *path: str) -> float | None:
    node: Any = figures
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node["median"]) if isinstance(node, dict) else float(node)


def add_ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Give every measured row ``ratios`` against the reference row (the first), and its decode floor.

    Speeds (tokens/s) are ``subject / reference``; times (load, time to first
    token) are ``reference / subject``, so above 1 is better for both; memory
    is ``subject / reference``, so below 1 is smaller.
    """
    rows = report["results"]
    ref = rows[0] if rows and rows[0]["kind"] == "reference" and rows[0]["status"] == "ok" else None
    bandwidth = report.get("bandwidth", {}).get("bytes_per_s")
    for row in rows:
        if row["status"] != "ok":
            continue
        bits = row.get("bits_per_weight")
        needed = streamed_bytes(report["config"], bits) if "config" in report and bits else None
        if bandwidth and needed:
            # the fewest bytes a step reads, at the best streaming read measured: nothing decodes faster
            row["streamed_bytes"] = needed
            row["decode_floor_tok_s"] = {f"b{b}": b * bandwidth / needed for b in report["settings"]["decode"]}
        if ref is None:
            continue
        ratios: dict[str, float] = {}
        for section in ("prefill", "decode"):
            for key in row.get(section, {}):
                mine, theirs = _median(row, section, key), _median(ref, section, key)
                if mine and theirs:
                    ratios[f"{section} {key}"] = mine / theirs
        for key in row.get("ttft_s", {}):
            mine, theirs = _median(row, "ttft_s", key), _median(ref, "ttft_s", key)
            if mine and theirs:
                ratios[f"ttft {key}"] = theirs / mine
        for key, faster_when_smaller in (("load_s", True), ("peak_rss_bytes", False), ("weight_bytes", False)):
            mine, theirs = row.get(key), ref.get(key)
            if mine and theirs:
                ratios[key] = theirs / mine if faster_when_smaller else mine / theirs
        row["ratios"] = ratios
    return report


def _cell(row: dict[str, Any], section: str, key: str, scale: float = 1.0, digits: int = 0) -> str:
    value = _median(row, section, key)
    if value is None:
        return "-"
    text = f"{value * scale:,.{digits}f}"
    ratio = row.get("ratios", {}).get(f"{'ttft' if section == 'ttft_s' else section} {key}")
    return f"{text} ({ratio:.2f}x)" if ratio is not None and row["kind"] != "reference" else text


def _plain(row: dict[str, Any], key: str, scale: float, digits: int) -> str:
    value = row.get(key)
    if not value:
        return "-"
    ratio = row.get("ratios", {}).get(key)
    text = f"{value * scale:,.{digits}f}"
    return f"{text} ({ratio:.2f}x)" if ratio is not None and row["kind"] != "reference" else text


def _spread(row: dict[str, Any], section: str, key: str, scale: float = 1.0) -> str:
    node = row.get(section, {}).get(key)
    if not node:
        return "-"
    return f"{node['min'] * scale:,.0f}-{node['max'] * scale:,.0f}"


def _fidelity_cells(row: dict[str, Any]) -> list[str]:
    """KL(float32 || subject) and top-1 agreement on learned weights (:mod:`zoo.fidelity`), or "-"."""
    f = row.get("fidelity")
    if not f:
        return ["-", "-"]
    return [f"{f['kl']:.1e}", f"{f['top1']:.2%}"]


def format_report(report: dict[str, Any]) -> str:
    """The report as Markdown: the machine, the main table, the spread of the runs, what was not measured."""
    settings, rows = report["settings"], report["results"]
    prefill = [f"{b}x{t}" for b, t in settings["prefill"]]
    decode = [f"b{b}" for b in settings["decode"]]
    machine = report["machine"]
    bw = report["bandwidth"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    reference = f"`{rows[0]['label']}`" if rows and rows[0]["kind"] == "reference" else "the reference"
    lines = [
        f"Machine: {machine.get('gpu') or machine['cpu']}, {machine['cores']} cores"
        + (f", {machine['memory_bytes'] / 2**30:.0f} GiB" if machine.get("memory_bytes") else "")
        + f"; {report['device']}, {report['threads']} threads; {versions}.",
        f"Memory bandwidth: {bw['bytes_per_s'] / 1e9:.1f} GB/s ({bw['kernel']}, best of its runs).",
        (f"Shape: {report['config'].get('n_layer')} layers x {report['config'].get('n_embd')}, random weights; "
         f"{settings['warmup']} warm-up + {settings['runs']} runs, medians; decode: {settings['prompt_tokens']}-token"
         f" prompt, {settings['new_tokens']} new tokens, greedy, KV cache. Ratios in brackets are against "
         f"{reference} (above 1 is faster; memory: below 1 is smaller). Fidelity: mean KL(float32 || "
         f"subject) and top-1 agreement with {reference} in float32, on the learned-weights preset's "
         "held-out text (zoo.fidelity)."),
        "",
    ]
    header = (["subject"] + [f"prefill {k} tok/s" for k in prefill] + [f"decode {k} tok/s" for k in decode]
              + ["b1 floor tok/s", "TTFT b1 ms", "load s", "peak RSS MiB", "weights MiB",
                 "KL (learned)", "top-1 (learned)"])
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        if row["status"] != "ok":
            continue
        floor = row.get("decode_floor_tok_s", {}).get("b1")
        b1 = _median(row, "decode", "b1")
        floor_cell = f"{floor:,.0f} ({b1 / floor:.0%})" if floor and b1 else "-"
        own = OWN_LOOP if row.get("decode_note") else ""  # decoded by the variant's own loop: said below
        cells = ([row["label"]] + [_cell(row, "prefill", k) for k in prefill]
                 + [_cell(row, "decode", k) + own for k in decode]
                 + [floor_cell, _cell(row, "ttft_s", "b1", 1000.0, 1) + own, _plain(row, "load_s", 1.0, 2),
                    _plain(row, "peak_rss_bytes", 1 / MiB, 0), _plain(row, "weight_bytes", 1 / MiB, 1)]
                 + _fidelity_cells(row))
        lines.append("| " + " | ".join(cells) + " |")
    spread_header = ["subject (min-max of the runs)"] + [f"prefill {k}" for k in prefill] + \
        [f"decode {k}" for k in decode] + ["first call s"]
    lines += ["", "| " + " | ".join(spread_header) + " |", "|" + " --- |" * len(spread_header)]
    for row in rows:
        if row["status"] != "ok":
            continue
        first = max(row.get("first_call_s", {}).values(), default=0.0)
        cells = ([row["label"]] + [_spread(row, "prefill", k) for k in prefill]
                 + [_spread(row, "decode", k) for k in decode] + [f"{first:.1f}"])
        lines.append("| " + " | ".join(cells) + " |")
    ok = [row for row in rows if row["status"] == "ok"]
    for notes in ([f"- {row['label']}: {row['status']}: {row['reason']}" for row in rows if row["status"] != "ok"],
                  [f"- {row['label']}: decode and TTFT{OWN_LOOP}: {row['decode_note']}"
                   for row in ok if row.get("decode_note")],
                  [f"- {row['label']}: no decode figures: {row['decode_missing']}"
                   for row in ok if row.get("decode_missing")],
                  [f"- {row['label']}: no fidelity figures: {row['fidelity_missing']}"
                   for row in ok if row.get("fidelity_missing")]):
        if notes:
            lines += ["", *notes]
    return "\n".join(lines)
