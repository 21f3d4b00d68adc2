"""The property framework: what a property is, what it is given, and the helpers the properties share.

A :class:`Property` turns a :class:`Context` (the variant, the device, where to
record statistics, how to reproduce) into a ``@given``-decorated function
that takes no arguments: call it and it runs the profile's examples, raising
the shrunk counterexample's :class:`~conformance.assertions.ConformanceFailure`
if the variant breaks the property.

:func:`check_interface` runs before any property: cheap existence checks
whose failure makes every property a skip, so a missing method is one clear
failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from hypothesis import Phase, note, seed, settings

import zoo

from .. import pinned
from .. import strategies as s
from ..assertions import Judge, Stats
from ..models import canonical_weights, reference_logits, variant_model

if TYPE_CHECKING:
    import torch
    from hypothesis.database import ExampleDatabase

__all__ = [
    "Built",
    "Context",
    "Property",
    "References",
    "check_interface",
    "id_tensor",
    "left_pad",
    "logits_of",
    "needs",
    "references",
]


@dataclass
class Context:
    """What a property needs to know about the run it is part of."""

    variant: zoo.Variant
    device: str = "cpu"
    reproducer: Callable[[str], str] = lambda prop: f"zoo check --property {prop}"
    stats: Stats = field(default_factory=Stats)

    @property
    def dtype_name(self) -> str:
        return self.variant.capabilities.dtypes[0]

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def caps(self) -> zoo.Capabilities:
        return self.variant.capabilities

    pinned_notes: list[str] | None = None  # collects notes while a pinned case runs outside hypothesis

    def note(self, text: str) -> None:
        """Context for the failing example: hypothesis' ``note``, or kept for a pinned case."""
        if self.pinned_notes is not None:
            self.pinned_notes.append(text)
        else:
            note(text)

    def judge(self, prop: str) -> Judge:
        return Judge(self.variant, prop, self.reproducer(prop), self.stats)

    def configs(self, min_positions: int = 1) -> Any:
        return s.configs(declared=self.caps.test_configs, min_positions=min_positions)

    def model(self, config: zoo.GPT2Config, init: s.WeightInit, dtype: torch.dtype | None = None,
              purpose: str = "shared") -> zoo.GPT2:
        return variant_model(self.variant, config, init, self.device, dtype or self.dtype, purpose)


#: a property's ``@given`` test, and the cases it must also pass after hypothesis' examples
Built = tuple[Callable[..., None], list[Any]]


@dataclass(frozen=True)
class Property:
    """One property: its name, what it checks, when it applies, and how to build its test."""

    name: str
    summary: str
    build: Callable[[Context], Built]
    requires: Callable[[zoo.Capabilities], str | None] = lambda caps: None  # a reason to skip, or None

    def test(self, ctx: Context, profile: settings, seed_value: int | None = None, *,
             database: ExampleDatabase | None = None, replay: bool = False) -> Callable[[], None]:
        """The property's test for ``ctx``, under ``profile`` (and ``seed_value``).

        The hypothesis test runs first, so a failure shrinks to a small
        counterexample; the pinned cases (the 124M shape) run after it.
        ``database``: where failing examples are saved and replayed from
        (the profile's own, none, otherwise). ``replay``: run only the
        examples stored in ``database`` (hypothesis' reuse phase), not the
        explicit, generated or pinned ones; hypothesis raises ``SkipTest``
        when it holds none.
        """
        given_test, pinned = self.build(ctx)
        inner = given_test.hypothesis.inner_test  # type: ignore[attr-defined]
        test = given_test
        if seed_value is not None and not profile.derandomize:
            test = seed(seed_value)(test)
        # after seed(), which would set database=None; a derandomised profile still replays and saves
        overrides: dict[str, Any] = {} if database is None else {"database": database}
        if replay:
            overrides["phases"] = (Phase.reuse,)
            pinned = []
        test = settings(profile, **overrides)(test)

        def run() -> None:
            test()
            for case in pinned:
                ctx.pinned_notes = []
                try:
                    inner(case=case)
                except BaseException as exc:
                    _add_note(exc, f"Failing pinned example: {self.name}(\n    case={case!r},\n)")
                    for text in ctx.pinned_notes:
                        _add_note(exc, text)
                    raise
                finally:
                    ctx.pinned_notes = None
            if not replay:  # a distribution-level measure: over the whole run, not a few replayed examples
                ctx.judge(self.name).assert_top1()

        return run


# -- small helpers ------------------------------------------------------------------------
def _add_note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)``, also on Python 3.10, which keeps no notes of its own."""
    if sys.version_info >= (3, 11):
        exc.add_note(text)
    else:  # the attribute 3.11 keeps them in, which the runner and the pytest plugin read (typed from 3.11)
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]


def id_tensor(ids: s.Ids, device: str = "cpu") -> torch.Tensor:
    """A drawn case's ids (nested tuples) as a ``long`` tensor."""
    import torch

    return torch.tensor(ids, dtype=torch.long, device=device)


def logits_of(model: zoo.GPT2, ids: torch.Tensor, mask: torch.Tensor | None = None,
              input_pos: torch.Tensor | None = None) -> torch.Tensor:
    """The variant's logits as float64 on the CPU, cut to the vocabulary (wider ones are padding)."""
    import torch

    device = model.device
    with torch.no_grad():
        out = model(ids.to(device), attention_mask=None if mask is None else mask.to(device),
                    input_pos=None if input_pos is None else input_pos.to(device))
    return out[..., : model.config.vocab_size].double().cpu()


class References(TypedDict):
    """The ``hf64``/``hf_dtype`` keywords of :meth:`Judge.assert_close`."""

    hf64: torch.Tensor
    hf_dtype: torch.Tensor


def references(config: zoo.GPT2Config, init: s.WeightInit, dtype: torch.dtype, ids: torch.Tensor,
               mask: torch.Tensor | None = None, *, exact: bool = True) -> References:
    """Hugging Face's logits in float64 and in ``dtype``: the ``hf64``/``hf_dtype`` of a judgement.

    ``exact=False``: for an approximate variant, judged on float64 alone (``hf_dtype`` is ``hf64``).
    """
    import torch

    hf64 = reference_logits(config, init, torch.float64, ids, mask)
    hf_dtype = hf64 if dtype == torch.float64 or not exact else reference_logits(config, init, dtype, ids, mask)
    return {"hf64": hf64, "hf_dtype": hf_dtype}


def left_pad(case: s.PaddedCase | s.IncrementalCase, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``case.ids`` with each row's first ``T - real`` ids replaced by ``pad``, and the mask."""
    import torch

    ids = id_tensor(case.ids)
    T = ids.size(1)
    assert case.real is not None
    mask = torch.zeros_like(ids)
    for b, n in enumerate(case.real):
        ids[b, : T - n] = pad
        mask[b, T - n :] = 1
    return ids, mask


def needs(flag: str, what: str) -> Callable[[zoo.Capabilities], str | None]:
    """A :attr:`Property.requires` that skips unless the variant declares capability ``flag``."""
    return lambda caps: None if getattr(caps, flag) else f"the variant does not declare {what}"


# -- the interface, checked before any property --------------------------------------------
INTERFACE_CONFIG = zoo.GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)
KNOWN_DEVICES = ("cpu", "cuda", "mps", "xpu")


def check_interface(variant: zoo.Variant, device: str = "cpu") -> list[str]:
    """Problems with what ``variant`` declares and with the methods it has; empty when all is well."""
    import torch

    caps, tol = variant.capabilities, variant.tolerances
    problems: list[str] = []
    if not callable(variant.build):
        return [f"build={variant.build!r} is not callable"]
    if not caps.dtypes:
        problems.append("capabilities.dtypes is empty; declare at least one, e.g. ('float32',)")
    for name in caps.dtypes:
        if not isinstance(getattr(torch, name, None), torch.dtype):
            problems.append(f"declared dtype {name!r} is not a torch dtype name (e.g. 'float32')")
    for name in caps.devices:
        if name not in KNOWN_DEVICES:
            problems.append(f"declared device {name!r} is not a device type ({', '.join(KNOWN_DEVICES)})")
    if caps.exact:
        missing = [d for d in caps.dtypes if d not in tol.abs_floor]
        if missing:
            problems.append(f"tolerances.abs_floor has no entry for declared dtype(s) {', '.join(missing)}")
        if not tol.error_factor > 0:
            problems.append(f"tolerances.error_factor={tol.error_factor} must be positive")
    elif tol.max_kl is None and tol.min_top1 is None and tol.max_rel_logit_error is None:
        problems.append("an approximate variant (exact=False) must declare max_kl, min_top1 or "
                        "max_rel_logit_error in its Tolerances")
    if problems:
        return problems
    config = caps.test_configs[0] if caps.test_configs else INTERFACE_CONFIG
    for name in caps.dtypes:
        dtype = getattr(torch, name)
        try:
            model = variant.build(config, device=torch.device(device), dtype=dtype)
        except Exception as exc:  # noqa: BLE001  # a variant that cannot build is reported, not raised
            problems.append(f"build({config}, device={device!r}, dtype={name}) raised {type(exc).__name__}: {exc}")
            continue
        if not isinstance(model, zoo.GPT2):
            problems.append(f"build() returned a {type(model).__name__}, not a zoo.GPT2")
            continue
        for method in ("forward", "import_weights", "export_weights"):
            if not callable(getattr(model, method, None)):
                problems.append(f"the model has no {method}()")
        if caps.kv_cache and not zoo.implements(model, "setup_caches"):
            problems.append("kv_cache=True is declared but setup_caches() is not implemented")
        try:
            if model.dtype != dtype:
                problems.append(f"build(dtype={name}) gave a model whose .dtype is {model.dtype}")
            if model.device.type != torch.device(device).type:
                problems.append(f"build(device={device!r}) gave a model on {model.device}")
            model.import_weights(canonical_weights(config, s.PINNED_INIT))
            out = model(id_tensor(pinned.edge_ids(config, 3), device))
            if tuple(out.shape[:2]) != (1, 3) or out.shape[2] < config.vocab_size:
                problems.append(f"forward([1, 3] ids) returned shape {list(out.shape)}, expected "
                                f"[1, 3, {config.vocab_size}]")
            elif not bool(torch.isfinite(out[..., : config.vocab_size]).all()):
                problems.append("forward() returned non-finite logits on a valid input")
        except Exception as exc:  # noqa: BLE001  # a model that crashes when used is reported, not raised
            problems.append(f"{name}: using the built model raised {type(exc).__name__}: {exc}")
    return problems
