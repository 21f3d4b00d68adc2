"""Assertion helpers: one judgement rule, one message format, a reproducer on every failure.

Every failure reads::

    pure fails logits: logit at batch 0, position 3, token 17: x=1.2345, but should be 1.2301
      (max abs error 4.4e-03 > bound 2.1e-05 = 4 x HF float32 error 1.3e-06 + floor 1e-05)
      reproduce: zoo check pure --property logits --profile ci

**Exact** variants are held to ``max|actual - expected| <= error_factor *
max|hf_dtype - hf_float64| + abs_floor[dtype]``, where the Hugging Face error is
measured on the same example, so the bound follows the arithmetic. **Approximate**
variants are held to their declared distribution-level bounds (KL divergence of
next-token distributions, top-1 agreement, relative logit error). The numbers
come from the variant's :class:`zoo.Tolerances`, never from a test body.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import zoo

if TYPE_CHECKING:
    import torch

__all__ = [
    "ConformanceFailure",
    "Judge",
    "Stats",
    "Verdict",
    "fail",
]


class ConformanceFailure(AssertionError):
    """A variant broke a property; ``str()`` is the full message with its reproducer."""

    def __init__(self, message: str, *, variant: str, prop: str, verdict: Verdict | None = None) -> None:
        super().__init__(message)
        self.variant = variant
        self.prop = prop
        self.verdict = verdict


@dataclass
class Verdict:
    """The outcome of one comparison; ``ratio`` > 1 means it failed."""

    measure: str  # "max abs error", "KL", "top-1 agreement", ...
    value: float
    bound: float
    ratio: float
    where: str = ""  # "batch 0, position 3, token 17"
    actual: float | None = None
    expected: float | None = None
    detail: str = ""  # how the bound was made

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0


@dataclass
class Stats:
    """What one property run saw: examples run and the worst verdict (largest error / bound)."""

    examples: int = 0
    worst: Verdict | None = None
    notes: list[str] = field(default_factory=list)
    top1_agree: int = 0  # positions whose argmax agreed, over every example of the run
    top1_total: int = 0
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # measured figures, e.g. fidelity

    def record(self, verdict: Verdict) -> None:
        if self.worst is None or (verdict.ratio, verdict.value) > (self.worst.ratio, self.worst.value):
            self.worst = verdict


def _fmt(x: float | None) -> str:
    return "nan" if x is None else f"{x:.6g}"


def fail(variant: str, prop: str, what: str, reproducer: str, *, verdict: Verdict | None = None,
         actual: object = None, expected: object = None) -> NoReturn:
    """Raise :class:`ConformanceFailure` in the shared format.

    Either a :class:`Verdict` (numbers) or ``actual``/``expected`` objects
    (tokens, keys, exception types) describe what went wrong.
    """
    __tracebackhide__ = True
    if verdict is not None:
        where = f" at {verdict.where}" if verdict.where else ""
        line = f"{variant} fails {prop}: {what}{where}"
        if verdict.actual is not None or verdict.expected is not None:
            line += f": x={_fmt(verdict.actual)}, but should be {_fmt(verdict.expected)}"
        line += f"\n  ({verdict.measure} {verdict.value:.3g} "
        line += f"{'<' if verdict.measure == 'top-1 agreement' else '>'} bound {verdict.bound:.3g}"
        line += f"{' = ' + verdict.detail if verdict.detail else ''})"
    else:
        line = f"{variant} fails {prop}: {what}"
        if actual is not None or expected is not None:
            line += f": x={actual!r}, but should be {expected!r}"
    raise ConformanceFailure(f"{line}\n  reproduce: {reproducer}", variant=variant, prop=prop, verdict=verdict)


def _position(index: tuple[int, ...], names: tuple[str, ...]) -> str:
    # an unnamed axis is not shown; a 1-d tensor (a bias) has fewer axes than the names given for its matrix
    return ", ".join(f"{n} {i}" for n, i in zip(names, index, strict=False) if n)


LOGIT_AXES = ("batch", "position", "token")


@dataclass
class Judge:
    """Compares a variant's tensors with their expected values under its declared tolerances."""

    variant: zoo.Variant
    prop: str
    reproducer: str
    stats: Stats

    @property
    def exact(self) -> bool:
        return self.variant.capabilities.exact

    def _fail(self, what: str, verdict: Verdict) -> NoReturn:
        __tracebackhide__ = True
        fail(self.variant.name, self.prop, what, self.reproducer, verdict=verdict)

    def fail(self, what: str, actual: object = None, expected: object = None) -> NoReturn:
        __tracebackhide__ = True
        fail(self.variant.name, self.prop, what, self.reproducer, actual=actual, expected=expected)

    # -- exact ------------------------------------------------------------------------
    def exact_verdict(self, actual: torch.Tensor, expected: torch.Tensor, hf_dtype: torch.Tensor,
                      hf64: torch.Tensor, dtype: str, axes: tuple[str, ...] = LOGIT_AXES,
                      where: torch.Tensor | None = None) -> Verdict:
        """``max|actual - expected|`` against ``error_factor * max|hf_dtype - hf64| + abs_floor[dtype]``."""
        import torch

        tol = self.variant.tolerances
        diff = (actual.double() - expected.double()).abs()
        ref_err = (hf_dtype.double() - hf64.double()).abs()
        if where is not None:  # [B, T] positions to compare; the rest are unspecified (padding)
            keep = where.to(diff.device).bool().reshape(where.shape + (1,) * (diff.dim() - where.dim()))
            diff = diff.masked_fill(~keep, 0.0)
            ref_err = ref_err.masked_fill(~keep.to(ref_err.device), 0.0)
        diff = torch.nan_to_num(diff, nan=math.inf)  # a NaN is the worst possible error
        floor = float(tol.abs_floor.get(dtype, 0.0))
        hf_err = float(ref_err.max()) if ref_err.numel() else 0.0
        bound = tol.error_factor * hf_err + floor
        err = float(diff.max()) if diff.numel() else 0.0
        flat = int(diff.reshape(-1).argmax()) if diff.numel() else 0
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.numel() else ()
        ratio = err / bound if bound > 0 else (0.0 if err == 0 else math.inf)
        return Verdict(
            measure="max abs error",
            value=err,
            bound=bound,
            ratio=ratio,
            where=_position(index, axes),
            actual=float(actual[index]) if index else None,
            expected=float(expected[index]) if index else None,
            detail=f"{tol.error_factor:g} x HF {dtype} error {hf_err:.3g} + floor {floor:g}",
        )

    # -- approximate ------------------------------------------------------------------
    def approximate_verdicts(self, actual: torch.Tensor, expected: torch.Tensor,
                             where: torch.Tensor | None = None) -> list[Verdict]:
        """The declared distribution-level measures of ``actual`` logits against ``expected`` ones."""
        import torch

        tol = self.variant.tolerances
        a = actual.double().reshape(-1, actual.size(-1))
        e = expected.double().reshape(-1, expected.size(-1))
        if where is not None:
            keep = where.reshape(-1).bool().to(a.device)
            a, e = a[keep], e[keep]
        verdicts = []
        if tol.max_kl is not None:
            log_p, log_q = e.log_softmax(-1), a.log_softmax(-1)
            kl_rows = (log_p.exp() * (log_p - log_q)).sum(-1)
            kl = float(torch.nan_to_num(kl_rows, nan=math.inf).mean())
            row = int(kl_rows.argmax())
            verdicts.append(Verdict("KL", kl, tol.max_kl, kl / tol.max_kl if tol.max_kl > 0 else math.inf,
                                    where=f"row {row} (worst KL {float(kl_rows[row]):.3g})",
                                    detail="mean KL(hf || variant), nats"))
        if tol.min_top1 is not None:  # a fraction over the whole run: one example has too few positions
            self.stats.top1_agree += int((a.argmax(-1) == e.argmax(-1)).sum())
            self.stats.top1_total += a.size(0)
        if tol.max_rel_logit_error is not None:
            rel = float((a - e).norm() / e.norm().clamp_min(1e-30))
            rel = math.inf if math.isnan(rel) else rel
            verdicts.append(Verdict("relative logit error", rel, tol.max_rel_logit_error,
                                    rel / tol.max_rel_logit_error if tol.max_rel_logit_error > 0 else math.inf,
                                    detail="||variant - hf|| / ||hf||"))
        return verdicts

    # -- the one entry point properties use -------------------------------------------
    def assert_close(self, what: str, actual: torch.Tensor, expected: torch.Tensor, *,
                     hf_dtype: torch.Tensor, hf64: torch.Tensor, dtype: str,
                     where: torch.Tensor | None = None, axes: tuple[str, ...] = LOGIT_AXES,
                     distributions: bool = True) -> None:
        """Fail unless ``actual`` is as close to ``expected`` as the variant declares.

        ``hf_dtype``/``hf64``: Hugging Face's result for the same input in the
        variant's dtype and in float64, which sets the exact bound. ``where``
        ``[B, T]`` selects the positions compared. ``distributions``: the
        tensors are logits, so approximate variants are judged on next-token
        distributions; otherwise on their relative error.
        """
        __tracebackhide__ = True
        if tuple(actual.shape) != tuple(expected.shape):
            self.fail(f"{what} has the wrong shape", list(actual.shape), list(expected.shape))
        if self.exact:
            verdicts = [self.exact_verdict(actual, expected, hf_dtype, hf64, dtype, axes, where)]
        elif distributions:
            verdicts = self.approximate_verdicts(actual, expected, where)
        else:
            verdicts = [self._relative_verdict(actual, expected)]
        for verdict in verdicts:
            self.stats.record(verdict)
        for verdict in verdicts:
            if not verdict.ok:
                self._fail(what, verdict)

    def assert_arithmetic(self, what: str, actual: torch.Tensor, expected: torch.Tensor, *,
                          hf_dtype: torch.Tensor, hf64: torch.Tensor, dtype: str,
                          axes: tuple[str, ...] = LOGIT_AXES) -> None:
        """Fail unless ``actual`` is within the exact bound, whatever the variant declares.

        For arithmetic given the very inputs the reference is given (a sampler
        fed the variant's own logits), where no approximation of the variant's
        plays a part.
        """
        __tracebackhide__ = True
        if tuple(actual.shape) != tuple(expected.shape):
            self.fail(f"{what} has the wrong shape", list(actual.shape), list(expected.shape))
        verdict = self.exact_verdict(actual, expected, hf_dtype, hf64, dtype, axes)
        self.stats.record(verdict)
        if not verdict.ok:
            self._fail(what, verdict)

    def assert_top1(self) -> None:
        """Fail unless the argmax agreed at ``min_top1`` of all positions compared during the run."""
        __tracebackhide__ = True
        tol = self.variant.tolerances
        if tol.min_top1 is None or self.stats.top1_total == 0:
            return
        frac = self.stats.top1_agree / self.stats.top1_total
        allowed = 1.0 - tol.min_top1
        miss = 1.0 - frac
        verdict = Verdict("top-1 agreement", frac, tol.min_top1,
                          miss / allowed if allowed > 0 else (0.0 if miss == 0 else math.inf),
                          detail=f"{self.stats.top1_agree} of {self.stats.top1_total} positions over the run")
        self.stats.record(verdict)
        if not verdict.ok:
            self._fail("the argmax over all examples of the run", verdict)

    def _relative_verdict(self, actual: torch.Tensor, expected: torch.Tensor) -> Verdict:
        tol = self.variant.tolerances
        bound = tol.max_rel_logit_error if tol.max_rel_logit_error is not None else 0.1
        rel = float((actual.double() - expected.double()).norm() / expected.double().norm().clamp_min(1e-30))
        rel = math.inf if math.isnan(rel) else rel
        return Verdict("relative error", rel, bound, rel / bound, detail="||variant - hf|| / ||hf||")

    def assert_equal(self, what: str, actual: torch.Tensor, expected: torch.Tensor,
                     axes: tuple[str, ...] = LOGIT_AXES) -> None:
        """Fail unless the two tensors are identical (determinism)."""
        __tracebackhide__ = True
        import torch

        if tuple(actual.shape) != tuple(expected.shape):
            self.fail(f"{what} has the wrong shape", list(actual.shape), list(expected.shape))
        same = torch.equal(actual, expected) or bool(
            (torch.isnan(actual) & torch.isnan(expected) | (actual == expected)).all()
        )
        diff = torch.nan_to_num((actual.double() - expected.double()).abs(), nan=math.inf)
        err = float(diff.max()) if diff.numel() else 0.0
        flat = int(diff.reshape(-1).argmax()) if diff.numel() else 0
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.numel() else ()
        verdict = Verdict("max abs difference", err, 0.0, 0.0 if same else math.inf,
                          where=_position(index, axes),
                          actual=float(actual[index]) if index else None,
                          expected=float(expected[index]) if index else None,
                          detail="identical results required")
        self.stats.record(verdict)
        if not same:
            self._fail(what, verdict)
