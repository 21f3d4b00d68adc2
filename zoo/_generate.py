"""Text generation shared by every variant: greedy, temperature, top-k, top-p; batched, left-padded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import InvalidInputError
from ._inputs import check_seed
from ._interface import GPT2

if TYPE_CHECKING:
    import torch

__all__ = ["generate", "sampling_distribution", "stream"]


def _has_cache(model: GPT2) -> bool:
    return getattr(type(model), "setup_caches", None) is not GPT2.setup_caches


def _has_own_greedy(model: GPT2) -> bool:
    """Whether ``model`` decodes greedily by a loop of its own (:meth:`zoo.GPT2.generate_greedy`)."""
    return getattr(type(model), "generate_greedy", None) is not GPT2.generate_greedy


def _as_prompts(prompts: Any) -> list[list[int]]:
    """One list of int ids per prompt, from a tensor, a list of ids, or a list of lists."""
    import torch

    if isinstance(prompts, torch.Tensor):
        if prompts.is_floating_point() or prompts.is_complex() or prompts.dtype == torch.bool:
            raise InvalidInputError(f"prompt token ids must be integers, got a tensor of {prompts.dtype}")
        if prompts.dim() not in (1, 2):
            raise InvalidInputError(
                f"a prompt tensor must be 1-D [tokens] or 2-D [batch, tokens], got shape {list(prompts.shape)}"
            )
        return [row.tolist() for row in (prompts[None] if prompts.dim() == 1 else prompts)]
    if isinstance(prompts, (str, bytes)):
        raise InvalidInputError(
            "prompts are token ids, not text; encode it first: zoo.get_tokenizer().encode(text)"
        )
    if not _is_sequence(prompts):
        raise InvalidInputError(
            f"prompts must be token ids: a list of ints, a list of such lists, or a tensor; got "
            f"{type(prompts).__name__} {prompts!r:.40}"
        )
    rows = list(prompts)
    if rows and all(_is_id(t) for t in rows):
        rows = [rows]
    out = []
    for row in rows:
        if isinstance(row, torch.Tensor):
            row = row.reshape(-1).tolist()
        if not _is_sequence(row) or isinstance(row, (str, bytes)) or not all(_is_id(t) for t in row):
            raise InvalidInputError(
                f"each prompt must be a sequence of int token ids, got {row!r:.80}"
            )
        out.append([int(t) for t in row])
    return out


def _is_sequence(value: Any) -> bool:
    """Ids in order: a list, a tuple, a NumPy array, a generator...; not a set, a dict, an int or None."""
    from collections.abc import Iterable, Mapping, Set

    return isinstance(value, Iterable) and not isinstance(value, (Mapping, Set))


def _is_id(token: Any) -> bool:
    import numbers

    import torch

    if isinstance(token, torch.Tensor):
        return token.dim() == 0 and not token.is_floating_point() and token.dtype != torch.bool
    return isinstance(token, numbers.Integral) and not isinstance(token, bool)


def _filter(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p, in that order and with the arithmetic Hugging Face uses.

    Filtered-out logits become ``-inf``; at least one token always survives.
    """
    import torch

    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # mass of each token and all below it
        drop_sorted = cumulative <= 1 - top_p  # the least likely tokens holding at most 1 - top_p
        drop_sorted[..., -1:] = False  # always keep the likeliest token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sampling_distribution(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """The distribution :func:`stream` samples the next token from: ``logits [B, V]`` -> probabilities ``[B, V]``.

    Temperature, then top-k, then top-p (Hugging Face's order and arithmetic),
    then a softmax; filtered-out tokens have probability 0. ``temperature`` must
    be positive (``0``, greedy, never samples).

    A model with a sampler of its own defines a method of this name and
    signature (``model.sampling_distribution(logits, temperature, top_k,
    top_p)``); :func:`stream` then samples from that, and the conformance
    harness judges it against Hugging Face's logits warpers.
    """
    return _filter(logits, temperature, top_k, top_p).softmax(dim=-1)


def _sampler(model: GPT2) -> Any:
    """The model's own ``sampling_distribution`` where it defines one, else the shared one."""
    own = getattr(model, "sampling_distribution", None)
    return own if callable(own) else sampling_distribution


def _check_params(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                  seed: int | None) -> None:
    if seed is not None:
        check_seed(seed)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise InvalidInputError(f"max_new_tokens={max_new_tokens!r} must be a non-negative int")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        0 <= temperature < float("inf")
    ):
        raise InvalidInputError(f"temperature={temperature!r} must be a finite number >= 0 (0 means greedy)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidInputError(f"top_k={top_k!r} must be an int >= 1 (or None for no top-k)")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise InvalidInputError(f"top_p={top_p!r} must be in (0, 1] (or None for no top-p)")


def stream(
    model: GPT2,
    prompts: Sequence[Sequence[int]] | Sequence[int] | torch.Tensor,
    max_new_tokens: int = 32,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_token_id: int | None = None,
    stop_at_eos: bool = True,
    use_cache: bool | None = None,
) -> Iterator[list[int | None]]:
    """Yield, at each step, every sequence's new token (``None`` once a sequence has stopped).

    :param prompts: token ids: one prompt (a list of ints or a 1-D tensor) or
        several (a list of lists, or a 2-D tensor whose rows are used as they
        are). Prompts of different lengths are left-padded and masked, as
        Hugging Face's ``generate`` does.
    :param temperature: ``0`` is greedy decoding; otherwise logits are divided
        by it, then ``top_k`` and ``top_p`` filter them, and a token is sampled
        (:func:`sampling_distribution`, or the model's own method of that name).
    :param seed: seeds the sampling: an int in ``[0, 2**64)`` (``None``: drawn from torch's global RNG).
    :param eos_token_id: the config's ``<|endoftext|>`` by default. A sequence
        stops after it when ``stop_at_eos``; generation ends when every
        sequence has stopped, or after ``max_new_tokens`` steps.
    :param use_cache: use the model's KV cache (``None``: when it has one).
        ``False`` runs a full forward per token.

    A model without a KV cache that has a greedy loop of its own
    (:meth:`zoo.GPT2.generate_greedy`, such as CTranslate2's) decodes through
    that loop when ``temperature`` is ``0`` and ``use_cache`` is ``None``; the
    tokens are the same, up to rounding, as its full forwards give.

    Arguments are checked at once, before the first step; the model runs
    without autograd, and only while this generator is advanced (a model's own
    loop may run ahead of it).
    """
    _check_params(max_new_tokens, temperature, top_k, top_p, seed)
    rows = _as_prompts(prompts)
    config = model.config
    if not rows or any(len(r) == 0 for r in rows):
        raise InvalidInputError(
            f"every prompt needs at least one token; start an empty one with <|endoftext|> "
            f"(id {config.eos_token_id})"
        )
    longest = max(len(r) for r in rows)
    if longest + max_new_tokens > config.n_positions:
        raise InvalidInputError(
            f"prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds "
            f"n_positions={config.n_positions}; lower max_new_tokens or shorten the prompt"
        )
    bad = [t for r in rows for t in r if not 0 <= t < config.vocab_size]
    if bad:
        raise InvalidInputError(
            f"prompt token id {bad[0]} is out of range [0, {config.vocab_size}) for vocab_size={config.vocab_size}"
        )
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    if not 0 <= eos < config.vocab_size:
        raise InvalidInputError(f"eos_token_id={eos} is out of range [0, {config.vocab_size})")
    cached = _has_cache(model) if use_cache is None else bool(use_cache)
    if temperature == 0 and use_cache is None and not cached and _has_own_greedy(model):
        return _own_steps(model, rows, max_new_tokens, eos if stop_at_eos else None)
    return _steps(model, rows, longest, max_new_tokens, temperature, top_k, top_p, seed, eos,
                  stop_at_eos, cached)


def _steps(model: GPT2, rows: list[list[int]], longest: int, max_new_tokens: int, temperature: float,
           top_k: int | None, top_p: float | None, seed: int | None, eos: int, stop_at_eos: bool,
           cached: bool) -> Iterator[list[int | None]]:
    import torch

    if max_new_tokens == 0:
        return
    device = model.device
    vocab_size = model.config.vocab_size
    B = len(rows)
    ids = torch.full((B, longest + max_new_tokens), eos, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)  # 1 = token, 0 = left padding
    for b, row in enumerate(rows):
        ids[b, longest - len(row) : longest] = torch.tensor(row, dtype=torch.long)
        mask[b, longest - len(row) :] = 1
    padded = bool((mask[:, :longest] == 0).any())
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    sampler = _sampler(model)

    if cached:
        with torch.no_grad():
            model.setup_caches(B, longest + max_new_tokens)
    for step in range(max_new_tokens):
        end = longest + step  # tokens known so far
        # autograd off for this step only: the caller's code between steps runs in its own mode
        with torch.no_grad():
            if cached:
                start = 0 if step == 0 else end - 1  # prefill, then one token at a time
                logits = model(ids[:, start:end], attention_mask=mask[:, :end] if padded else None,
                               input_pos=torch.arange(start, end, device=device))
            else:
                logits = model(ids[:, :end], attention_mask=mask[:, :end] if padded else None)
            last = logits[:, -1, :vocab_size].float()  # (B, V)
            if temperature == 0:
                token = last.argmax(dim=-1)
            else:
                probs = sampler(last, temperature, top_k, top_p)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            token = token.masked_fill(finished, eos)
            ids[:, end] = token
        yield [None if done else int(t) for t, done in zip(token.tolist(), finished.tolist(), strict=True)]
        if stop_at_eos:
            finished |= token == eos
            if bool(finished.all()):
                return


def _own_steps(model: GPT2, rows: list[list[int]], max_new_tokens: int,
               stop_token: int | None) -> Iterator[list[int | None]]:
    if max_new_tokens > 0:
        yield from model.generate_greedy(rows, max_new_tokens, stop_token=stop_token)


def generate(
    model: GPT2,
    prompts: Sequence[Sequence[int]] | Sequence[int] | torch.Tensor,
    max_new_tokens: int = 32,
    **kwargs: Any,
) -> list[list[int]]:
    """The new tokens of every prompt (``<|endoftext|>`` included when it stopped one).

    Takes the same arguments as :func:`stream`.
    """
    rows = _as_prompts(prompts)
    out: list[list[int]] = [[] for _ in rows]
    for step in stream(model, rows, max_new_tokens, **kwargs):
        for b, token in enumerate(step):
            if token is not None:
                out[b].append(token)
    return out
