"""``generation``: greedy generation equals Hugging Face's ``generate``; seeded sampling repeats.

An exact variant must follow Hugging Face's float64 greedy choice except at a
near tie, judged by the variant's own tolerances; an approximate one is only
held to reproducible sampling (its logits are judged by ``logits``).
"""

from __future__ import annotations

from hypothesis import given

import zoo

from .. import pinned
from .. import strategies as s
from ..models import reference_model
from .framework import Built, Context, id_tensor, references

__all__ = ["build"]


def _first_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def _hf_greedy(case: s.GenerationCase) -> list[list[int]]:
    """Hugging Face ``generate`` in float64, greedy, with the prompts left-padded as zoo.generate pads them."""
    import torch

    model = reference_model(case.config, case.init, torch.float64)
    eos = case.config.eos_token_id
    longest = max(len(p) for p in case.prompts)
    ids = torch.full((len(case.prompts), longest), eos, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(case.prompts):
        ids[b, longest - len(p) :] = torch.tensor(p)
        mask[b, longest - len(p) :] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=case.max_new_tokens,
                             do_sample=False, pad_token_id=eos, eos_token_id=eos)
    return [_first_eos(row[longest:].tolist(), eos) for row in out]


def build(ctx: Context) -> Built:
    judge = ctx.judge("generation")
    padding_ok = ctx.caps.padding

    @given(case=s.generation_cases(ctx.configs(min_positions=2), padding=padding_ok))
    def generation(case: s.GenerationCase) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        prompts = [list(p) for p in case.prompts]
        eos = case.config.eos_token_id
        sample = {"temperature": case.temperature, "top_k": case.top_k, "top_p": case.top_p,
                  "seed": case.seed}
        first = zoo.generate(model, prompts, case.max_new_tokens, **sample)
        again = zoo.generate(model, prompts, case.max_new_tokens, **sample)
        if first != again:
            judge.fail(f"seeded sampling is not reproducible ({sample})", again, first)
        if not ctx.caps.exact:
            return  # an approximate variant's argmax may differ; its logits are judged elsewhere
        got = [_first_eos(row, eos) for row in zoo.generate(model, prompts, case.max_new_tokens)]
        expected = _hf_greedy(case)
        tol = ctx.variant.tolerances
        for b, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            step = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y), None)
            if step is None:
                if len(mine) != len(theirs):
                    judge.fail(f"greedy generation from prompt {b} has the wrong length", mine, theirs)
                continue
            # a near tie in Hugging Face's own float64 logits may break either way
            prefix = id_tensor((case.prompts[b] + tuple(mine[:step]),))
            ref = references(case.config, case.init, ctx.dtype, prefix)
            last64, last_dt = ref["hf64"][0, -1], ref["hf_dtype"][0, -1]
            bound = tol.error_factor * float((last_dt - last64).abs().max()) + tol.abs_floor.get(ctx.dtype_name, 0.0)
            gap = float(last64[theirs[step]] - last64[mine[step]])
            ctx.note(f"prompt {b}, step {step}: HF float64 logit gap {gap:.3g}, allowed tie {2 * bound:.3g}")
            if gap > 2 * bound:
                judge.fail(f"greedy generation from prompt {b} differs from Hugging Face's generate at "
                           f"step {step} (logit gap {gap:.3g} > 2 x bound {bound:.3g})", mine, theirs)

    return generation, [pinned.generation_example(padding_ok, ctx.caps.test_configs)]
