"""``cpu``: GPT-2 in NumPy, float32, on the CPU, with a static KV cache.

Trade-off: one device and one dtype, no training, in exchange for a decoder
whose hot path is a single OpenBLAS call per projection. Batch-1 decoding is
bound by how fast the weights stream from memory, and OpenBLAS's ``sgemv``
streams them faster than torch's CPU matrix-vector product, so this variant
can decode faster than torch eager with no compiler. It is also a second,
independent implementation of GPT-2 (no torch operator is involved), which
makes the conformance harness stronger: a bug shared with ``pure`` would have
to be made twice.

"Torch-free" here means the arithmetic and the weights: every weight is a
C-contiguous float32 NumPy array and every operation is NumPy. Torch is needed
only at the zoo's interface, where ``forward`` takes and returns torch tensors,
``export_weights`` returns them and ``zoo.check_inputs`` validates inputs; it is
imported inside those methods. ``plugins.cpu.model.GPT`` itself imports
without torch, takes NumPy weights in ``import_weights`` (for example from
``safetensors.numpy.load_file``), and runs through ``forward_numpy``.

Threads: torch's thread pool and OpenBLAS's are separate, and on a small
machine two pools each sized to every core fight. So the variant sizes
OpenBLAS to ``torch.get_num_threads()`` for the duration of each ``forward``
(through ``threadpoolctl``, which restores the previous count afterwards), and
``model.threads = n`` overrides that. Without ``threadpoolctl`` it says so in
a warning, and OpenBLAS keeps ``OPENBLAS_NUM_THREADS`` (set it before Python
starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zoo


def build(config: zoo.GPT2Config, *, device: Any = "cpu", dtype: Any = None,
          weights: Mapping[str, Any] | None = None) -> zoo.GPT2:
    from .model import GPT  # NumPy: imported when a model is built, not when variants are listed

    return GPT.build(config, device=device, dtype=dtype, weights=weights)


@zoo.hookimpl
def zoo_variants() -> list[zoo.Variant]:
    return [
        zoo.Variant(
            name="cpu",
            build=build,
            summary="GPT-2 in NumPy float32 on the CPU (OpenBLAS, static KV cache, no torch arithmetic)",
            capabilities=zoo.Capabilities(devices=("cpu",), dtypes=("float32",)),
            notes="BLAS threads follow torch.get_num_threads() (set model.threads to override); "
            "needs threadpoolctl for that, otherwise OPENBLAS_NUM_THREADS applies.",
        )
    ]
