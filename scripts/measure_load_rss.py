"""Time and peak resident memory of ``zoo.load`` on the GPT-2 124M shape, per variant.

Saves a randomly initialised 124M ``GPT2LMHeadModel`` with ``save_pretrained``
(safetensors) in a temporary folder, then, in a fresh Python process per
variant, records the peak RSS (``ru_maxrss``):

- ``before``: after ``import torch, zoo``;
- ``warm``: after loading a tiny random model of the same variant, so that the
  variant's own imports (transformers for ``hf``) are not counted as weights;
- ``peak``: after ``zoo.load(variant, weights=folder)``;
- ``seconds``: the wall time of that ``zoo.load`` (the fastest of ``--repeat`` processes).

The ratios ``(peak - before) / weight bytes`` and ``(peak - warm) / weight
bytes`` say how many copies of the weights loading held at its worst: 1 is the
model alone, 2 would be the model plus a full second copy.

Usage: ``python scripts/measure_load_rss.py [--repeat N] [VARIANT ...]`` (default: pure hf, 3 processes each).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

MiB = 1024 * 1024


def _peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child(variant: str, folder: str) -> None:
    """Runs in a fresh process: measure one variant and print one JSON line."""
    import torch

    import zoo

    torch.set_num_threads(1)
    before = _peak_rss()
    tiny = zoo.GPT2Config(vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    zoo.load(variant, config=tiny)  # the variant's imports, not weights
    warm = _peak_rss()
    start = time.perf_counter()
    model = zoo.load(variant, weights=folder)
    seconds = time.perf_counter() - start
    peak = _peak_rss()
    print(json.dumps({"variant": variant, "before": before, "warm": warm, "peak": peak, "seconds": seconds,
                      "params": sum(t.numel() for t in model.export_weights().values())}))


def save_model(folder: str) -> int:
    """Save a random 124M ``GPT2LMHeadModel``; returns its float32 weight bytes (tied counted once)."""
    import torch
    from transformers import GPT2LMHeadModel

    import zoo

    torch.manual_seed(0)
    model = GPT2LMHeadModel(zoo.GPT2Config().to_hf())
    model.save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["pure", "hf"])
    parser.add_argument("--repeat", type=int, default=3, help="processes per variant; the fastest load is shown")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--save", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.save:
        print(save_model(args.save))
        return
    with tempfile.TemporaryDirectory() as folder:
        # every step in a process of its own, so that no step's memory counts towards another's
        out = subprocess.run([sys.executable, __file__, "--save", folder],
                             check=True, capture_output=True, text=True)
        weight_bytes = int(out.stdout.split()[-1])
        print(f"GPT-2 124M, safetensors folder; weights: {weight_bytes / MiB:.1f} MiB (float32, tied once)")
        print(f"{'variant':8} {'load s':>7} {'before':>10} {'warm':>10} {'peak':>10} {'(peak-before)/w':>16} "
              f"{'(peak-warm)/w':>14}")
        for variant in args.variants:
            runs = []
            for _ in range(max(1, args.repeat)):
                run = subprocess.run([sys.executable, __file__, "--child", variant, folder],
                                     check=True, capture_output=True, text=True)
                runs.append(json.loads(run.stdout.strip().splitlines()[-1]))
            r = min(runs, key=lambda r: r["seconds"])
            print(f"{variant:8} {r['seconds']:7.2f} {r['before'] / MiB:8.1f}Mi {r['warm'] / MiB:8.1f}Mi "
                  f"{r['peak'] / MiB:8.1f}Mi {(r['peak'] - r['before']) / weight_bytes:16.2f} "
                  f"{(r['peak'] - r['warm']) / weight_bytes:14.2f}")


if __name__ == "__main__":
    main()
