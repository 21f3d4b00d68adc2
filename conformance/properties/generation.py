"""``generation``: greedy generation equals Hugging Face's ``generate``; seeded sampling repeats.

An exact variant must follow Hugging Face's float64 greedy choice except at a
near tie, judged by the variant's own tolerances. An approximate one is held to
reproducible sampling (its logits are judged by ``logits``), and, where it
decodes greedily by a loop of its own (:meth:`zoo.GPT2.generate_greedy`), to
that loop choosing what its own full forwards choose, except at a tie within
its declared ``max_rel_logit_error``.
"""

from __future__ import annotations

from hypothesis import given

import zoo

from .. import pinned
from .. import strategies as s
from ..models import reference_model
from .framework import Built, Context, id_tensor, logits_of, references

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
        # what zoo.generate decodes greedily through: the model's own loop where it has one and no KV cache
        own_loop = (type(model).generate_greedy is not zoo.GPT2.generate_greedy
                    and type(model).setup_caches is zoo.GPT2.setup_caches)
        tol = ctx.variant.tolerances
        if ctx.caps.exact:
            expected, whose = _hf_greedy(case), "Hugging Face's generate"
        elif own_loop and tol.max_rel_logit_error is not None:
            # the variant's own loop against its own full forwards, one per token
            expected = [_first_eos(row, eos)
                        for row in zoo.generate(model, prompts, case.max_new_tokens, use_cache=False)]
            whose = "its own full forwards"
        else:
            return  # an approximate variant's argmax may differ; its logits are judged elsewhere
        got = [_first_eos(row, eos) for row in zoo.generate(model, prompts, case.max_new_tokens)]
        for b, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            step = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y), None)
            if step is None:
                if len(mine) != len(theirs):
                    judge.fail(f"greedy generation from prompt {b} has the wrong length (against {whose})",
                               mine, theirs)
                continue
            prefix = id_tensor((case.prompts[b] + tuple(mine[:step]),))
            if ctx.caps.exact:  # a near tie in Hugging Face's own float64 logits may break either way
                ref = references(case.config, case.init, ctx.dtype, prefix)
                last, last_dt = ref["hf64"][0, -1], ref["hf_dtype"][0, -1]
                bound = tol.error_factor * float((last_dt - last).abs().max()) + tol.abs_floor.get(ctx.dtype_name, 0.0)
            else:  # its loop may round differently from a full forward, within its declared logit error
                last = logits_of(model, prefix)[0, -1]
                assert tol.max_rel_logit_error is not None
                bound = tol.max_rel_logit_error * float(last.pow(2).mean().sqrt())
            gap = float(last[theirs[step]] - last[mine[step]])
            ctx.note(f"prompt {b}, step {step}: logit gap {gap:.3g} against {whose}, allowed tie {2 * bound:.3g}")
            if gap > 2 * bound:
                judge.fail(f"greedy generation from prompt {b} differs from {whose} at step {step} (logit gap "
                           f"{gap:.3g} > 2 x bound {bound:.3g})", mine, theirs)

    return generation, [pinned.generation_example(padding_ok, ctx.caps.test_configs)]
