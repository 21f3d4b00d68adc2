"""``causality``: changing the token at position t changes no logits before t."""

from __future__ import annotations

from hypothesis import given

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, References, id_tensor, logits_of, references

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("causality")

    @given(case=s.causality_cases(ctx.configs(min_positions=2)))
    def causality(case: s.CausalityCase) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids = id_tensor(case.ids)
        changed = ids.clone()
        changed[:, case.position] = case.token
        before, after = logits_of(model, ids), logits_of(model, changed)
        p = case.position
        full = references(case.config, case.init, ctx.dtype, ids)
        ref = References(hf64=full["hf64"][:, :p], hf_dtype=full["hf_dtype"][:, :p])
        judge.assert_close(f"logits before position {p} after changing the token at {p}",
                           after[:, :p], before[:, :p], dtype=ctx.dtype_name, **ref)

    return causality, [pinned.causality_example(ctx.caps.test_configs)]
