"""``quantise_``: a :class:`zoo.nn.GPT` made quantised in place, by swapping its modules (gpt-fast's design).

The scheme (:mod:`zoo.nn.schemes`) names the module that replaces each Linear
of the blocks and how the tied ``lm_head``/``wte`` pair is stored. Everything
else (attention, the static KV cache, padding, LayerNorms, the position
embedding) stays the model's own, cast to the scheme's activation dtype.

Two ways in:

- on a model on the meta device (what :func:`zoo.nn.build` does): only the
  modules are swapped; ``import_weights`` then quantises each canonical tensor
  as it arrives, so no float copy of the model is ever held;
- on a model that holds weights: they are quantised from the model's own.
"""

from __future__ import annotations

import torch

from .kernels import TiedEmbedding, TiedHead
from .model import GPT
from .schemes import Scheme, get_scheme

__all__ = ["quantise_"]


def quantise_(model: GPT, scheme: Scheme | str, *, device: torch.device | str | None = None) -> GPT:
    """Swap ``model``'s Linears (and its tied embedding, as ``scheme`` says) for quantised ones; return it.

    :param scheme: a :class:`zoo.nn.Scheme` or the name of a row of ``zoo.nn.SCHEMES``.
    :param device: where the model will run, checked against the scheme's
        devices (default: where it is; needed when it is on the meta device).
    :raises zoo.CapabilityError: if the scheme does not run there. The model is cast to the
        scheme's activation dtype.
    """
    scheme = get_scheme(scheme)
    target = torch.device(device) if device is not None else model.device
    if device is not None or target.type != "meta":  # an empty model checks where it will be allocated
        scheme.check(target.type)
    dense = None if model.device.type == "meta" else model.export_weights()  # views of the float weights
    model.to(dtype=getattr(torch, scheme.activations))
    linear = scheme.linear_class()
    with torch.device(model.device):
        for block in model.h:
            for parent, name in ((block.attn, "c_attn"), (block.attn, "c_proj"),
                                 (block.mlp, "c_fc"), (block.mlp, "c_proj")):
                old = getattr(parent, name)
                setattr(parent, name, linear(old.in_features, old.out_features, bias=old.bias is not None))
        if scheme.embedding == "int8":
            embedding = TiedEmbedding(model.config.vocab_size, model.config.n_embd)
            model.wte = embedding  # type: ignore[assignment]
            model.lm_head = TiedHead(embedding)  # type: ignore[assignment]
    if dense is not None:
        model.tie_weights()
        model.import_weights(dense)
    return model
