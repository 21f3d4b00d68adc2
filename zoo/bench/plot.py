"""``zoo bench --plot FILE``: the decode speed of every subject against its floor, and speed against fidelity.

Left: batch-1 decode tokens/s of each measured subject (bars) and the floor
its weight bytes and the measured memory bandwidth allow (ticks). Right: the
trade-off a user chooses on: batch-1 decode tokens/s against the mean
KL(float32 || subject) on learned weights (log scale; exact float32 subjects,
whose KL is rounding, are drawn at the axis' left edge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]

KL_EDGE = 1e-9  # where a KL below it is drawn


def _matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from zoo import ZooError

        raise ZooError("--plot needs matplotlib: pip install 'gpt2-zoo[plot]'") from None
    return plt


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Draw ``report`` (as :func:`zoo.bench.run_bench` returns it, with ratios) into ``path``."""
    plt = _matplotlib()
    rows = [r for r in report["results"] if r["status"] == "ok" and r.get("decode", {}).get("b1")]
    labels = [r["label"] for r in rows]
    speed = [r["decode"]["b1"]["median"] for r in rows]
    floor = [r.get("decode_floor_tok_s", {}).get("b1") for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.5 + 0.42 * max(4, len(rows))),
                                      gridspec_kw={"width_ratios": [3, 2]})
    y = range(len(rows))
    left.barh(y, speed, color="#4575b4", label="decode b1 tok/s (median)")
    left.scatter([f if f else 0 for f in floor], y, marker="|", s=300, color="#d73027",
                 label="floor: bandwidth / weight bytes per token")
    for i, (s, f) in enumerate(zip(speed, floor, strict=True)):
        left.text(s, i, f" {s:,.0f}" + (f" ({s / f:.0%})" if f else ""), va="center", fontsize=7)
    left.set_yticks(list(y), labels, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("tokens/s, batch 1")
    left.legend(fontsize=7, loc="lower right")
    bw = report.get("bandwidth", {}).get("bytes_per_s")
    left.set_title(f"decode against the floor ({bw / 1e9:.1f} GB/s)" if bw else "decode", fontsize=9)

    judged = [(r["label"], max(r["fidelity"]["kl"], KL_EDGE), r["decode"]["b1"]["median"])
              for r in rows if r.get("fidelity")]
    for label, kl, tok_s in judged:
        right.scatter(kl, tok_s, s=25)
        right.annotate(label, (kl, tok_s), fontsize=6, xytext=(3, 3), textcoords="offset points")
    right.set_xscale("log")
    right.set_xlabel("mean KL(float32 || subject), learned weights (left edge: exact)")
    right.set_ylabel("decode tokens/s, batch 1")
    right.set_title("speed against fidelity", fontsize=9)
    fig.suptitle(f"zoo bench, {report.get('device', 'cpu')}, {report.get('threads')} threads", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
