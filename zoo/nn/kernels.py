"""The quantised layers of the zoo's schemes: weight-only int8 and int4 Linears, and the int8 tied embedding.

gpt-fast's two steps: quantise a float tensor (:func:`quantise_int8`,
:func:`quantise_int4`), and a module that holds the result and multiplies by
it (:class:`Int8Linear`, :class:`Int4Linear`). :func:`zoo.nn.quantise_` swaps
them into a :class:`zoo.nn.GPT`; the table in :mod:`zoo.nn.schemes` says
which scheme uses which.

What a quantised Linear offers the model (the whole contract):
``cls(in_features, out_features, bias=True)``, ``load(weight)`` (quantise a
float ``[out, in]`` weight and keep it), a ``bias`` buffer, ``dequantised(dtype)``
(the weight it computes with) and ``forward``. Unlike gpt-fast's int8 Linear,
every one keeps its bias.

:class:`TiedEmbedding` holds GPT-2's token embedding once, as int8 with one
scale per vocabulary row, and serves both the lookup (gathered rows
dequantised) and the logits (:class:`TiedHead`: the same int8 tensor in
``_weight_int8pack_mm``, since a row scale of ``wte`` is an output-channel
scale of ``lm_head``). The vocabulary is never padded, so no padded id can be
returned or sampled.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DENSE_FROM_ROWS",
    "INT4_GROUP",
    "Int4Linear",
    "Int8Linear",
    "TiedEmbedding",
    "TiedHead",
    "quantise_int4",
    "quantise_int8",
    "unpack_int4",
]

ACTIVATIONS = torch.bfloat16  # the CPU kernels are fast with bfloat16 activations, slow with float32
INT8_K_MULTIPLE = 16  # _weight_int8pack_mm on the CPU reads garbage (or crashes) unless K % 16 == 0
INT4_GROUP = 32  # weights per (scale, zero) pair along K; the CPU kernel takes 32, 64, 128 or 256
INT4_N_MULTIPLE = 16  # _convert_weight_to_int4pack_for_cpu needs N % 16 == 0
# From this many rows (a prefill) a Linear dequantises its weight to bfloat16 and runs a dense matmul:
# oneDNN's bfloat16 GEMM (AMX where the CPU has it) is about 8x faster than the weight-only kernels
# at 1024 rows on GPT-2 124M's shapes, which are made for a few rows (2-core Xeon, 2 threads).
DENSE_FROM_ROWS = 128


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_last(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` with its last dimension zero-padded to ``size`` (no copy when it already has it)."""
    return x if x.size(-1) == size else F.pad(x, (0, size - x.size(-1)))


# -- step 1: quantise ----------------------------------------------------------------------
def quantise_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w [N, K]`` -> ``(q int8 [N, K], scales bfloat16 [N])`` with ``w ~ q * scales[:, None]``.

    Symmetric, one scale per row (output channel). The scale is rounded to
    bfloat16 (the kernel's dtype) before ``q`` is computed from it, so the
    error is at most half a step: ``|w - q * s| <= s / 2``.
    """
    w = w.float()
    scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).to(ACTIVATIONS)
    q = torch.round(w / scales.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


def quantise_int4(w: torch.Tensor, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """``w [N, K]`` (``K % group == 0``) -> ``(q int32 [N, K] in 0..15, scales_and_zeros bfloat16 [K/group, N, 2])``.

    Asymmetric, one (scale, zero) per ``group`` weights of a row, in the layout
    of ``_weight_int4pack_mm_for_cpu``: ``w ~ (q - 8) * scale + zero``. Scale
    and zero are rounded to bfloat16 before ``q`` is computed from them.
    """
    N, K = w.shape
    g = w.float().reshape(N, K // group, group)  # (N, groups, group)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)  # (N, groups)
    scales = ((hi - lo) / 15).clamp_min(1e-6).to(ACTIVATIONS)
    zeros = (lo + 8 * scales.float()).to(ACTIVATIONS)
    q = torch.round((g - zeros.float()[..., None]) / scales.float()[..., None] + 8).clamp(0, 15)
    scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()  # (groups, N, 2)
    return q.reshape(N, K).to(torch.int32), scales_and_zeros


def unpack_int4(packed: torch.Tensor, n: int, k: int) -> torch.Tensor | None:
    """``q [n, k]`` (uint8, 0..15) from ``_convert_weight_to_int4pack_for_cpu``'s output, or ``None``.

    The layout, as torch 2.13 writes it for ``n % 64 == 0``: blocks of 64 output
    rows, each ``[k, 32]`` bytes; byte ``[j, c]`` of a block holds row ``c``'s
    weight ``j`` in its low nibble and row ``c + 32``'s in its high one. Other
    shapes give ``None``; :meth:`Int4Linear.load` checks the result against the
    weights it packed, so a layout that changes is never misread.
    """
    if n % 64 or packed.numel() != n * k // 2:
        return None
    blocks = packed.reshape(n // 64, k, 32)  # (row blocks, k, 32)
    q = torch.cat([blocks & 15, blocks >> 4], dim=2)  # (row blocks, k, 64)
    return q.transpose(1, 2).reshape(n, k)


# -- step 2: the modules swapped in --------------------------------------------------------
class Int8Linear(nn.Module):
    """``y = x @ W.T + b`` with ``W`` int8 per output channel; ``K`` zero-padded to the kernel's multiple."""

    weight: torch.Tensor  # (N, Kp) int8
    scales: torch.Tensor  # (N,) bfloat16
    bias: torch.Tensor | None  # (N,) bfloat16

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.k_padded = _round_up(in_features, INT8_K_MULTIPLE)
        self.register_buffer("weight", torch.zeros(out_features, self.k_padded, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=ACTIVATIONS))
        self.register_buffer("bias", torch.zeros(out_features, dtype=ACTIVATIONS) if bias else None)

    def load(self, w: torch.Tensor) -> None:
        q, scales = quantise_int8(_pad_last(w.to(self.weight.device), self.k_padded))
        self.weight.copy_(q)
        self.scales.copy_(scales)

    def dequantised(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight ``[out_features, in_features]`` the layer computes with, rounded once to ``dtype``."""
        return (self.weight.to(dtype) * self.scales.to(dtype)[:, None])[:, : self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, K = x.shape
        x2 = x.reshape(-1, K).to(ACTIVATIONS)  # (M, K)
        if x2.size(0) >= DENSE_FROM_ROWS:
            return F.linear(x2, self.dequantised(ACTIVATIONS), self.bias).view(*lead, self.out_features)
        y = torch.ops.aten._weight_int8pack_mm(_pad_last(x2, self.k_padded), self.weight, self.scales)  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)


class Int4Linear(nn.Module):
    """``y = x @ W.T + b`` with ``W`` int4 in groups along ``K``; ``K`` and ``N`` padded, the output sliced."""

    weight: torch.Tensor  # (Np, Kp / 2) uint8, the kernel's packed layout
    scales_and_zeros: torch.Tensor  # (Kp / group, Np, 2) bfloat16
    bias: torch.Tensor | None  # (N,) bfloat16

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.k_padded = _round_up(in_features, INT4_GROUP)
        self.n_padded = _round_up(out_features, INT4_N_MULTIPLE)
        packed = torch.zeros(self.n_padded, self.k_padded // 2, dtype=torch.uint8)  # two weights a byte
        self.register_buffer("weight", packed)
        self.register_buffer("scales_and_zeros",
                             torch.zeros(self.k_padded // INT4_GROUP, self.n_padded, 2, dtype=ACTIVATIONS))
        self.register_buffer("bias", torch.zeros(out_features, dtype=ACTIVATIONS) if bias else None)
        self.unpackable = False  # whether unpack_int4 reads the kernel's layout here; set by load()

    def load(self, w: torch.Tensor) -> None:
        w = _pad_last(w.to(self.weight.device).float(), self.k_padded)
        w = F.pad(w, (0, 0, 0, self.n_padded - self.out_features))  # (Np, Kp): zero rows, sliced off
        q, scales_and_zeros = quantise_int4(w)
        self.weight.copy_(torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.scales_and_zeros.copy_(scales_and_zeros)
        # the layout is the kernel's: read it directly only where it is the one unpack_int4 knows
        unpacked = unpack_int4(self.weight, self.n_padded, self.k_padded)
        self.unpackable = unpacked is not None and torch.equal(unpacked, q.to(torch.uint8))

    def dequantised(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight ``[out_features, in_features]``: ``(q - 8) * scale + zero``, rounded once to ``dtype``.

        Where :func:`unpack_int4` does not know the kernel's packed layout, the
        weight is read back through the kernel itself: multiplying the identity
        by it in float32 gives the same values, at the cost of a matmul.
        """
        N, K = self.n_padded, self.k_padded
        unpacked = unpack_int4(self.weight, N, K) if self.unpackable else None
        if unpacked is None:
            eye = torch.eye(K, device=self.weight.device)
            w = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.weight, INT4_GROUP,
                                                           self.scales_and_zeros.float()).T  # (Np, Kp)
        else:
            scales, zeros = self.scales_and_zeros.float().permute(2, 1, 0)  # each (Np, Kp / group)
            q = unpacked.view(N, K // INT4_GROUP, INT4_GROUP).float() - 8  # (Np, groups, group)
            w = (q * scales[..., None] + zeros[..., None]).view(N, K)
        return w[: self.out_features, : self.in_features].to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, K = x.shape
        x2 = x.reshape(-1, K).to(ACTIVATIONS)  # (M, K)
        if x2.size(0) >= DENSE_FROM_ROWS and self.unpackable:
            return F.linear(x2, self.dequantised(ACTIVATIONS), self.bias).view(*lead, self.out_features)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(_pad_last(x2, self.k_padded), self.weight, INT4_GROUP,
                                                       self.scales_and_zeros)  # (M, Np)
        y = y[:, : self.out_features]  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)


class TiedEmbedding(Int8Linear):
    """GPT-2's token embedding, stored once as int8 ``[vocab_size, n_embd]`` with one scale per row.

    ``forward(ids)`` looks rows up (``wte``); :meth:`logits` multiplies by the
    same tensor (``lm_head``): a row scale of the embedding is an
    output-channel scale of the head. The vocabulary is never padded, so no
    padded id can be returned or sampled.
    """

    def __init__(self, vocab_size: int, n_embd: int) -> None:
        super().__init__(n_embd, vocab_size, bias=False)  # lm_head has no bias

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight[ids][..., : self.in_features]  # (B, T, C) int8
        return rows.to(ACTIVATIONS) * self.scales[ids][..., None]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, n_embd]`` -> ``logits [B, T, vocab_size]``: the int8 Linear's own forward."""
        return super().forward(x)


class TiedHead(nn.Module):
    """``lm_head``: the logits through the token embedding's own int8 tensor (the tie)."""

    def __init__(self, embedding: TiedEmbedding) -> None:
        super().__init__()
        self.embedding = embedding  # the very module registered as wte, not a copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding.logits(x)
