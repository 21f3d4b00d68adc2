"""The conformance scoreboard: ``zoo check --json`` results as a Markdown table, and as a heat map.

    zoo check --json check.json                         # every registered variant
    python -m conformance.scoreboard check.json         # the Markdown table (the README's scoreboard)
    python -m conformance.scoreboard check.json --plot scoreboard.png

Rows are the variants checked at each precision they were measured at
(``NAME@PRECISION``; ``NAME`` alone when there is one), columns the
properties in the order they run: ``pass``, ``FAIL`` or ``n/a`` with a
numbered note giving the reason (a failure's first line, or why it was
skipped), then the fidelity figures on the learned and outliers presets at
that precision: KL(float32 || variant), top-1 agreement and perplexity ratio.
A property covers every precision of its variant, so its cell is the same in
each of the variant's rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "plot", "render"]

STATUS = {"pass": "pass", "fail": "FAIL", "skip": "n/a"}


def _by_variant(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    table: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in results:
        table.setdefault(r["variant"], {})[r["prop"]] = r
    return table


def _properties(results: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r["prop"] not in seen:
            seen.append(r["prop"])
    return seen


def _precisions(row: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The dtypes the fidelity figures were measured at, in the order they were (``[""]``: none)."""
    seen: list[str] = []
    for key in row.get("fidelity", {}).get("figures") or {}:
        dtype = key.partition("@")[2]
        if dtype not in seen:
            seen.append(dtype)
    return seen or [""]


def _fidelity(row: Mapping[str, Mapping[str, Any]], preset: str, dtype: str) -> str:
    f = (row.get("fidelity", {}).get("figures") or {}).get(f"{preset}@{dtype}")
    if not f:
        return "-"
    return f"KL {f['kl']:.1e}, top-1 {100 * f['top1']:.1f}%, ppl {f['ppl_ratio']:.3f}x"


def render(payload: Mapping[str, Any]) -> str:
    """The scoreboard of one ``zoo check --json`` payload, as Markdown (with its notes below)."""
    results = payload["results"]
    props = _properties(results)
    notes: dict[str, int] = {}

    def cell(r: Mapping[str, Any] | None) -> str:
        if r is None:
            return "-"
        text = STATUS.get(r["status"], r["status"])
        if r["status"] == "pass":
            return text
        lines = [line.strip() for line in (r.get("message") or "").splitlines() if line.strip()]
        reason = lines[0] if lines else ""
        if len(lines) > 1 and lines[1].startswith("("):  # a failure's measure: "(relative logit error 0.04 > ...)"
            reason += " " + lines[1]
        if not reason:
            return text
        return f"{text} [{notes.setdefault(reason, len(notes) + 1)}]"

    header = ["variant", *props, "fidelity: learned", "fidelity: outliers"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for variant, row in _by_variant(results).items():
        dtypes = _precisions(row)
        for dtype in dtypes:
            label = f"{variant}@{dtype}" if len(dtypes) > 1 and "@" not in variant else variant
            cells = [f"`{label}`", *(cell(row.get(p)) for p in props),
                     _fidelity(row, "learned", dtype), _fidelity(row, "outliers", dtype)]
            lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines += [f"{n}. {reason}" for reason, n in notes.items()]
    versions = ", ".join(f"{k} {v}" for k, v in payload.get("versions", {}).items())
    lines += ["", f"Profile {payload.get('profile')}, device {payload.get('device')}"
              + (f", {versions}" if versions else "") + f"; {payload.get('seconds', 0):.0f} s."]
    return "\n".join(lines)


def plot(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Draw the scoreboard as a heat map (green pass, red fail, grey n/a) into ``path`` (PNG, SVG...)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
    except ImportError:
        raise SystemExit("zoo check: --plot needs matplotlib: pip install 'gpt2-zoo[plot]'") from None
    results = payload["results"]
    props = _properties(results)
    table = _by_variant(results)
    code = {"pass": 2, "fail": 0, "skip": 1}
    grid = [[code.get(row[p]["status"], 1) if p in row else 1 for p in props] for row in table.values()]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(props), 1.0 + 0.4 * len(table)))
    ax.imshow(grid, cmap=ListedColormap(["#d73027", "#d9d9d9", "#1a9850"]), vmin=0, vmax=2, aspect="auto")
    ax.set_xticks(range(len(props)), props, rotation=45, ha="right")
    ax.set_yticks(range(len(table)), list(table))
    for y, row in enumerate(grid):
        for x, value in enumerate(row):
            ax.text(x, y, {2: "pass", 1: "n/a", 0: "FAIL"}[value], ha="center", va="center", fontsize=7,
                    color="white" if value != 1 else "black")
    ax.set_title(f"zoo check --profile {payload.get('profile')}: pass / FAIL / n/a", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.scoreboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="a file written by zoo check --json")
    parser.add_argument("--plot", metavar="FILE", help="also draw the heat map into FILE (needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        payload = json.loads(Path(args.json).read_text(encoding="utf-8"))
        results = payload["results"]
        if not isinstance(results, list):
            raise TypeError("'results' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"scoreboard: {args.json} is not a zoo check --json file ({exc}); write one with "
              "zoo check --json FILE", file=sys.stderr)
        return 1
    print(render(payload))
    if args.plot:
        print(f"scoreboard: drew {plot(payload, args.plot)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
