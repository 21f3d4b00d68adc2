"""``tie``: ``lm_head`` is ``wte``: a change to ``wte`` moves the logits as it moves Hugging Face's.

The canonical weights leave ``lm_head`` out because GPT-2's head *is* its
token embedding; a variant claims the tie by exporting none. Here ``wte`` is
replaced in place through the tensor ``export_weights()`` returns. Where that
tensor is the variant's own storage (a second export shows the change), the
logits must follow with nothing else done; where it is a copy (the quantised
variants export dequantised weights), the updated state is imported again.
Either way the logits must then equal Hugging Face's with the new ``wte`` in
its lookup and its head, as they equalled them before the update.
"""

from __future__ import annotations

from hypothesis import given

from .. import pinned
from .. import strategies as s
from ..models import canonical_weights
from .framework import Built, Context, id_tensor, logits_of, references

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
        judge.assert_close(f"logits after {how}: they do not follow the new wte as Hugging Face's do, so lm_head "
                           "is not tied to wte (the variant claims the tie by exporting no lm_head, but computes "
                           "with a copy of wte that the update did not reach)",
                           logits_of(model, ids), ref["hf64"], dtype=ctx.dtype_name, **ref)

    return tie, []
