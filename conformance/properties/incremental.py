"""``incremental``: prefill then token-by-token decoding through the KV cache equals one full forward.

Every drawn split point reuses one cache, set up again each time; when the
variant declares padding, the rows may also be left-padded.
"""

from __future__ import annotations

from hypothesis import example, given

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, id_tensor, left_pad, logits_of, references

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("incremental")
    padding_ok = ctx.caps.padding

    @given(case=s.incremental_cases(ctx.configs(min_positions=2), padding=padding_ok))
    def incremental(case: s.IncrementalCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        if case.real is None:
            ids, mask = id_tensor(case.ids), None
        else:
            ids, mask = left_pad(case, case.config.eos_token_id)
        B, T = ids.shape
        full = logits_of(model, ids, mask)
        ref = references(case.config, case.init, ctx.dtype, ids, mask, exact=ctx.caps.exact)
        for split in case.splits:  # one cache, set up again for each split
            model.setup_caches(B, case.cache_length)
            pieces = [logits_of(model, ids[:, :split], None if mask is None else mask[:, :split],
                           input_pos=torch.arange(split))]
            for t in range(split, T):
                pieces.append(logits_of(model, ids[:, t : t + 1], None if mask is None else mask[:, : t + 1],
                                   input_pos=torch.tensor([t])))
            decoded = torch.cat(pieces, dim=1)
            judge.assert_close(
                f"prefill of {split} then token-by-token decoding (cache of {case.cache_length}) "
                "vs one full forward", decoded, full, dtype=ctx.dtype_name, where=mask, **ref)

    for case in pinned.long_narrow_incremental_examples(padding_ok, ctx.caps.test_configs):
        incremental = example(case=case)(incremental)  # first: a long counterexample is slow to shrink
    return incremental, [pinned.incremental_example(padding_ok, ctx.caps.test_configs),
                         pinned.full_context_incremental_example(ctx.caps.test_configs)]
