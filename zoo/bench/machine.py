"""The machine a benchmark ran on, and the memory bandwidth that bounds decoding on it."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from typing import Any

__all__ = ["describe", "memory_bandwidth"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def describe(device: str) -> dict[str, Any]:
    """CPU (or GPU), core count, memory and the versions that decide the figures."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("torch", "transformers", "numpy", "gpt2-zoo")},
    }
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def memory_bandwidth(threads: int, device: str = "cpu", size_bytes: int = 1 << 30, runs: int = 7) -> dict[str, Any]:
    """Read bandwidth in bytes/s: the best run of the best of a few kernels that stream ``size_bytes`` once.

    On a CPU: a float32 sum and two matrix-vector products (torch's and
    NumPy's BLAS), as a decoder's weight reads are; on a GPU: a sum. The
    figure bounds what batch-1 decoding can reach: every weight is read once
    per step. The best, not the typical, run: the floor it makes must hold for every engine.
    """
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(size_bytes // 4, dtype=torch.float32, device=device)
    rows = x.view(-1, 4096)
    vec = torch.ones(4096, device=device)
    kernels: dict[str, Any] = {"torch sum": x.sum, "torch mv": lambda: torch.mv(rows, vec)}
    if device == "cpu":
        a, b = rows.numpy(), vec.numpy()
        kernels["numpy gemv"] = lambda: a @ b
    best_runs = {}
    for name, kernel in kernels.items():
        kernel()  # warm-up: page the buffer in
        times = []
        for _ in range(runs):
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            kernel()
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        best_runs[name] = x.numel() * 4 / min(times)  # the best run: a floor no decoder may beat
    best = max(best_runs, key=best_runs.__getitem__)
    return {"bytes_per_s": best_runs[best], "kernel": best, "by_kernel": best_runs, "threads": threads}
