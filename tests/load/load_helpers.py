"""What the ``zoo.load`` tests share: a small config, the Hugging Face reference on it, and its logits."""

from __future__ import annotations

import torch
from transformers import GPT2LMHeadModel

from zoo import GPT2Config

CONFIG = GPT2Config(vocab_size=97, n_positions=16, n_embd=32, n_layer=2, n_head=4)
VARIANTS = ["pure", "hf"]
ATOL = 1e-5  # float32 max-abs logit error against Hugging Face, as the issue asks


def reference_model(config: GPT2Config, seed: int) -> GPT2LMHeadModel:
    """A random ``GPT2LMHeadModel`` with eager attention in eval mode; every tensor perturbed."""
    torch.manual_seed(seed)
    hf_config = config.to_hf()
    hf_config._attn_implementation = "eager"
    model = GPT2LMHeadModel(hf_config).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a mis-mapped one shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out
