"""``batch``: a batch gives the same rows as each of its sequences run alone."""

from __future__ import annotations

from hypothesis import given

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, id_tensor, logits_of, references

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("batch")

    @given(case=s.batches(ctx.configs()))
    def batch(case: s.Batch) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids = id_tensor(case.ids)
        together = logits_of(model, ids)
        alone = torch.cat([logits_of(model, ids[b : b + 1]) for b in range(ids.size(0))])
        ref = references(case.config, case.init, ctx.dtype, ids)
        judge.assert_close("rows of a batch vs each row run alone", together, alone,
                           dtype=ctx.dtype_name, **ref)

    return batch, [pinned.batch_example(ctx.caps.test_configs)]
