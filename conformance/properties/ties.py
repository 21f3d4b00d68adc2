"""``tie``: ``lm_head`` is ``wte``: a change to ``wte`` moves the logits as it moves Hugging Face's.

The canonical weights leave ``lm_head`` out because GPT-2's head *is* its
token embedding; a variant claims the tie by exporting none. Here ``wte`` is
replaced in place through the tensor ``export_weights()`` returns. Where that
tensor is the variant's own storage (a second export shows the change), the
logits must follow with nothing else done; where it is a copy (the quantised
variants export dequantised weights), the updated state is imported again.
Either way the logits must then equal Hugging Face's with the new ``wte`` in
its lookup and its head, as they equalled them before the update: from a full
forward, and, for a variant with a KV cache, from a decode step after a
prefill (a compiled decode step may hold a frozen copy of the weights).
"""

from __future__ import annotations

from hypothesis import given

from .. import pinned
from .. import strategies as s
from ..models import canonical_weights
from .framework import Built, Context, References, id_tensor, logits_of, references

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("tie")

    @given(case=s.weights_cases(ctx.configs()))
    def tie(case: s.WeightsCase) -> None:
        import torch

        ctx.stats.examples += 1
        config = case.config
        model = ctx.model(config, case.first, purpose="scratch")  # written into below: a model of its own
        model.import_weights(canonical_weights(config, case.first))
        ids = id_tensor(pinned.edge_ids(config, min(8, config.n_positions)))
        ref = references(config, case.first, ctx.dtype, ids)
        judge.assert_close("logits before wte is updated", logits_of(model, ids), ref["hf64"],
                           dtype=ctx.dtype_name, **ref)

        updated = s.WeightInit(case.first.seed, case.first.scale, wte_seed=case.second.seed)
        new_wte = canonical_weights(config, updated)["wte.weight"]
        exported = model.export_weights()
        if "wte.weight" not in exported:
            judge.fail("export_weights() has no wte.weight", sorted(exported), ["wte.weight", "..."])
        with torch.no_grad():
            torch.as_tensor(exported["wte.weight"]).copy_(new_wte)
        again = torch.as_tensor(model.export_weights()["wte.weight"]).detach().cpu()
        in_place = torch.equal(again, new_wte.to(again.dtype))
        if in_place:
            how = "wte was written in place through the tensor export_weights() returned (the variant's own storage)"
        else:
            how = "wte was replaced in the exported state (a copy) and the state imported again"
            model.import_weights(exported)
        ctx.note(how)
        ref = references(config, updated, ctx.dtype, ids)
        untied = ("they do not follow the new wte as Hugging Face's do, so lm_head is not tied to wte (the "
                  "variant claims the tie by exporting no lm_head, but computes with a copy of wte that the "
                  "update did not reach)")
        judge.assert_close(f"logits after {how}: {untied}", logits_of(model, ids), ref["hf64"],
                           dtype=ctx.dtype_name, **ref)
        T = ids.size(1)
        if ctx.caps.kv_cache and T >= 2:  # the decode path too: a compiled step may hold a frozen copy
            model.setup_caches(1, T)
            logits_of(model, ids[:, :1], input_pos=torch.arange(1))
            steps = torch.cat([logits_of(model, ids[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(1, T)],
                              dim=1)  # (1, T - 1, V): every position decoded one token at a time
            later = References(hf64=ref["hf64"][:, 1:], hf_dtype=ref["hf_dtype"][:, 1:])
            what = f"decode-step logits (through the KV cache) after {how}: {untied}"
            if ctx.caps.exact:
                judge.assert_close(what, steps, later["hf64"], dtype=ctx.dtype_name, **later)
            else:  # precision is incremental's to judge; here: do the steps follow the new wte or the old?
                old = references(config, case.first, ctx.dtype, ids)["hf64"][:, 1:]
                to_new, to_old = (float((steps - r).norm() / r.norm()) for r in (later["hf64"], old))
                ctx.note(f"decode steps: relative distance {to_new:.3g} to the updated reference, "
                         f"{to_old:.3g} to the one before the update")
                if not to_new < 0.5 * to_old:
                    judge.fail(what, f"relative distance {to_new:.3g} to the updated reference",
                               f"less than half the {to_old:.3g} to the reference before the update")

    return tie, []
