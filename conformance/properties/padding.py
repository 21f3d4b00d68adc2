"""``padding``: left padding with an attention mask changes nothing for the real tokens.

Each padded row is compared with the row run alone, and the whole batch with
Hugging Face given the same mask (and so the same position ids).
"""

from __future__ import annotations

from hypothesis import example, given

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, left_pad, logits_of, references

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("padding")

    @given(case=s.padded_cases(ctx.configs(min_positions=2)))
    def padding(case: s.PaddedCase) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids, mask = left_pad(case, case.pad)
        T = ids.size(1)
        ctx.note(f"padded ids {ids.tolist()}, attention_mask {mask.tolist()}")
        padded = logits_of(model, ids, mask)
        for b, n in enumerate(case.real):
            row = ids[b : b + 1, T - n :]
            alone = logits_of(model, row)
            ref = references(case.config, case.init, ctx.dtype, row)
            judge.assert_close(f"row {b} of a left-padded batch ({T - n} padding) vs the row alone",
                               padded[b : b + 1, T - n :], alone, dtype=ctx.dtype_name,
                               axes=("", "real token", "vocabulary id"), **ref)
        ref = references(case.config, case.init, ctx.dtype, ids, mask)
        judge.assert_close("left-padded batch vs Hugging Face given the same mask and position ids",
                           padded, ref["hf64"], dtype=ctx.dtype_name, where=mask, **ref)

    for case in pinned.long_narrow_padded_examples(ctx.caps.test_configs):
        padding = example(case=case)(padding)  # first: a long counterexample is slow to shrink
    return padding, [pinned.padded_example(ctx.caps.test_configs)]
