"""``GPT2Config``: the shape of a GPT-2 model, its presets, and conversion to and from Hugging Face."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    import transformers

__all__ = ["PRESETS", "GPT2Config"]

EOT_TOKEN_ID = 50256  # <|endoftext|> in the GPT-2 vocabulary
#: Largest size a config accepts: every format stores sizes as (u)int32, and no GPT-2 comes near it.
MAX_SIZE = 2**31 - 1


@dataclass(frozen=True)
class GPT2Config:
    """The hyper-parameters of a GPT-2 model. Defaults are GPT-2 small (124M)."""

    vocab_size: int = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
    n_positions: int = 1024  # longest sequence; size of the position embedding
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # std of the normal used for random initialisation

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                problems.append(f"{name}={value!r} must be an int")
            elif int(value) <= 0:
                problems.append(f"{name}={value} must be positive")
            elif int(value) > MAX_SIZE:
                problems.append(f"{name}={value} is beyond any GPT-2 (at most {MAX_SIZE}, what int32 holds)")
            else:  # NumPy and other integers become plain ints, so configs compare and hash alike
                object.__setattr__(self, name, int(value))
        if not problems and self.n_embd % self.n_head:
            near = sorted(_divisors(self.n_embd), key=lambda h: abs(h - self.n_head))[:3]
            problems.append(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"choose n_head from {sorted(near)} or change n_embd"
            )
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < 1:
            problems.append(f"layer_norm_epsilon={eps!r} must be a float in (0, 1); GPT-2 uses 1e-5")
        std = self.initializer_range
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not (std >= 0 and math.isfinite(std)):
            problems.append(f"initializer_range={std!r} must be a finite float >= 0; GPT-2 uses 0.02")
        if problems:
            raise ConfigError("invalid GPT2Config: " + "; ".join(problems))
        object.__setattr__(self, "layer_norm_epsilon", float(eps))
        object.__setattr__(self, "initializer_range", float(std))

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def eos_token_id(self) -> int:
        """``<|endoftext|>`` (50256), or the last id for vocabularies too small to hold it."""
        return EOT_TOKEN_ID if self.vocab_size > EOT_TOKEN_ID else self.vocab_size - 1

    @property
    def n_params(self) -> int:
        """Parameters counted once (``lm_head`` is tied to ``wte``): the sizes of ``zoo.weight_map.SPEC``, summed."""
        c = self.n_embd
        # per block: c_attn 3C^2 + 3C, attn.c_proj C^2 + C, mlp.c_fc 4C^2 + 4C, mlp.c_proj 4C^2 + C, two norms 4C
        block = 12 * c * c + 13 * c
        return (self.vocab_size + self.n_positions) * c + self.n_layer * block + 2 * c  # embeddings, blocks, ln_f

    @classmethod
    def preset(cls, name: str) -> GPT2Config:
        """One of ``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl`` (an ``openai-community/`` prefix is allowed)."""
        key = name.removeprefix("openai-community/")
        if key not in PRESETS:
            close = difflib.get_close_matches(key, PRESETS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown preset {name!r}; {hint}choose one of {', '.join(PRESETS)}")
        return PRESETS[key]

    def replace(self, **changes: Any) -> GPT2Config:
        return dataclasses.replace(self, **changes)

    # -- Hugging Face -------------------------------------------------------------
    @classmethod
    def from_hf(cls, hf: transformers.GPT2Config | dict[str, Any]) -> GPT2Config:
        """From a ``transformers.GPT2Config`` or its ``config.json`` dict.

        Settings that change GPT-2's arithmetic (another activation, unscaled or
        layer-scaled attention, a non-default MLP width, cross-attention, an
        untied ``lm_head``) are refused rather than ignored. Dropout and
        ``reorder_and_upcast_attn`` (which only changes rounding) are not part
        of the shape and are dropped.
        """
        if isinstance(hf, dict):
            d = hf
        elif callable(getattr(hf, "to_dict", None)):
            d = hf.to_dict()
        else:
            raise ConfigError(
                f"a GPT-2 config is a JSON object (a dict) or a transformers.GPT2Config, not a "
                f"{type(hf).__name__} ({hf!r:.60})"
            )
        model_type = d.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ConfigError(f"this config describes a {model_type!r} model, not 'gpt2'")
        unsupported = []
        if d.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            unsupported.append(f"activation_function={d['activation_function']!r} (GPT-2 uses 'gelu_new')")
        n_embd = d.get("n_embd", 768)
        wide = 4 * n_embd if isinstance(n_embd, int) else None  # a bad n_embd is named below
        if wide is not None and d.get("n_inner") not in (None, wide):
            unsupported.append(f"n_inner={d['n_inner']} (GPT-2 uses 4 * n_embd)")
        if not d.get("scale_attn_weights", True):
            unsupported.append("scale_attn_weights=False")
        if d.get("scale_attn_by_inverse_layer_idx", False):
            unsupported.append("scale_attn_by_inverse_layer_idx=True")
        if d.get("add_cross_attention", False):
            unsupported.append("add_cross_attention=True")
        if not d.get("tie_word_embeddings", True):
            unsupported.append("tie_word_embeddings=False (GPT-2 ties lm_head to wte)")
        if unsupported:
            raise ConfigError(
                "unsupported GPT-2 config: " + ", ".join(unsupported)
                + "; the zoo's variants implement GPT-2 exactly and cannot honour these settings"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: d[k] for k in names if k in d})

    def to_hf(self, **overrides: Any) -> transformers.GPT2Config:
        """A ``transformers.GPT2Config`` with dropout off and matching special tokens."""
        import transformers

        kwargs: dict[str, Any] = dict(
            dataclasses.asdict(self),
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=self.eos_token_id,
            eos_token_id=self.eos_token_id,
        )
        kwargs.update(overrides)
        return transformers.GPT2Config(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> GPT2Config:
        """From a Hugging Face ``config.json``."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise ConfigError(f"cannot read GPT-2 config {os.fspath(path)!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{os.fspath(path)!r} does not hold a JSON object")
        try:
            return cls.from_hf(data)
        except ConfigError as exc:
            raise ConfigError(f"{os.fspath(path)!r}: {exc}") from exc


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


PRESETS: dict[str, GPT2Config] = {
    "gpt2": GPT2Config(),
    "gpt2-medium": GPT2Config(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": GPT2Config(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": GPT2Config(n_embd=1600, n_layer=48, n_head=25),
}
