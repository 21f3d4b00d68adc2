"""The training half of ``scripts/quantisation_perplexity.py``: a small GPT-2 trained with ``pure``.

``zoo.load("pure", None, config=...)`` and ``torch.optim.AdamW`` (warm-up,
then cosine decay; no weight decay on biases and LayerNorms) on random
windows of a token stream. The script imports it from beside itself; it is
not meant to be run on its own.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import zoo

__all__ = ["lr_at", "train"]


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over the first 10% of steps, then cosine decay to a tenth of ``lr``."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))


def train(config: zoo.GPT2Config, data: torch.Tensor, args: argparse.Namespace,
          progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """Train ``pure`` on random windows of ``data`` (``(N,)`` token ids); returns the model and a record.

    ``args``: the script's ``steps``, ``batch``, ``context``, ``lr``, ``seed``,
    ``threads`` and ``log_every``; ``progress`` gets a line every ``log_every`` steps.
    """
    torch.manual_seed(args.seed)
    model: Any = zoo.load("pure", None, config=config, seed=args.seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]  # matrices and embeddings; not biases or LayerNorms
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95),
    )
    generator = torch.Generator().manual_seed(args.seed)
    if data.numel() <= args.context + 1:
        raise SystemExit(f"error: {data.numel()} training tokens cannot fill a window of "
                         f"--context={args.context}; lower --context or raise --max-files")
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        starts = torch.randint(data.numel() - args.context - 1, (args.batch,), generator=generator)
        batch = torch.stack([data[s: s + args.context + 1] for s in starts.tolist()])  # (B, T + 1)
        logits = model(batch[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        optimizer.step()
        losses.append(loss.item())
        if step % args.log_every == 0 or step == args.steps - 1:
            elapsed = time.perf_counter() - start
            rate = (step + 1) * args.batch * args.context / elapsed
            progress(f"step {step:5d}/{args.steps}  loss {losses[-1]:.3f}  "
                     f"{rate:,.0f} tokens/s  {elapsed:.0f}s")
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]  # the last tenth, so one noisy batch does not decide
    record = {"steps": args.steps, "batch": args.batch, "context": args.context, "lr": args.lr,
              "seed": args.seed, "threads": args.threads, "initial_loss": losses[0],
              "final_loss": sum(tail) / len(tail), "losses": losses,
              "seconds": time.perf_counter() - start,
              "tokens_seen": args.steps * args.batch * args.context}
    return model, record
