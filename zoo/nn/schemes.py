"""The quantisation schemes: one row each, read by :func:`zoo.nn.quantise_` and by the variants that use them.

A scheme says how a :class:`zoo.nn.GPT` becomes a quantised one: which module
replaces each Linear of the blocks (its kernel, imported only when a model is
quantised, so that listing variants imports no torch), how the tied
``lm_head``/``wte`` pair is stored, what everything else is computed in, where
it runs, and how close to GPT-2 its logits must stay (the conformance
harness's bounds). Adding a scheme is one row here plus its kernel: a module
with the contract that :mod:`zoo.nn.kernels` describes. A scheme of your own
need not be in this table: pass the :class:`Scheme` itself to
``zoo.nn.quantise_`` or ``zoo.nn.declare``.

This module imports no torch.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any

from .._errors import CapabilityError
from .._interface import Fidelity, Tolerances, older_than

__all__ = ["EMBEDDINGS", "SCHEMES", "Scheme", "get_scheme", "load_object"]


def load_object(spec: str) -> Any:
    """The object ``"package.module:Name"`` names, its module imported now (entry-point syntax)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"{spec!r} does not name an object: write it as 'package.module:Name'")
    return getattr(importlib.import_module(module), name)

#: How a scheme stores the tied ``wte``/``lm_head`` pair.
EMBEDDINGS = {
    "int8": "stored once as int8 with one scale per vocabulary row; the lookup dequantises the gathered "
            "rows and the logits multiply by the same int8 tensor (a row scale of wte is an "
            "output-channel scale of lm_head)",
    "dense": "kept tied in the activation dtype, as the float model has it",
}


@dataclass(frozen=True)
class Scheme:
    """One way of quantising GPT-2: a row of :data:`SCHEMES`."""

    name: str
    linear: str  # "module:Class" of the quantised Linear that replaces each Linear of the blocks
    embedding: str  # a key of EMBEDDINGS: how the tied head and embedding are stored
    precision: str  # the weights' precision family ("int8", "int4"): zoo bench compares like with like
    summary: str
    activations: str = "bfloat16"  # the dtype of everything not quantised, and of the activations
    devices: tuple[str, ...] = ("cpu",)  # device types its kernels run on
    tolerances: Tolerances = field(default_factory=Tolerances)  # how close to GPT-2 its logits stay
    torch: str = ""  # the oldest torch that has its kernels, where that is newer than the zoo's floor

    def __post_init__(self) -> None:
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"scheme {self.name!r}: embedding={self.embedding!r} is not one of "
                             f"{', '.join(EMBEDDINGS)}")
        if ":" not in self.linear:
            raise ValueError(f"scheme {self.name!r}: linear={self.linear!r} must name a class as "
                             "'package.module:Class'")

    def linear_class(self) -> Any:
        """The quantised Linear's class, imported now."""
        return load_object(self.linear)

    def unavailable(self) -> str | None:
        """``None`` when this torch has the scheme's kernels; otherwise the torch they need (no torch import)."""
        if not self.torch:
            return None
        return older_than("torch", self.torch, needs=f"the {self.name} scheme ({self.linear})")

    def check(self, device_type: str, dtype_name: str | None = None) -> None:
        """Raise :class:`zoo.CapabilityError` unless the scheme runs here, on this device type (in this dtype)."""
        missing = self.unavailable()
        if missing:
            raise CapabilityError(missing)
        if dtype_name is not None and dtype_name != self.activations:
            raise CapabilityError(f"the {self.name} scheme computes in {self.activations} only, not {dtype_name}; "
                                  f"pass dtype=torch.{self.activations}")
        if device_type not in self.devices:
            where = " and ".join("the CPU" if d == "cpu" else d for d in self.devices)
            only = "CPU only" if self.devices == ("cpu",) else f"{', '.join(self.devices)} only"
            raise CapabilityError(f"the {self.name} scheme runs on {where} ({only}: its kernels are made for it), "
                                  f"not on {device_type}; pass device={self.devices[0]!r}")


# Bounds measured on the conformance harness's examples (weights up to 30x GPT-2's init scale),
# worst values seen over the ci profile and a 300-example thorough run, with a margin of about 2x.
# int8: mean KL 0.073, relative logit error 0.078. A doubled scale, a dropped bias or a transposed
# weight gives KL >= 0.43 and relative error >= 0.56.
# int4: mean KL 0.84; the relative logit error reached 1.08 on a 2-token vocabulary whose logits are
# nearly zero, so its bound only guards against garbage. The KL bound catches a dropped bias
# (KL >= 2.0) or a transposed weight (KL >= 5), not a scale off by 2x in one layer (KL 1.0 to 1.5):
# random weights at large scales leave int4 too little room for that. Top-1 agreement is declared
# for neither: random weights give nearly flat logits whose argmax flips between near-ties.
# The int4 CPU kernels (_weight_int4pack_mm_for_cpu, _convert_weight_to_int4pack_for_cpu) are in torch
# from 2.6; the int8 one is in every torch the zoo supports.
# fmt: off
SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("int8", "zoo.nn.kernels:Int8Linear", embedding="int8", precision="int8",
           summary="weight-only int8, one scale per output channel (_weight_int8pack_mm)",
           tolerances=Tolerances(max_kl=0.15, max_rel_logit_error=0.2, fidelity={
               "learned": Fidelity(max_kl=1e-3, max_ppl_ratio=1.005, min_top1=0.97),
               "outliers": Fidelity(max_kl=0.02, max_ppl_ratio=1.02, min_top1=0.95)})),
    Scheme("int4", "zoo.nn.kernels:Int4Linear", embedding="int8", precision="int4",
           summary="weight-only int4, a scale and a zero per 32 weights along the input "
                   "(_weight_int4pack_mm_for_cpu); the tied embedding int8", torch="2.6",
           tolerances=Tolerances(max_kl=1.5, max_rel_logit_error=2.0, fidelity={
               "learned": Fidelity(max_kl=2e-3, max_ppl_ratio=1.01, min_top1=0.95),
               # int4 groups of 32 cannot hold the planted outliers' 500x smaller weights: measured
               # ppl 4.8x (KL 1.6) on Python 3.11's preset, 14.1x (KL 2.9) on 3.13's (its text differs)
               "outliers": Fidelity(max_kl=4.0, max_ppl_ratio=20.0)})),
)}
# fmt: on


def get_scheme(scheme: Scheme | str) -> Scheme:
    """A :class:`Scheme` itself, or the row of :data:`SCHEMES` named ``scheme``."""
    if isinstance(scheme, Scheme):
        return scheme
    if scheme in SCHEMES:
        return SCHEMES[scheme]
    close = difflib.get_close_matches(str(scheme), SCHEMES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise CapabilityError(f"no quantisation scheme named {scheme!r}; {hint}the zoo's schemes are "
                          f"{', '.join(SCHEMES)} (or pass a zoo.nn.Scheme of your own)")
