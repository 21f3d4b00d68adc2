"""``weights``: import, export, import is lossless, and ``lm_head`` stays tied to ``wte``.

Exact equality is asked only of variants that declare ``lossless_weights``;
the others must keep the canonical keys and shapes, and match Hugging Face
after each import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import given

from .. import pinned
from .. import strategies as s
from ..models import canonical_weights
from .framework import Built, Context, id_tensor, logits_of, references

if TYPE_CHECKING:
    import torch

__all__ = ["build"]


def build(ctx: Context) -> Built:
    judge = ctx.judge("weights")
    lossless = ctx.caps.lossless_weights

    @given(case=s.weights_cases(ctx.configs()))
    def weights(case: s.WeightsCase) -> None:
        import torch

        ctx.stats.examples += 1
        config = case.config
        model = ctx.model(config, case.first, purpose="scratch")  # re-imported below: a model of its own
        first = canonical_weights(config, case.first)
        model.import_weights(first)

        def exported() -> dict[str, torch.Tensor]:
            return {k: torch.as_tensor(v).detach().cpu().clone() for k, v in model.export_weights().items()}

        one = exported()
        if "lm_head.weight" in one:
            judge.fail("export_weights() writes lm_head.weight: the canonical dict leaves it out, "
                       "because it is wte.weight", sorted(one), sorted(first))
        if set(one) != set(first):
            judge.fail("export_weights() keys differ from the canonical ones",
                       sorted(set(one) - set(first)), sorted(set(first) - set(one)))
        for name in first:
            if tuple(one[name].shape) != tuple(first[name].shape):
                judge.fail(f"exported {name} has the wrong shape", list(one[name].shape), list(first[name].shape))
            if lossless and not torch.equal(one[name], first[name].to(one[name].dtype)):
                err = float((one[name].double() - first[name].double()).abs().max())
                judge.fail(f"exported {name} differs from the imported tensor (max error {err:.3g})")
        model.import_weights(one)
        two = exported()
        if lossless:
            for name in one:
                if not torch.equal(two[name], one[name]):
                    judge.fail(f"import, export, import changed {name}")
        ids = id_tensor(pinned.edge_ids(config, min(8, config.n_positions)))
        for init, what in ((s.WeightInit(case.first.seed, case.first.scale, wte_seed=case.second.seed),
                            "logits after importing a new wte only (lm_head must follow it: the tie)"),
                           (case.second, "logits after importing a second set of weights")):
            model.import_weights(canonical_weights(config, init))
            ref = references(config, init, ctx.dtype, ids)
            judge.assert_close(what, logits_of(model, ids), ref["hf64"], dtype=ctx.dtype_name, **ref)

    return weights, []
