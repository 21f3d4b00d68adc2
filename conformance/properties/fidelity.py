"""``fidelity``: on learned weights, the variant's next-token distributions stay within its budget of float32's.

For each fidelity preset (:mod:`zoo.fidelity`: ``learned``, a small
GPT-2 trained here, and ``outliers``, the same function with GPT-2's
activation outliers planted) and each declared dtype, the variant predicts
the preset's held-out text; against Hugging Face's float32 logits on the
same weights the harness measures the mean KL divergence, top-1 agreement
and the perplexity ratio, and records them for ``zoo check``'s fidelity
table and JSON.

- **Exact** variants stay within ``error_factor`` times Hugging Face's own
  figures in the same dtype (its bfloat16 against its float32), plus a floor
  for float rounding: ``KL <= f * KL_hf + floor`` and
  ``|log ppl_ratio| <= f * |log ppl_ratio_hf| + floor``.
- **Approximate** variants declare a :class:`zoo.Fidelity` budget per preset
  in ``Tolerances.fidelity``; one with no budget for a preset fails with the
  figures it measured, so that its author can state one.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, NamedTuple

from hypothesis import example, given
from hypothesis import strategies as st

from zoo import fidelity as presets

from ..assertions import Verdict
from ..models import hf_model
from .framework import Built, Context, logits_of

if TYPE_CHECKING:
    import torch

__all__ = ["build"]

# float rounding an exact variant may add beyond error_factor x Hugging Face's own figures. In bfloat16
# the perplexity moves a few 1e-4 either way with the order of the sums alone: Hugging Face's own model,
# run on the windows in another batch layout, measured |log ppl ratio| 1.6e-4 where its reference said
# 1.1e-5, and pure 2.7e-4 (torch 2.5 and 2.9); KL, which these rounding walks barely move, stays tight.
KL_FLOOR = {"float64": 1e-12, "float32": 1e-8, "bfloat16": 1e-5, "float16": 1e-5}
LOG_PPL_FLOOR = {"float64": 1e-9, "float32": 1e-6, "bfloat16": 1e-3, "float16": 1e-3}


class FidelityCase(NamedTuple):
    preset: str
    dtype: str


@functools.lru_cache(maxsize=8)
def reference(preset: str, dtype: str) -> torch.Tensor:
    """Hugging Face's logits on the preset's held-out windows, in ``dtype``, as float64."""
    import torch

    p = presets.get_preset(preset)
    with torch.no_grad():
        return hf_model(p.config, p.weights, getattr(torch, dtype))(input_ids=p.held_out).logits.double()


def _worst_position(logits: torch.Tensor, ref: torch.Tensor) -> str:
    """Where the two distributions differ most: window, position, and each one's top token."""
    import torch.nn.functional as F

    lp, rp = F.log_softmax(logits, -1), F.log_softmax(ref, -1)
    kl = (rp.exp() * (rp - lp)).sum(-1)  # (B, T)
    b, t = divmod(int(kl.argmax()), kl.size(1))
    return (f"window {b}, position {t} (KL {float(kl[b, t]):.3g}; top token {int(lp[b, t].argmax())}, "
            f"should be {int(rp[b, t].argmax())})")


def build(ctx: Context) -> Built:
    variant, caps, tol = ctx.variant, ctx.caps, ctx.variant.tolerances
    judge = ctx.judge("fidelity")
    cases = [FidelityCase(p, d) for p in presets.PRESETS for d in caps.dtypes]

    def judged(case: FidelityCase, measure: str, value: float, bound: float, detail: str, where: str) -> None:
        verdict = Verdict(measure, value, bound, value / bound if bound > 0 else math.inf, where=where,
                          detail=detail)
        ctx.stats.record(verdict)
        if not verdict.ok:
            judge._fail(f"{measure} against Hugging Face float32 on the {case.preset} preset ({case.dtype})",
                        verdict)

    @given(case=st.sampled_from(cases))
    def fidelity(case: FidelityCase) -> None:
        import torch

        ctx.stats.examples += 1
        p = presets.get_preset(case.preset)
        model = variant.build(p.config, device=torch.device(ctx.device), dtype=getattr(torch, case.dtype))
        model.import_weights(p.weights)
        logits = logits_of(model, p.held_out)
        ref32 = reference(case.preset, "float32")
        figures = presets.measure(logits, ref32, p.held_out)
        ctx.stats.figures[f"{case.preset}@{case.dtype}"] = figures.as_dict()
        ctx.note(f"{case.preset} preset, {case.dtype}: KL {figures.kl:.3g}, top-1 {figures.top1:.4f}, "
                 f"perplexity {figures.ppl:.4g} ({figures.ppl_ratio:.4f}x float32's)")
        where = (f"{p.held_out.size(0) * (p.held_out.size(1) - 1):,} held-out tokens, the worst at "
                 + _worst_position(logits[:, :-1], ref32[:, :-1]))
        log_ratio = abs(math.log(figures.ppl_ratio))
        if caps.exact:
            own = presets.measure(reference(case.preset, case.dtype), ref32, p.held_out)
            f = tol.error_factor
            kl_bound = f * own.kl + KL_FLOOR.get(case.dtype, 1e-5)
            log_bound = f * abs(math.log(own.ppl_ratio)) + LOG_PPL_FLOOR.get(case.dtype, 1e-4)
            judged(case, "KL", figures.kl, kl_bound,
                   f"{f:g} x Hugging Face {case.dtype}'s KL {own.kl:.3g} + {KL_FLOOR.get(case.dtype, 1e-5):g}", where)
            judged(case, "|log perplexity ratio|", log_ratio, log_bound,
                   f"{f:g} x Hugging Face {case.dtype}'s {abs(math.log(own.ppl_ratio)):.3g} + "
                   f"{LOG_PPL_FLOOR.get(case.dtype, 1e-4):g}", where)
            return
        budget = tol.fidelity.get(case.preset)
        if budget is None:
            judge.fail(
                f"declares no fidelity budget for the {case.preset} preset; it measured KL {figures.kl:.3g}, "
                f"top-1 {figures.top1:.4f}, perplexity ratio {figures.ppl_ratio:.4f} ({case.dtype}). Declare "
                f"Tolerances(fidelity={{{case.preset!r}: zoo.Fidelity(max_kl=..., max_ppl_ratio=...)}}) with "
                "the bounds its users can rely on")
        judged(case, "KL", figures.kl, budget.max_kl, "the declared budget", where)
        judged(case, "perplexity increase", figures.ppl_ratio - 1, budget.max_ppl_ratio - 1,
               f"the declared budget: perplexity ratio {figures.ppl_ratio:.4f} > {budget.max_ppl_ratio:g}", where)
        if budget.min_top1 > 0:
            miss, allowed = 1 - figures.top1, 1 - budget.min_top1
            verdict = Verdict("top-1 agreement", figures.top1, budget.min_top1,
                              miss / allowed if allowed > 0 else (0.0 if miss == 0 else math.inf), where=where,
                              detail="the declared budget")
            ctx.stats.record(verdict)
            if not verdict.ok:
                judge._fail(f"top-1 agreement with Hugging Face float32 on the {case.preset} preset "
                            f"({case.dtype})", verdict)

    for case in reversed(cases):  # every preset and dtype, in order (the last example added runs first)
        fidelity = example(case=case)(fidelity)
    return fidelity, []

