"""``check_inputs``: the one place that validates what a variant's forward receives."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from ._config import GPT2Config

__all__ = ["SEED_LIMIT", "check_cache_size", "check_inputs", "check_seed"]

SEED_LIMIT = 2**64  # torch's generators take seeds in [0, 2**64)

_INDEX_DTYPES = ("torch.int64", "torch.int32")  # what nn.Embedding and NumPy indexing take


def check_inputs(
    config: GPT2Config,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    input_pos: torch.Tensor | None = None,
    *,
    max_seq_length: int | None = None,
    max_batch_size: int | None = None,
    device: torch.device | str | None = None,
    cache_cursor: int | None = None,
) -> None:
    """Raise :class:`zoo.InvalidInputError` naming the problem if the arguments break the interface.

    ``max_seq_length`` and ``max_batch_size`` are the cache sizes when
    ``input_pos`` is given (``None``: no cache was set up). ``device``, when
    given, is the model's: every tensor must be on it. ``cache_cursor`` is the
    slot after the last one written since ``setup_caches`` (0 right after it):
    ``input_pos`` may start at it or go back before it, never beyond it, since
    the slots in between would hold no keys (``None``: not checked).

    Token ids and positions are ``int64`` or ``int32`` (what every variant's
    embedding takes); other integer dtypes are refused rather than converted,
    so no variant reads a ``uint8`` tensor as a mask.
    """
    import torch

    if not isinstance(input_ids, torch.Tensor):
        raise InvalidInputError(
            f"input_ids must be a torch.Tensor of int64 token ids, got {type(input_ids).__name__}; "
            "wrap it with torch.tensor(ids, dtype=torch.long)"
        )
    if str(input_ids.dtype) not in _INDEX_DTYPES:
        raise InvalidInputError(
            f"input_ids must hold integer token ids of dtype int64 (or int32), got dtype {input_ids.dtype}; "
            "convert them with .long()"
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
        if not isinstance(input_pos, torch.Tensor) or str(input_pos.dtype) not in _INDEX_DTYPES:
            got = input_pos.dtype if isinstance(input_pos, torch.Tensor) else type(input_pos).__name__
            raise InvalidInputError(
                f"input_pos must be an integer torch.Tensor (int64 or int32) of cache positions, got {got}; "
                "e.g. torch.arange(start, start + tokens)"
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
        _check_consecutive(input_pos, first, last, cache_cursor)
        context = last + 1

    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor):
            raise InvalidInputError(
                f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}"
            )
        if attention_mask.is_complex():
            raise InvalidInputError(
                f"attention_mask must be real (bool, integer or floating point), got {attention_mask.dtype}; "
                "pass 1 for a token and 0 for padding"
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


def _check_consecutive(input_pos: torch.Tensor, first: int, last: int, cache_cursor: int | None) -> None:
    """One call writes consecutive slots, starting no later than the first slot not yet written."""
    import torch

    tokens = input_pos.shape[0]
    if last - first + 1 != tokens or not torch.equal(
        input_pos, torch.arange(first, last + 1, device=input_pos.device, dtype=input_pos.dtype)
    ):
        shown = input_pos.tolist() if tokens <= 8 else str(input_pos[:8].tolist())[:-1] + ", ...]"
        raise InvalidInputError(
            f"input_pos {shown} must be consecutive increasing cache slots, with no repeat, gap or step "
            f"back inside one call; pass torch.arange(start, start + {tokens})"
        )
    if cache_cursor is not None and first > cache_cursor:
        gap = f"slot {cache_cursor}" if first == cache_cursor + 1 else f"slots {cache_cursor} to {first - 1}"
        raise InvalidInputError(
            f"input_pos starts at {first}, but only slots [0, {cache_cursor}) of the cache have been "
            f"written since setup_caches(); {gap} would hold no keys. Continue "
            f"at {cache_cursor}, or go back to an earlier slot to overwrite from there"
        )


def _check_device(what: str, tensor: torch.Tensor, device: torch.device) -> None:
    same = tensor.device.type == device.type and (
        device.index is None or tensor.device.index in (None, device.index)
    )
    if not same:
        raise InvalidInputError(
            f"{what} is on {tensor.device} but the model is on {device}; move it with .to(model.device)"
        )


def check_cache_size(
    config: GPT2Config,
    max_batch_size: int,
    max_seq_length: int,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> None:
    """Raise :class:`zoo.InvalidInputError` unless ``setup_caches`` may allocate this cache.

    Besides the sizes themselves (positive ints, ``max_seq_length <=
    n_positions``), the cache's bytes (keys and values of every layer, in
    ``dtype``, float32 by default) must fit in the memory of ``device`` (the
    CPU's RAM by default): a cache that cannot fit is refused with its size,
    before the allocator is asked.
    """
    for name, value in (("max_batch_size", max_batch_size), ("max_seq_length", max_seq_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidInputError(f"setup_caches: {name}={value!r} must be a positive int")
    if max_seq_length > config.n_positions:
        raise InvalidInputError(
            f"setup_caches: max_seq_length={max_seq_length} exceeds n_positions={config.n_positions}; "
            f"no sequence can be longer than {config.n_positions} tokens"
        )
    itemsize = 4 if dtype is None else dtype.itemsize
    needed = 2 * config.n_layer * max_batch_size * max_seq_length * config.n_embd * itemsize  # keys and values
    memory, where = device_memory(device)
    if memory is not None and needed > memory:
        most = max(memory // (2 * config.n_layer * max_seq_length * config.n_embd * itemsize), 0)
        raise InvalidInputError(
            f"setup_caches({max_batch_size}, {max_seq_length}) needs a KV cache of {format_bytes(needed)}, "
            f"more than {where} {format_bytes(memory)}; lower max_batch_size"
            + (f" (at most {most} sequences of {max_seq_length} fit)" if most else "")
            + " or max_seq_length"
        )


def device_memory(device: torch.device | str | None) -> tuple[int | None, str]:
    """The memory of ``device`` in bytes (``None`` where it cannot be known), and words naming it.

    The CPU's (``device`` ``None`` or ``"cpu"``) is known without importing torch.
    """
    if device is None or device == "cpu" or getattr(device, "type", None) == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory,"
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows): the allocator will say
            return None, ""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        return torch.cuda.get_device_properties(index).total_memory, f"the memory of {dev} ({name}),"
    return None, ""  # another accelerator: its allocator will say


def format_bytes(n: int) -> str:
    """``n`` bytes in words: ``1.5 GiB``, ``3.7 TiB``, ``2.0 EiB``."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} EiB"


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` itself if it is an int in ``[0, 2**64)``, else :class:`zoo.InvalidInputError` saying so."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidInputError(
            f"{what}={seed!r:.40} must be an int in [0, 2**64), got {type(seed).__name__}; e.g. {what}=0"
        )
    if not 0 <= int(seed) < SEED_LIMIT:
        raise InvalidInputError(
            f"{what}={int(seed)} is outside [0, 2**64), the seeds torch's generators take; "
            f"reduce it, e.g. {what} % 2**64"
        )
    return int(seed)
