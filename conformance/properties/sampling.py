"""``sampling``: the distribution generation samples from is Hugging Face's, for every temperature, top-k and top-p.

The variant's sampler (:func:`zoo.sampling_distribution`, or the model's own
``sampling_distribution`` where it defines one) is fed the variant's
last-position logits and compared with Hugging Face's logits warpers
(``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper``, in
the order ``generate`` applies them, then a softmax):

- on the same logits: the same support (the tokens that may be drawn; a token
  Hugging Face keeps in float32 or in float64 arithmetic), and probabilities
  within the bound the warpers' own float32 error sets;
- on Hugging Face's float64 logits (exact variants; approximate ones have
  their logits judged by ``logits``): the logits at the sampled position
  within the variant's tolerances, and where the two supports agree, the
  probabilities too. A token within that tolerance of a filter's boundary may
  fall on either side of it; its side is judged on the variant's own logits;
- seeded: the first token ``zoo.generate`` samples with ``seed`` is the one
  drawn from that distribution by a generator seeded alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import given

import zoo

from .. import pinned
from .. import strategies as s
from .framework import Built, Context, id_tensor, references

if TYPE_CHECKING:
    import torch

__all__ = ["build", "hf_distribution"]

AXES = ("row", "token")


def hf_distribution(logits: torch.Tensor, temperature: float, top_k: int | None,
                    top_p: float | None) -> torch.Tensor:
    """Hugging Face's warpers on ``logits [B, V]``, as ``generate`` configures them, then a softmax."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = TemperatureLogitsWarper(float(temperature))(None, logits.clone())
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p is not None and top_p < 1.0:  # generate adds no TopPLogitsWarper for top_p = 1
        scores = TopPLogitsWarper(float(top_p))(None, scores)
    return scores.softmax(dim=-1)


def _support_difference(kept: torch.Tensor, hf32: torch.Tensor, hf64: torch.Tensor) -> tuple[int, int] | None:
    """The first (row, token) whose membership of the support differs from Hugging Face's in both precisions."""
    import torch

    wrong = (kept != (hf32 > 0)) & (kept != (hf64 > 0))
    if not bool(wrong.any()):
        return None
    b, t = (int(i) for i in torch.nonzero(wrong)[0])
    return b, t


def build(ctx: Context) -> Built:
    judge = ctx.judge("sampling")

    @given(case=s.sampling_cases(ctx.configs(min_positions=2)))
    def sampling(case: s.SamplingCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        V = case.config.vocab_size
        ids = id_tensor(case.ids, str(model.device))
        params: dict[str, Any] = {"temperature": case.temperature, "top_k": case.top_k, "top_p": case.top_p}
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        own = callable(getattr(model, "sampling_distribution", None))
        sampler = model.sampling_distribution if own else zoo.sampling_distribution  # type: ignore[attr-defined]
        with torch.no_grad():  # the call zoo.generate makes (use_cache=False), and what it samples from
            last = model(ids)[:, -1, :V].float()
            probs = sampler(last, case.temperature, case.top_k, case.top_p)
        actual = probs.double().cpu()
        logits = last.cpu()
        hf32 = hf_distribution(logits, **params).double()
        hf64 = hf_distribution(logits.double(), **params)
        kept = actual > 0
        whose = "the model's own" if own else "the shared"
        ctx.note(f"{whose} sampler ({shown}) keeps "
                 f"{kept.sum(-1).tolist()} tokens per row, Hugging Face's warpers {(hf64 > 0).sum(-1).tolist()}")
        diff = _support_difference(kept, hf32, hf64)
        if diff is not None:
            b, t = diff
            rank = int((logits[b] > logits[b, t]).sum())  # how many tokens have a larger logit
            verb = "keeps" if bool(kept[b, t]) else "drops"
            judge.fail(f"the sampling distribution ({shown}) {verb} token {t} (row {b}, logit rank {rank}), "
                       f"which Hugging Face's warpers {'drop' if verb == 'keeps' else 'keep'} on the same logits; "
                       f"support {int(kept[b].sum())} tokens, Hugging Face's {int((hf64[b] > 0).sum())}",
                       float(actual[b, t]), float(hf64[b, t]))
        judge.assert_arithmetic(f"probabilities of the sampling distribution ({shown}) vs Hugging Face's warpers "
                                "on the same logits", actual, hf64, hf_dtype=hf32, hf64=hf64, dtype="float32",
                                axes=AXES)

        tokens = zoo.generate(model, [list(row) for row in case.ids], 1, seed=case.seed, use_cache=False,
                              stop_at_eos=False, **params)
        generator = torch.Generator(device=model.device).manual_seed(case.seed)
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(-1).tolist()
        if [row[0] for row in tokens] != drawn:
            judge.fail(f"zoo.generate with seed={case.seed} ({shown}) samples other tokens than a generator seeded "
                       "alike draws from the model's sampling distribution", [row[0] for row in tokens], drawn)

        if not ctx.caps.exact:
            return  # approximate logits: judged against their declared bounds by `logits`
        ref = references(case.config, case.init, ctx.dtype, id_tensor(case.ids))
        ref64, ref_dt = ref["hf64"][:, -1], ref["hf_dtype"][:, -1]
        judge.assert_close("logits at the sampled (last) position", logits.double(), ref64, hf_dtype=ref_dt,
                           hf64=ref64, dtype=ctx.dtype_name, axes=AXES)
        expected = hf_distribution(ref64, **params)
        if torch.equal(kept, expected > 0):
            judge.assert_close(f"probabilities of the sampling distribution ({shown}) vs Hugging Face's warpers "
                               "on Hugging Face's float64 logits", actual, expected,
                               hf_dtype=hf_distribution(ref_dt.float(), **params).double(), hf64=expected,
                               dtype=ctx.dtype_name, axes=AXES, distributions=False)
        else:
            ctx.note("a token on a filter's boundary falls on the other side with the variant's logits (within "
                     "their tolerance): the support is judged on the variant's own logits")

    return sampling, pinned.sampling_examples(ctx.caps.test_configs)
