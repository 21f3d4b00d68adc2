"""``bad-input``: bad ids (values, dtypes, ranks), lengths, masks and cache positions raise
``zoo.InvalidInputError`` naming the problem.

The model must also be unharmed: a valid input gives the same logits after
the rejected call as before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hypothesis import given

import zoo

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, id_tensor, logits_of

if TYPE_CHECKING:
    import torch

__all__ = ["build"]


_KEYWORDS: dict[str, tuple[str, ...]] = {
    "empty sequence": ("empty", "at least one", "no token"),
    "empty batch": ("empty", "at least one", "batch"),
    "float ids": ("dtype", "float", "integer"),
    "ids of another integer dtype": ("dtype", "int64", "integer"),
    "complex mask": ("attention_mask", "complex", "real"),
    "1-D ids": ("2-d", "2d", "dim", "rank", "shape"),
    "3-D ids": ("2-d", "2d", "dim", "rank", "shape"),
    "mask of the wrong shape": ("attention_mask",),
    "input_pos outside the cache": ("input_pos", "cache"),
    "decoding past n_positions": ("input_pos", "cache", "n_positions"),
    "input_pos with a gap": ("input_pos", "consecutive"),
    "input_pos going backwards": ("input_pos", "consecutive"),
    "input_pos past the written slots": ("input_pos", "written", "slot"),
}


def _bad_call(model: zoo.GPT2, case: s.BadInput, valid: torch.Tensor) -> tuple[Callable[[], Any], tuple[str, ...]]:
    """The call that must raise, and words of which its message must contain one."""
    import torch

    config, kind, value = case.config, case.kind, case.value
    ids = valid.clone()
    if kind in ("negative id", "id >= vocab_size"):
        ids[0, -1] = value
        return (lambda: model(ids)), (str(value),)
    if kind == "longer than n_positions":
        long = torch.zeros((1, value), dtype=torch.long, device=valid.device)
        return (lambda: model(long)), (str(config.n_positions), "n_positions")
    if kind == "empty sequence":
        return (lambda: model(valid[:, :0])), _KEYWORDS[kind]
    if kind == "empty batch":
        return (lambda: model(valid[:0])), _KEYWORDS[kind]
    if kind == "float ids":
        return (lambda: model(valid.float())), _KEYWORDS[kind]
    if kind == "ids of another integer dtype":
        other = getattr(torch, s.OTHER_ID_DTYPES[value])
        return (lambda: model(valid.to(other))), _KEYWORDS[kind]
    if kind == "1-D ids":
        return (lambda: model(valid[0])), _KEYWORDS[kind]
    if kind == "3-D ids":
        return (lambda: model(valid[None])), _KEYWORDS[kind]
    if kind == "mask of the wrong shape":
        mask = torch.ones((1, valid.size(1) + value), dtype=torch.long, device=valid.device)
        return (lambda: model(valid, attention_mask=mask)), _KEYWORDS[kind]
    if kind == "complex mask":
        mask = torch.ones(valid.shape, dtype=torch.complex64, device=valid.device)
        return (lambda: model(valid, attention_mask=mask)), _KEYWORDS[kind]
    if kind == "input_pos outside the cache":
        size = valid.size(1)

        def outside() -> Any:
            model.setup_caches(1, size)
            return model(valid[:, :1], input_pos=torch.tensor([size], device=valid.device))

        return outside, _KEYWORDS[kind]
    if kind == "decoding past n_positions":  # a cache of the whole context, one token past its end

        def past() -> Any:
            model.setup_caches(1, config.n_positions)
            return model(valid[:, :1], input_pos=torch.tensor([value], device=valid.device))

        return past, _KEYWORDS[kind]
    if kind in ("input_pos with a gap", "input_pos going backwards", "input_pos past the written slots"):
        positions = {"input_pos with a gap": [0, 1 + value], "input_pos going backwards": [1, 0],
                     "input_pos past the written slots": [value]}[kind]
        pos = torch.tensor(positions, device=valid.device)
        tokens = torch.zeros((1, len(positions)), dtype=torch.long, device=valid.device)

        def misplaced() -> Any:  # right after setup_caches: no slot written yet
            model.setup_caches(1, config.n_positions)
            return model(tokens, input_pos=pos)

        return misplaced, _KEYWORDS[kind]
    raise ValueError(f"unknown bad-input kind {kind!r}")


def build(ctx: Context) -> Built:
    judge = ctx.judge("bad-input")

    @given(case=s.bad_inputs(ctx.configs(), kv_cache=ctx.caps.kv_cache))
    def bad_input(case: s.BadInput) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, s.PINNED_INIT)
        valid = id_tensor(pinned.edge_ids(case.config, min(4, case.config.n_positions)), str(model.device))
        before = logits_of(model, valid)
        call, words = _bad_call(model, case, valid)
        try:
            out = call()
        except zoo.InvalidInputError as exc:
            message = str(exc)
            if not any(w.lower() in message.lower() for w in words):
                judge.fail(f"the error for {case.kind} does not name the problem (expected one of {words})",
                           message, f"a message naming {' or '.join(words)}")
        except Exception as exc:  # noqa: BLE001  # any other type is the failure being reported
            judge.fail(f"{case.kind} raised the wrong error type",
                       f"{type(exc).__name__}: {exc}", "zoo.InvalidInputError")
        else:
            shape = list(getattr(out, "shape", []))
            judge.fail(f"{case.kind} was accepted silently (returned logits of shape {shape})",
                       "no error", "zoo.InvalidInputError")
        judge.assert_equal(f"logits of a valid input after the rejected {case.kind}", logits_of(model, valid), before)

    return bad_input, pinned.bad_input_examples(ctx.caps.kv_cache, ctx.caps.test_configs)
