"""Text generation shared by every variant: greedy, temperature, top-k, top-p; batched, left-padded."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import InvalidInputError
from ._interface import GPT2

if TYPE_CHECKING:
    import torch

__all__ = ["generate", "stream"]


def _has_cache(model: GPT2) -> bool:
    return getattr(type(model), "setup_caches", None) is not GPT2.setup_caches


def _as_prompts(prompts: Any) -> list[list[int]]:
    import torch

    if isinstance(prompts, torch.Tensor):
        if prompts.dim() == 1:
            prompts = prompts[None]
        return [row.tolist() for row in prompts]
    prompts = list(prompts)
    if prompts and all(isinstance(t, int) for t in prompts):
        return [prompts]
    return [list(p) for p in prompts]


def _filter(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p, in that order (as Hugging Face applies them)."""
    import torch

    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = before > top_p  # keeps the smallest set reaching top_p, and always the first
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _check_params(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise InvalidInputError(f"max_new_tokens={max_new_tokens!r} must be a non-negative int")
    if temperature < 0:
        raise InvalidInputError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if top_k is not None and top_k < 1:
        raise InvalidInputError(f"top_k={top_k} must be >= 1 (or None for no top-k)")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidInputError(f"top_p={top_p} must be in (0, 1] (or None for no top-p)")


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

    Prompts of different lengths are left-padded and masked. ``temperature=0``
    is greedy decoding. A sequence stops after ``eos_token_id`` (the config's
    ``<|endoftext|>`` by default) when ``stop_at_eos``; generation stops when
    every sequence has stopped or after ``max_new_tokens``. The KV cache is used
    when the model has one (``use_cache=None``).
    """
    import torch

    _check_params(max_new_tokens, temperature, top_k, top_p)
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
    if max_new_tokens == 0:
        return
    eos = config.eos_token_id if eos_token_id is None else eos_token_id
    device = model.device
    B = len(rows)
    ids = torch.full((B, longest + max_new_tokens), eos, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        ids[b, longest - len(row) : longest] = torch.tensor(row, dtype=torch.long)
        mask[b, longest - len(row) : longest + max_new_tokens] = 1
    padded = bool((mask[:, :longest] == 0).any())
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    cached = _has_cache(model) if use_cache is None else use_cache
    finished = torch.zeros(B, dtype=torch.bool, device=device)

    with torch.inference_mode():
        if cached:
            model.setup_caches(B, longest + max_new_tokens)
        for step in range(max_new_tokens):
            end = longest + step  # tokens known so far
            if cached:
                start = 0 if step == 0 else end - 1
                logits = model(ids[:, start:end], attention_mask=mask[:, :end] if padded else None,
                               input_pos=torch.arange(start, end, device=device))
            else:
                logits = model(ids[:, :end], attention_mask=mask[:, :end] if padded else None)
            last = logits[:, -1, : config.vocab_size].float()  # never sample padded vocabulary
            if temperature == 0:
                token = last.argmax(dim=-1)
            else:
                probs = _filter(last, temperature, top_k, top_p).softmax(dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            token = token.masked_fill(finished, eos)
            ids[:, end] = token
            yield [None if done else int(t) for t, done in zip(token.tolist(), finished.tolist())]
            if stop_at_eos:
                finished |= token == eos
                if bool(finished.all()):
                    return


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
