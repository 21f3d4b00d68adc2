"""What a variant that computes on the CPU outside torch shares: NumPy, or an engine such as ONNX Runtime.

Such a model keeps its weights as float32 NumPy arrays (or hands them to an
engine), takes and returns torch tensors on the CPU, and builds the same way
every time: refuse any device but the CPU and any dtype it does not compute
in, then import the weights given, or GPT-2's random initialisation drawn from
torch's global RNG. :class:`HostGPT2` holds that; ``plugins/cpu``,
``plugins/onnxruntime``, ``plugins/ctranslate2`` and ``plugins/llama_cpp`` use it.

>>> import zoo.host
>>> zoo.host.placement("the cpu variant", "cpu", None)
'float32'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._config import GPT2Config
from ._errors import CapabilityError
from ._interface import GPT2
from ._random import random_weights
from .weight_map import checked

if TYPE_CHECKING:
    import torch

__all__ = ["HostGPT2", "float32_copies", "initial_weights", "placement"]


def placement(what: str, device: Any, dtype: Any, dtypes: tuple[str, ...] = ("float32",)) -> str:
    """The dtype name ``what`` (a variant, "the cpu variant") runs in: ``dtype``, or the first of ``dtypes``.

    :raises CapabilityError: for a device that is not the CPU, or a dtype not among ``dtypes``.
    """
    import torch

    if torch.device(device).type != "cpu":
        raise CapabilityError(f"{what} runs on the CPU only, not on {str(device)!r}; pass device='cpu'")
    name = dtypes[0] if dtype is None else str(dtype).removeprefix("torch.")
    if name not in dtypes:
        raise CapabilityError(f"{what} computes in {' or '.join(dtypes)} only, not {name}")
    return name


def initial_weights(config: GPT2Config, weights: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``weights``, or GPT-2's random initialisation at ``config`` seeded from torch's global RNG.

    Variants built after the same ``torch.manual_seed`` hold the same random weights.
    """
    if weights is not None:
        return weights
    import torch

    return random_weights(config, seed=int(torch.randint(2**31, ())))


def float32_copies(weights: Mapping[str, Any], config: GPT2Config) -> dict[str, np.ndarray]:
    """The model's own float32 NumPy copy of canonical ``weights`` (tensors or arrays), checked against ``config``.

    Read one tensor at a time, so that a lazy state dict is never held whole twice.
    """
    own = {}
    for name, value in checked(weights, config).items():
        if not isinstance(value, np.ndarray):
            import torch

            value = torch.as_tensor(value).detach().to("cpu", torch.float32).numpy()
        own[name] = np.array(value, dtype=np.float32, copy=True)
    return own


class HostGPT2(GPT2):
    """A :class:`zoo.GPT2` that computes on the CPU outside torch: ``device`` is the CPU, ``dtype`` float32.

    A subclass that computes in another dtype (llama.cpp's BF16) overrides :attr:`dtype`.
    """

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return torch.float32
