"""``logits``: the variant's logits equal Hugging Face's on the same weights, for every declared dtype.

Each declared dtype is also pinned at the largest weight scale with every
position used, and the 124M shape (or the largest declared test config) runs
once after hypothesis' examples.
"""

from __future__ import annotations

from hypothesis import example, given

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, id_tensor, logits_of, references

__all__ = ["build"]


def build(ctx: Context) -> Built:
    caps = ctx.caps
    judge = ctx.judge("logits")

    @given(case=s.forward_cases(ctx.configs(), caps.dtypes))
    def logits(case: s.ForwardCase) -> None:
        import torch

        ctx.stats.examples += 1
        dtype = getattr(torch, case.dtype)
        ids = id_tensor(case.ids)
        actual = logits_of(ctx.model(case.config, case.init, dtype), ids)
        ref = references(case.config, case.init, dtype, ids, exact=caps.exact)
        judge.assert_close(f"logits ({case.dtype})", actual, ref["hf64"], dtype=case.dtype, **ref)

    for name in caps.dtypes:  # every declared dtype, at the largest init scale, every position used
        logits = example(case=pinned.small_full_length_example(name, caps.test_configs))(logits)
    # GPT-2's whole context, narrow, first: a counterexample a thousand tokens long takes minutes to shrink
    for case in pinned.long_narrow_examples(caps.dtypes[0], caps.test_configs):
        logits = example(case=case)(logits)
    return logits, [pinned.forward_example(caps.dtypes[0], caps.test_configs),
                    pinned.full_context_example(caps.dtypes[0], caps.test_configs)]
