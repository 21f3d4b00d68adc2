"""``check_inputs``: the one place that validates what a variant's forward receives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from ._config import GPT2Config

__all__ = ["check_cache_size", "check_inputs"]


def check_inputs(
    config: GPT2Config,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    input_pos: torch.Tensor | None = None,
    *,
    max_seq_length: int | None = None,
    max_batch_size: int | None = None,
    device: torch.device | str | None = None,
) -> None:
    """Raise :class:`zoo.InvalidInputError` naming the problem if the arguments break the interface.

    ``max_seq_length`` and ``max_batch_size`` are the cache sizes when
    ``input_pos`` is given (``None``: no cache was set up). ``device``, when
    given, is the model's: every tensor must be on it.
    """
    import torch

    if not isinstance(input_ids, torch.Tensor):
        raise InvalidInputError(
            f"input_ids must be a torch.Tensor of int64 token ids, got {type(input_ids).__name__}; "
            "wrap it with torch.tensor(ids, dtype=torch.long)"
        )
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise InvalidInputError(
            f"input_ids must hold integer token ids, got dtype {input_ids.dtype}; use .long()"
        )
    if input_ids.dim() != 2:
        hint = "; add a batch dimension with input_ids[None]" if input_ids.dim() == 1 else ""
        raise InvalidInputError(
            f"input_ids must be 2-D [batch, tokens], got shape {list(input_ids.shape)}{hint}"
        )
    batch, tokens = input_ids.shape
    if device is not None:
        _check_device("input_ids", input_ids, torch.device(device))
    if batch == 0 or tokens == 0:
        raise InvalidInputError(
            f"input_ids is empty (shape {list(input_ids.shape)}); pass at least one token per sequence"
        )
    if tokens > config.n_positions:
        raise InvalidInputError(
            f"sequence of {tokens} tokens is longer than n_positions={config.n_positions}; "
            f"truncate it to the last {config.n_positions} tokens"
        )
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        bad = low if low < 0 else high
        raise InvalidInputError(
            f"token id {bad} is out of range [0, {config.vocab_size}) for vocab_size={config.vocab_size}"
        )

    context = tokens
    if input_pos is not None:
        if max_seq_length is None:
            raise InvalidInputError(
                "input_pos was given but no KV cache is set up; call setup_caches(max_batch_size, "
                "max_seq_length) first, or omit input_pos for a full forward"
            )
        if (
            not isinstance(input_pos, torch.Tensor)
            or input_pos.is_floating_point()
            or input_pos.is_complex()
            or input_pos.dtype == torch.bool
        ):
            raise InvalidInputError(
                "input_pos must be an integer torch.Tensor of cache positions, e.g. "
                "torch.arange(start, start + tokens)"
            )
        if device is not None:
            _check_device("input_pos", input_pos, torch.device(device))
        if input_pos.dim() != 1 or input_pos.shape[0] != tokens:
            raise InvalidInputError(
                f"input_pos must have shape [{tokens}] (one position per token), got {list(input_pos.shape)}"
            )
        if max_batch_size is not None and batch > max_batch_size:
            raise InvalidInputError(
                f"batch of {batch} is larger than the cache's max_batch_size={max_batch_size}; "
                "call setup_caches() with a larger max_batch_size"
            )
        first, last = int(input_pos.min()), int(input_pos.max())
        if first < 0 or last >= max_seq_length:
            raise InvalidInputError(
                f"input_pos {last if first >= 0 else first} is outside the cache [0, {max_seq_length}); "
                "call setup_caches() with a larger max_seq_length"
            )
        context = last + 1

    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor):
            raise InvalidInputError(
                f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}"
            )
        if device is not None:
            _check_device("attention_mask", attention_mask, torch.device(device))
        expected = [batch, context]
        if list(attention_mask.shape) != expected:
            what = "tokens" if input_pos is None else "cache slots written so far (input_pos[-1] + 1)"
            raise InvalidInputError(
                f"attention_mask must have shape {expected} ([batch, {what}]), got {list(attention_mask.shape)}"
            )
        if attention_mask.is_floating_point():
            ok = bool(((attention_mask == 0) | (attention_mask == 1)).all())
        else:
            ok = attention_mask.dtype == torch.bool or bool(
                ((attention_mask == 0) | (attention_mask == 1)).all()
            )
        if not ok:
            raise InvalidInputError("attention_mask must hold only 0 (padding) and 1 (token)")
        # with a cache, a chunk of a left-padded prefill may still be all padding for some row
        if input_pos is None and not bool(attention_mask.bool().any(dim=-1).all()):
            raise InvalidInputError(
                "attention_mask has a sequence with no tokens at all (every entry 0); drop that row"
            )


def _check_device(what: str, tensor: torch.Tensor, device: torch.device) -> None:
    same = tensor.device.type == device.type and (
        device.index is None or tensor.device.index in (None, device.index)
    )
    if not same:
        raise InvalidInputError(
            f"{what} is on {tensor.device} but the model is on {device}; move it with .to(model.device)"
        )


def check_cache_size(config: GPT2Config, max_batch_size: int, max_seq_length: int) -> None:
    """Raise :class:`zoo.InvalidInputError` unless ``setup_caches`` may allocate this cache."""
    for name, value in (("max_batch_size", max_batch_size), ("max_seq_length", max_seq_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidInputError(f"setup_caches: {name}={value!r} must be a positive int")
    if max_seq_length > config.n_positions:
        raise InvalidInputError(
            f"setup_caches: max_seq_length={max_seq_length} exceeds n_positions={config.n_positions}; "
            f"no sequence can be longer than {config.n_positions} tokens"
        )
