"""Fidelity: how far a variant strays from float32 GPT-2 on weights that learned something.

The ``learned`` and ``outliers`` presets, and :func:`measure`, are used by the
conformance harness's ``fidelity`` property and by ``zoo bench``.

Random weights are a poor judge of an approximate variant: their logits are
nearly flat, so a tiny error flips the top token, while the errors that
matter on a real checkpoint (a few activation channels hundreds of times
larger than the rest) never occur. The harness builds its own trained model
instead, offline and in seconds:

- **text**: the running Python's standard library, the ``*.py`` files at the
  top of ``sysconfig.get_paths()["stdlib"]`` (sorted, up to
  :data:`Recipe.max_chars` characters), tokenised with GPT-2's encoding; a
  file is held out when the SHA-256 of its name is divisible by
  :data:`Recipe.held_out_every`, so the split never depends on which other
  files exist;
- **vocabulary**: GPT-2's ``vocab_size - 1`` most frequent tokens of the
  training files keep an id each (by frequency), every other token becomes
  id 0; a 1,024-token head is a hundredth of the cost of 50,257;
- **model** (:data:`LEARNED_CONFIG`): GPT-2's architecture, 3 layers of
  width 96, trained with ``pure`` and AdamW from a fixed seed for
  :data:`Recipe.steps` steps on one thread (deterministic on a given
  machine and torch);
- **held-out windows**: :data:`Recipe.windows` windows of
  :data:`Recipe.context` tokens spread evenly over the held-out stream.

The weights are cached in :func:`zoo.cache_dir` (``$ZOO_CACHE``, else
``$XDG_CACHE_HOME/gpt2-zoo``, else ``~/.cache/gpt2-zoo``), keyed by the
recipe, the Python and the torch version; a read-only or missing cache only
costs the training again.

``outliers`` is ``learned`` with GPT-2's activation outliers planted in it
(:func:`plant_outliers`): in :data:`Recipe.outlier_channels` channels, the
inputs of every attention and MLP input projection and of every attention
output projection are :data:`Recipe.outlier_scale` times larger, and the
weights that read them that much smaller, so the function is the same (the
float32 reference's perplexity does not move) but a quantiser of activations
meets values in the hundreds, as it does on the real checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import platform
import sysconfig
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._cache import cache_dir
from ._config import GPT2Config
from ._errors import ZooError
from ._load import load
from ._tokenizer import get_tokenizer
from .weight_map import canonical_shapes

if TYPE_CHECKING:
    import torch

__all__ = [
    "LEARNED_CONFIG",
    "PRESETS",
    "Figures",
    "Preset",
    "Recipe",
    "figures_of",
    "get_preset",
    "measure",
    "plant_outliers",
]

log = logging.getLogger("zoo")

LEARNED_CONFIG = GPT2Config(vocab_size=1024, n_positions=128, n_embd=96, n_layer=3, n_head=4)


@dataclass(frozen=True)
class Recipe:
    """Everything the learned weights depend on (with the Python and torch versions): the cache key."""

    version: int = 1  # raise when the training code changes what it makes
    max_chars: int = 3_000_000  # of standard-library source read, in sorted file order
    held_out_every: int = 8
    steps: int = 300
    batch: int = 16
    context: int = 128
    lr: float = 3e-3
    seed: int = 0
    windows: int = 16  # held-out windows of ``context`` tokens: 2,032 predicted tokens
    outlier_channels: tuple[int, ...] = (7, 41, 77)
    outlier_scale: float = 500.0


RECIPE = Recipe()


class Figures(NamedTuple):
    """How faithful one model's next-token distributions are to the reference's on held-out text."""

    kl: float  # mean KL(reference || model), nats
    top1: float  # fraction of positions whose argmax agrees
    ppl: float  # the model's perplexity on the held-out tokens
    ppl_ratio: float  # over the reference's

    def as_dict(self) -> dict[str, float]:
        return self._asdict()


def measure(logits: torch.Tensor, reference: torch.Tensor, ids: torch.Tensor) -> Figures:
    """:class:`Figures` of ``logits`` against ``reference`` (both ``(B, T, V)``) predicting ``ids[:, 1:]``."""
    import torch.nn.functional as F

    lp = F.log_softmax(logits.double(), -1)[:, :-1]
    rp = F.log_softmax(reference.double(), -1)[:, :-1]
    targets = ids[:, 1:, None].to(lp.device)
    nll, ref_nll = -lp.gather(-1, targets).mean().item(), -rp.gather(-1, targets).mean().item()
    kl = (rp.exp() * (rp - lp)).sum(-1).mean().item()
    top1 = (lp.argmax(-1) == rp.argmax(-1)).double().mean().item()
    return Figures(kl=max(kl, 0.0), top1=top1, ppl=math.exp(nll), ppl_ratio=math.exp(nll - ref_nll))


class Preset(NamedTuple):
    """Weights to measure fidelity on, and the held-out text to measure it with."""

    name: str
    summary: str
    config: GPT2Config
    weights: dict[str, torch.Tensor]  # canonical, float32; never modify
    held_out: torch.Tensor  # (windows, context) int64 token ids


# -- text -----------------------------------------------------------------------------------
def _source_files(root: Path, max_chars: int) -> list[tuple[str, str]]:
    """``(name, text)`` of the ``*.py`` files at the top of ``root``, sorted, up to ``max_chars``."""
    out: list[tuple[str, str]] = []
    total = 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append((path.name, text))
        total += len(text)
        if total >= max_chars:
            break
    return out


def _held_out(name: str, every: int) -> bool:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % every == 0


class _Text(NamedTuple):
    train: torch.Tensor  # (N,) int64, in the small vocabulary
    held_out: torch.Tensor  # (M,)


def _text(recipe: Recipe, vocab_size: int) -> _Text:
    import torch

    root = Path(sysconfig.get_paths()["stdlib"])
    files = _source_files(root, recipe.max_chars)
    if not files:
        raise ZooError(f"no Python source under {root} to train the learned-weights preset on; "
                           "the harness needs the standard library's *.py files")
    tokenizer = get_tokenizer()
    encode, eot = tokenizer.encode_ordinary, tokenizer.eot_token  # source text may spell <|endoftext|>
    train: list[int] = []
    held: list[int] = []
    for name, text in files:
        (held if _held_out(name, recipe.held_out_every) else train).extend([*encode(text), eot])
    counts = Counter(train)
    kept = sorted(counts, key=lambda t: (-counts[t], t))[: vocab_size - 1]
    mapping = torch.zeros(max(*train, *held) + 1, dtype=torch.long)
    mapping[torch.tensor(kept)] = torch.arange(1, len(kept) + 1)
    return _Text(mapping[torch.tensor(train)], mapping[torch.tensor(held)])


def _windows(stream: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """``count`` windows of ``length`` tokens spread evenly over ``stream``."""
    import torch

    if stream.numel() < length:
        raise ZooError(f"the held-out text has {stream.numel()} tokens, fewer than one window of {length}")
    last = stream.numel() - length
    starts = [round(i * last / max(1, count - 1)) for i in range(count)]
    return torch.stack([stream[s: s + length] for s in starts])


# -- training -------------------------------------------------------------------------------
def _train(config: GPT2Config, data: torch.Tensor, recipe: Recipe) -> dict[str, torch.Tensor]:
    import torch
    import torch.nn.functional as F

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every run of this machine
    try:
        torch.manual_seed(recipe.seed)
        model: Any = load("pure", None, config=config, seed=recipe.seed)  # a torch module: trainable
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
            lr=recipe.lr, betas=(0.9, 0.95))
        generator = torch.Generator().manual_seed(recipe.seed)
        warmup = max(1, recipe.steps // 10)
        for step in range(recipe.steps):
            starts = torch.randint(data.numel() - recipe.context - 1, (recipe.batch,), generator=generator)
            batch = torch.stack([data[s: s + recipe.context + 1] for s in starts.tolist()])  # (B, T + 1)
            loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            done = max(0.0, (step - warmup) / max(1, recipe.steps - warmup))
            scale = (step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * done))
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * scale
            optimizer.step()
        model.eval()
        return {name: t.detach().float().contiguous() for name, t in model.export_weights().items()}
    finally:
        torch.set_num_threads(threads)


def _cache_file(recipe: Recipe) -> Path:
    import torch

    training = {k: v for k, v in asdict(recipe).items() if not k.startswith("outlier_")}  # what the weights hold
    key = repr((training, LEARNED_CONFIG, platform.python_version(), torch.__version__))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir("presets", f"learned-{digest}.safetensors")


def _learned_weights(config: GPT2Config, text: _Text, recipe: Recipe) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = _cache_file(recipe)
    if path.is_file():
        try:
            weights = load_file(str(path))
            if {k: tuple(t.shape) for k, t in weights.items()} != canonical_shapes(config):
                raise ValueError("its tensors are not this model's")
            return weights
        except (OSError, SafetensorError, ValueError) as exc:
            log.warning("ignoring the unreadable learned-weights cache %s (%s); training again", path, exc)
    log.info("training the learned-weights preset (%s steps, once per machine; cached in %s)",
             recipe.steps, path.parent)
    weights = _train(config, text.train, recipe)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        save_file(weights, str(partial))
        os.replace(partial, path)
    except OSError as exc:
        log.warning("could not cache the learned weights in %s (%s); they will be trained again next time",
                    path.parent, exc)
    return weights


# -- outliers -------------------------------------------------------------------------------
def plant_outliers(weights: dict[str, torch.Tensor], config: GPT2Config, channels: tuple[int, ...],
                   scale: float) -> dict[str, torch.Tensor]:
    """``weights`` with the inputs of the projections ``scale`` times larger in ``channels``, same function.

    For each block: LayerNorm 1 and 2 scale their gain and bias in
    ``channels`` (so ``c_attn`` and ``c_fc`` read outliers) and those weight
    columns shrink by as much; the value projection's output channels grow
    (so ``attn.c_proj`` reads outliers) and ``c_proj``'s columns shrink.
    Attention is linear in the values, so the model computes the same
    function up to rounding.
    """
    d = config.n_embd
    bad = [c for c in channels if not 0 <= c < d]
    if bad:
        raise ValueError(f"outlier channels {bad} are outside the model's width {d}")
    out = {name: t.clone() for name, t in weights.items()}
    idx = list(channels)
    v_rows = [2 * d + c for c in channels]  # c_attn's rows are q, k, v; head h's values are v's columns h*hs...
    for i in range(config.n_layer):
        p = f"h.{i}."
        for ln, reader in (("ln_1", "attn.c_attn"), ("ln_2", "mlp.c_fc")):
            out[p + ln + ".weight"][idx] *= scale
            out[p + ln + ".bias"][idx] *= scale
            out[p + reader + ".weight"][:, idx] /= scale
        out[p + "attn.c_attn.weight"][v_rows] *= scale
        out[p + "attn.c_attn.bias"][v_rows] *= scale
        out[p + "attn.c_proj.weight"][:, idx] /= scale
    return out


# -- the presets ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _presets() -> dict[str, Preset]:
    config, recipe = LEARNED_CONFIG, RECIPE
    text = _text(recipe, config.vocab_size)
    learned = _learned_weights(config, text, recipe)
    held_out = _windows(text.held_out, recipe.windows, recipe.context)
    outliers = plant_outliers(learned, config, recipe.outlier_channels, recipe.outlier_scale)
    return {
        "learned": Preset("learned", "a small GPT-2 trained here on the standard library's source", config,
                          learned, held_out),
        "outliers": Preset("outliers", f"the learned model with activations {recipe.outlier_scale:g}x larger in "
                           f"{len(recipe.outlier_channels)} channels at every projection's input "
                           "(same function), as on the real GPT-2 checkpoint", config, outliers, held_out),
    }


PRESETS = ("learned", "outliers")


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (built, or trained and cached, on first use)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return _presets()[name]


def figures_of(name: str, dtype: str, *, reference: str, device: str = "cpu", preset: str = "learned") -> Figures:
    """:class:`Figures` of variant ``name`` in ``dtype`` against ``reference`` in float32, on ``preset``.

    What ``zoo bench`` reports beside speed; the conformance harness's
    ``fidelity`` property measures the same and judges it against a budget.
    """
    import torch

    p = get_preset(preset)

    def logits(variant: str, dt: str, where: str) -> torch.Tensor:
        model = load(variant, p.weights, config=p.config, layout="canonical", dtype=dt, device=where)
        with torch.no_grad():
            return model(p.held_out.to(model.device))[..., : p.config.vocab_size].double().cpu()

    return measure(logits(name, dtype, device), logits(reference, "float32", "cpu"), p.held_out)
