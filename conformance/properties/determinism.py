"""``determinism``: the same input twice gives the same output (and through the KV cache, if declared)."""

from __future__ import annotations

from hypothesis import given

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, id_tensor, logits_of

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("determinism")

    @given(case=s.forward_cases(ctx.configs()))
    def determinism(case: s.ForwardCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids = id_tensor(case.ids)
        first = logits_of(model, ids)
        logits_of(model, ids.flip(-1))  # something else in between
        judge.assert_equal("the same input run twice", logits_of(model, ids), first)
        if ctx.caps.kv_cache:
            B, T = ids.shape
            runs = []
            for _ in range(2):
                model.setup_caches(B, T)
                runs.append(logits_of(model, ids, input_pos=torch.arange(T)))
            judge.assert_equal("the same prefill through the KV cache run twice", runs[1], runs[0])

    return determinism, [pinned.forward_example(ctx.dtype_name, ctx.caps.test_configs)]
