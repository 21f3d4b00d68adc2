"""``training``: the cross-entropy loss and every parameter's gradient equal Hugging Face's.

Parameters are matched to canonical weight names through the views
``export_weights()`` returns, so every canonical weight must be a trainable
parameter (``lm_head`` is ``wte``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given

from .. import strategies as s
from ..models import next_token_loss, reference_gradients
from .framework import Built, Context, id_tensor

__all__ = ["build"]


def _parameter_names(model: Any, exported: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Parameter name -> (canonical name, transposed), matching export_weights() views by storage."""
    by_storage = {(t.data_ptr(), t.numel()): (name, t) for name, t in exported.items()}
    names = {}
    for pname, p in model.named_parameters():
        found = by_storage.get((p.data_ptr(), p.numel()))
        if found is None:
            continue
        name, view = found
        same = tuple(view.shape) == tuple(p.shape) and view.stride() == p.stride()
        if same or (p.dim() == 2 and tuple(view.shape) == tuple(p.shape)[::-1]
                    and view.stride() == p.stride()[::-1]):
            names[pname] = (name, not same)  # a transposed view (Hugging Face's Conv1D) or the tensor itself
    return names


def build(ctx: Context) -> Built:
    judge = ctx.judge("training")

    @given(case=s.training_cases(ctx.configs(min_positions=2)))
    def training(case: s.TrainingCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        if not isinstance(model, torch.nn.Module):
            judge.fail("a trainable variant must be a torch.nn.Module so its gradients can be read",
                       type(model).__name__, "torch.nn.Module")
        names = _parameter_names(model, model.export_weights())
        params = dict(model.named_parameters())
        unmapped = sorted(set(params) - set(names))
        if unmapped:
            judge.fail("export_weights() returned copies of these parameters, not the parameters or views of "
                       "them (most often a .clone(), .contiguous(), .float() or .detach().numpy() in "
                       "export_weights; else a parameter that is no GPT-2 weight, such as an untied lm_head): "
                       "a trainable variant's exported weights must be its parameters", unmapped, [])
        frozen = sorted(n for n, p in params.items() if not p.requires_grad)
        if frozen:
            judge.fail("parameters that do not require grad", frozen, [])
        ids = id_tensor(case.ids, str(model.device))
        with torch.enable_grad():
            logits = model(ids)[..., : case.config.vocab_size]
            loss = next_token_loss(logits, ids)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        loss64, g64 = reference_gradients(case.config, case.init, torch.float64, ids)
        loss_dt, g_dt = (loss64, g64) if ctx.dtype == torch.float64 else \
            reference_gradients(case.config, case.init, ctx.dtype, ids)
        judge.assert_close("cross-entropy loss", loss.detach().double().cpu()[None], loss64[None],
                           hf_dtype=loss_dt[None], hf64=loss64[None], dtype=ctx.dtype_name, axes=("value",),
                           distributions=False)
        for pname, grad in zip(params, grads, strict=True):
            canonical, transposed = names[pname]
            if grad is None:
                judge.fail(f"no gradient reaches {pname} ({canonical})")
            g = grad.double().cpu()
            g = g.T if transposed else g
            judge.assert_close(f"gradient of {canonical}", g, g64[canonical], hf_dtype=g_dt[canonical],
                               hf64=g64[canonical], dtype=ctx.dtype_name, axes=("row", "column"),
                               distributions=False)
        missing = sorted(set(g64) - {names[p][0] for p in params})
        if missing:
            judge.fail("canonical weights with no parameter to train", missing, [])

    return training, []
