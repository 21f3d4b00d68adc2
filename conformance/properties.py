"""The properties every GPT-2 variant must have, each a hypothesis test built for one variant.

A :class:`Property` turns a :class:`Context` (the variant, the device, where to
record statistics, how to reproduce) into a ``@given``-decorated function
that takes no arguments: call it and it runs the profile's examples, raising
the shrunk counterexample's :class:`~conformance.assertions.ConformanceFailure`
if the variant breaks the property. The runner (``zoo check``) and the pytest
plugin both call these functions; neither has tests of its own.

:func:`check_interface` runs first: cheap existence checks whose failure
makes every property a skip, so a missing method is one clear failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from hypothesis import example, given, note, seed, settings

import zoo

from . import strategies as s
from .assertions import Judge, Stats
from .models import (
    canonical_weights,
    next_token_loss,
    reference_gradients,
    reference_logits,
    reference_model,
    variant_model,
)

if TYPE_CHECKING:
    import torch

__all__ = ["PROPERTIES", "Context", "Property", "check_interface", "get_property"]


@dataclass
class Context:
    """What a property needs to know about the run it is part of."""

    variant: zoo.Variant
    device: str = "cpu"
    reproducer: Callable[[str], str] = lambda prop: f"zoo check --property {prop}"
    stats: Stats = field(default_factory=Stats)

    @property
    def dtype_name(self) -> str:
        return self.variant.capabilities.dtypes[0]

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def caps(self) -> zoo.Capabilities:
        return self.variant.capabilities

    pinned_notes: list[str] | None = None  # collects notes while a pinned case runs outside hypothesis

    def note(self, text: str) -> None:
        """Context for the failing example: hypothesis' ``note``, or kept for a pinned case."""
        if self.pinned_notes is not None:
            self.pinned_notes.append(text)
        else:
            note(text)

    def judge(self, prop: str) -> Judge:
        return Judge(self.variant, prop, self.reproducer(prop), self.stats)

    def configs(self, min_positions: int = 1) -> Any:
        return s.configs(declared=self.caps.test_configs, min_positions=min_positions)

    def model(self, config: zoo.GPT2Config, init: s.WeightInit, dtype: torch.dtype | None = None,
              purpose: str = "shared") -> zoo.GPT2:
        return variant_model(self.variant, config, init, self.device, dtype or self.dtype, purpose)


#: a property's ``@given`` test, and the cases it must also pass after hypothesis' examples
Built = tuple[Callable[..., None], list[Any]]


@dataclass(frozen=True)
class Property:
    """One property: its name, what it checks, when it applies, and how to build its test."""

    name: str
    summary: str
    build: Callable[[Context], Built]
    requires: Callable[[zoo.Capabilities], str | None] = lambda caps: None  # a reason to skip, or None

    def test(self, ctx: Context, profile: settings, seed_value: int | None = None) -> Callable[[], None]:
        """The property's test for ``ctx``, under ``profile`` (and ``seed_value``).

        The hypothesis test runs first, so a failure shrinks to a small
        counterexample; the pinned cases (the 124M shape) run after it.
        """
        given_test, pinned = self.build(ctx)
        inner = given_test.hypothesis.inner_test  # type: ignore[attr-defined]
        test = settings(profile)(given_test)
        if seed_value is not None and not profile.derandomize:
            test = seed(seed_value)(test)

        def run() -> None:
            test()
            for case in pinned:
                ctx.pinned_notes = []
                try:
                    inner(case=case)
                except BaseException as exc:
                    _add_note(exc, f"Failing pinned example: {self.name}(\n    case={case!r},\n)")
                    for text in ctx.pinned_notes:
                        _add_note(exc, text)
                    raise
                finally:
                    ctx.pinned_notes = None
            ctx.judge(self.name).assert_top1()  # a distribution-level measure: over the whole run

        return run


# -- small helpers ------------------------------------------------------------------------
def _add_note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)``, also on Python 3.10, which keeps no notes of its own."""
    if sys.version_info >= (3, 11):
        exc.add_note(text)
    else:  # the attribute 3.11 keeps them in, which the runner and the pytest plugin read (typed from 3.11)
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]


def _ids(ids: s.Ids, device: str = "cpu") -> torch.Tensor:
    import torch

    return torch.tensor(ids, dtype=torch.long, device=device)


def _run(model: zoo.GPT2, ids: torch.Tensor, mask: torch.Tensor | None = None,
         input_pos: torch.Tensor | None = None) -> torch.Tensor:
    """The variant's logits as float64 on the CPU, cut to the vocabulary (wider ones are padding)."""
    import torch

    device = model.device
    with torch.no_grad():
        out = model(ids.to(device), attention_mask=None if mask is None else mask.to(device),
                    input_pos=None if input_pos is None else input_pos.to(device))
    return out[..., : model.config.vocab_size].double().cpu()


class _Refs(TypedDict):
    """The ``hf64``/``hf_dtype`` keywords of :meth:`Judge.assert_close`."""

    hf64: torch.Tensor
    hf_dtype: torch.Tensor


def _refs(config: zoo.GPT2Config, init: s.WeightInit, dtype: torch.dtype, ids: torch.Tensor,
          mask: torch.Tensor | None = None) -> _Refs:
    """Hugging Face's logits in float64 and in ``dtype``: the ``hf64``/``hf_dtype`` of a judgement."""
    import torch

    hf64 = reference_logits(config, init, torch.float64, ids, mask)
    hf_dtype = hf64 if dtype == torch.float64 else reference_logits(config, init, dtype, ids, mask)
    return {"hf64": hf64, "hf_dtype": hf_dtype}


def _left_pad(case: s.PaddedCase | s.IncrementalCase, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``case.ids`` with each row's first ``T - real`` ids replaced by ``pad``, and the mask."""
    import torch

    ids = _ids(case.ids)
    T = ids.size(1)
    assert case.real is not None
    mask = torch.zeros_like(ids)
    for b, n in enumerate(case.real):
        ids[b, : T - n] = pad
        mask[b, T - n :] = 1
    return ids, mask


# -- the properties -----------------------------------------------------------------------
def _logits(ctx: Context) -> Built:
    caps = ctx.caps
    judge = ctx.judge("logits")

    @given(case=s.forward_cases(ctx.configs(), caps.dtypes))
    def logits(case: s.ForwardCase) -> None:
        import torch

        ctx.stats.examples += 1
        dtype = getattr(torch, case.dtype)
        ids = _ids(case.ids)
        actual = _run(ctx.model(case.config, case.init, dtype), ids)
        ref = _refs(case.config, case.init, dtype, ids)
        judge.assert_close(f"logits ({case.dtype})", actual, ref["hf64"], dtype=case.dtype, **ref)

    for name in caps.dtypes:  # every declared dtype, at the largest init scale, every position used
        logits = example(case=s.small_full_length_example(name, caps.test_configs))(logits)
    return logits, [s.forward_example(caps.dtypes[0], caps.test_configs)]


def _causality(ctx: Context) -> Built:
    judge = ctx.judge("causality")

    @given(case=s.causality_cases(ctx.configs(min_positions=2)))
    def causality(case: s.CausalityCase) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids = _ids(case.ids)
        changed = ids.clone()
        changed[:, case.position] = case.token
        before, after = _run(model, ids), _run(model, changed)
        p = case.position
        full = _refs(case.config, case.init, ctx.dtype, ids)
        ref = _Refs(hf64=full["hf64"][:, :p], hf_dtype=full["hf_dtype"][:, :p])
        judge.assert_close(f"logits before position {p} after changing the token at {p}",
                           after[:, :p], before[:, :p], dtype=ctx.dtype_name, **ref)

    return causality, [s.causality_example(ctx.caps.test_configs)]


def _batch(ctx: Context) -> Built:
    judge = ctx.judge("batch")

    @given(case=s.batches(ctx.configs()))
    def batch(case: s.Batch) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids = _ids(case.ids)
        together = _run(model, ids)
        alone = torch.cat([_run(model, ids[b : b + 1]) for b in range(ids.size(0))])
        ref = _refs(case.config, case.init, ctx.dtype, ids)
        judge.assert_close("rows of a batch vs each row run alone", together, alone,
                           dtype=ctx.dtype_name, **ref)

    return batch, [s.batch_example(ctx.caps.test_configs)]


def _padding(ctx: Context) -> Built:
    judge = ctx.judge("padding")

    @given(case=s.padded_cases(ctx.configs(min_positions=2)))
    def padding(case: s.PaddedCase) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids, mask = _left_pad(case, case.pad)
        T = ids.size(1)
        ctx.note(f"padded ids {ids.tolist()}, attention_mask {mask.tolist()}")
        padded = _run(model, ids, mask)
        for b, n in enumerate(case.real):
            row = ids[b : b + 1, T - n :]
            alone = _run(model, row)
            ref = _refs(case.config, case.init, ctx.dtype, row)
            judge.assert_close(f"row {b} of a left-padded batch ({T - n} padding) vs the row alone",
                               padded[b : b + 1, T - n :], alone, dtype=ctx.dtype_name,
                               axes=("", "real token", "vocabulary id"), **ref)
        ref = _refs(case.config, case.init, ctx.dtype, ids, mask)
        judge.assert_close("left-padded batch vs Hugging Face given the same mask and position ids",
                           padded, ref["hf64"], dtype=ctx.dtype_name, where=mask, **ref)

    return padding, [s.padded_example(ctx.caps.test_configs)]


def _incremental(ctx: Context) -> Built:
    judge = ctx.judge("incremental")
    padding_ok = ctx.caps.padding

    @given(case=s.incremental_cases(ctx.configs(min_positions=2), padding=padding_ok))
    def incremental(case: s.IncrementalCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        if case.real is None:
            ids, mask = _ids(case.ids), None
        else:
            ids, mask = _left_pad(case, case.config.eos_token_id)
        B, T = ids.shape
        full = _run(model, ids, mask)
        ref = _refs(case.config, case.init, ctx.dtype, ids, mask)
        for split in case.splits:  # one cache, set up again for each split
            model.setup_caches(B, case.cache_length)
            pieces = [_run(model, ids[:, :split], None if mask is None else mask[:, :split],
                           input_pos=torch.arange(split))]
            for t in range(split, T):
                pieces.append(_run(model, ids[:, t : t + 1], None if mask is None else mask[:, : t + 1],
                                   input_pos=torch.tensor([t])))
            decoded = torch.cat(pieces, dim=1)
            judge.assert_close(
                f"prefill of {split} then token-by-token decoding (cache of {case.cache_length}) "
                "vs one full forward", decoded, full, dtype=ctx.dtype_name, where=mask, **ref)

    return incremental, [s.incremental_example(padding_ok, ctx.caps.test_configs)]


def _first_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


def _hf_greedy(case: s.GenerationCase) -> list[list[int]]:
    """Hugging Face ``generate`` in float64, greedy, with the prompts left-padded as zoo.generate pads them."""
    import torch

    model = reference_model(case.config, case.init, torch.float64)
    eos = case.config.eos_token_id
    longest = max(len(p) for p in case.prompts)
    ids = torch.full((len(case.prompts), longest), eos, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(case.prompts):
        ids[b, longest - len(p) :] = torch.tensor(p)
        mask[b, longest - len(p) :] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=case.max_new_tokens,
                             do_sample=False, pad_token_id=eos, eos_token_id=eos)
    return [_first_eos(row[longest:].tolist(), eos) for row in out]


def _generation(ctx: Context) -> Built:
    judge = ctx.judge("generation")
    padding_ok = ctx.caps.padding

    @given(case=s.generation_cases(ctx.configs(min_positions=2), padding=padding_ok))
    def generation(case: s.GenerationCase) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        prompts = [list(p) for p in case.prompts]
        eos = case.config.eos_token_id
        sample = {"temperature": case.temperature, "top_k": case.top_k, "top_p": case.top_p,
                  "seed": case.seed}
        first = zoo.generate(model, prompts, case.max_new_tokens, **sample)
        again = zoo.generate(model, prompts, case.max_new_tokens, **sample)
        if first != again:
            judge.fail(f"seeded sampling is not reproducible ({sample})", again, first)
        if not ctx.caps.exact:
            return  # an approximate variant's argmax may differ; its logits are judged elsewhere
        got = [_first_eos(row, eos) for row in zoo.generate(model, prompts, case.max_new_tokens)]
        expected = _hf_greedy(case)
        tol = ctx.variant.tolerances
        for b, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
            step = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y), None)
            if step is None:
                if len(mine) != len(theirs):
                    judge.fail(f"greedy generation from prompt {b} has the wrong length", mine, theirs)
                continue
            # a near tie in Hugging Face's own float64 logits may break either way
            prefix = _ids((case.prompts[b] + tuple(mine[:step]),))
            ref = _refs(case.config, case.init, ctx.dtype, prefix)
            last64, last_dt = ref["hf64"][0, -1], ref["hf_dtype"][0, -1]
            bound = tol.error_factor * float((last_dt - last64).abs().max()) + tol.abs_floor.get(ctx.dtype_name, 0.0)
            gap = float(last64[theirs[step]] - last64[mine[step]])
            ctx.note(f"prompt {b}, step {step}: HF float64 logit gap {gap:.3g}, allowed tie {2 * bound:.3g}")
            if gap > 2 * bound:
                judge.fail(f"greedy generation from prompt {b} differs from Hugging Face's generate at "
                           f"step {step} (logit gap {gap:.3g} > 2 x bound {bound:.3g})", mine, theirs)

    return generation, [s.generation_example(padding_ok, ctx.caps.test_configs)]


def _weights(ctx: Context) -> Built:
    judge = ctx.judge("weights")
    lossless = ctx.caps.lossless_weights

    @given(case=s.weights_cases(ctx.configs()))
    def weights(case: s.WeightsCase) -> None:
        import torch

        ctx.stats.examples += 1
        config = case.config
        model = ctx.model(config, case.first, purpose="scratch")  # re-imported below: a model of its own
        first = canonical_weights(config, case.first)
        model.import_weights(first)

        def exported() -> dict[str, torch.Tensor]:
            return {k: torch.as_tensor(v).detach().cpu().clone() for k, v in model.export_weights().items()}

        one = exported()
        if "lm_head.weight" in one:
            judge.fail("export_weights() writes lm_head.weight: the canonical dict leaves it out, "
                       "because it is wte.weight", sorted(one), sorted(first))
        if set(one) != set(first):
            judge.fail("export_weights() keys differ from the canonical ones",
                       sorted(set(one) - set(first)), sorted(set(first) - set(one)))
        for name in first:
            if tuple(one[name].shape) != tuple(first[name].shape):
                judge.fail(f"exported {name} has the wrong shape", list(one[name].shape), list(first[name].shape))
            if lossless and not torch.equal(one[name], first[name].to(one[name].dtype)):
                err = float((one[name].double() - first[name].double()).abs().max())
                judge.fail(f"exported {name} differs from the imported tensor (max error {err:.3g})")
        model.import_weights(one)
        two = exported()
        if lossless:
            for name in one:
                if not torch.equal(two[name], one[name]):
                    judge.fail(f"import, export, import changed {name}")
        ids = _ids(s._edge_ids(config, min(8, config.n_positions)))
        for init, what in ((s.WeightInit(case.first.seed, case.first.scale, wte_seed=case.second.seed),
                            "logits after importing a new wte only (lm_head must follow it: the tie)"),
                           (case.second, "logits after importing a second set of weights")):
            model.import_weights(canonical_weights(config, init))
            ref = _refs(config, init, ctx.dtype, ids)
            judge.assert_close(what, _run(model, ids), ref["hf64"], dtype=ctx.dtype_name, **ref)

    return weights, []


def _parameter_names(model: Any, exported: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Parameter name -> (canonical name, transposed), matching export_weights() views by storage."""
    by_storage = {(t.data_ptr(), t.numel()): (name, t) for name, t in exported.items()}
    names = {}
    for pname, p in model.named_parameters():
        found = by_storage.get((p.data_ptr(), p.numel()))
        if found is None:
            continue
        name, view = found
        same = tuple(view.shape) == tuple(p.shape) and view.stride() == p.stride()
        if same or (p.dim() == 2 and tuple(view.shape) == tuple(p.shape)[::-1]
                    and view.stride() == p.stride()[::-1]):
            names[pname] = (name, not same)  # a transposed view (Hugging Face's Conv1D) or the tensor itself
    return names


def _training(ctx: Context) -> Built:
    judge = ctx.judge("training")

    @given(case=s.training_cases(ctx.configs(min_positions=2)))
    def training(case: s.TrainingCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        if not isinstance(model, torch.nn.Module):
            judge.fail("a trainable variant must be a torch.nn.Module so its gradients can be read",
                       type(model).__name__, "torch.nn.Module")
        names = _parameter_names(model, model.export_weights())
        params = dict(model.named_parameters())
        unmapped = sorted(set(params) - set(names))
        if unmapped:
            judge.fail("parameters that are not canonical weights (an untied lm_head?); export_weights() "
                       "must return the parameters themselves or views of them", unmapped, [])
        frozen = sorted(n for n, p in params.items() if not p.requires_grad)
        if frozen:
            judge.fail("parameters that do not require grad", frozen, [])
        ids = _ids(case.ids, str(model.device))
        with torch.enable_grad():
            logits = model(ids)[..., : case.config.vocab_size]
            loss = next_token_loss(logits, ids)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        loss64, g64 = reference_gradients(case.config, case.init, torch.float64, ids)
        loss_dt, g_dt = (loss64, g64) if ctx.dtype == torch.float64 else \
            reference_gradients(case.config, case.init, ctx.dtype, ids)
        judge.assert_close("cross-entropy loss", loss.detach().double().cpu()[None], loss64[None],
                           hf_dtype=loss_dt[None], hf64=loss64[None], dtype=ctx.dtype_name, axes=("value",),
                           distributions=False)
        for pname, grad in zip(params, grads, strict=True):
            canonical, transposed = names[pname]
            if grad is None:
                judge.fail(f"no gradient reaches {pname} ({canonical})")
            g = grad.double().cpu()
            g = g.T if transposed else g
            judge.assert_close(f"gradient of {canonical}", g, g64[canonical], hf_dtype=g_dt[canonical],
                               hf64=g64[canonical], dtype=ctx.dtype_name, axes=("row", "column"),
                               distributions=False)
        missing = sorted(set(g64) - {names[p][0] for p in params})
        if missing:
            judge.fail("canonical weights with no parameter to train", missing, [])

    return training, []


_KEYWORDS: dict[str, tuple[str, ...]] = {
    "empty sequence": ("empty", "at least one", "no token"),
    "empty batch": ("empty", "at least one", "batch"),
    "float ids": ("dtype", "float", "integer"),
    "1-D ids": ("2-d", "2d", "dim", "rank", "shape"),
    "3-D ids": ("2-d", "2d", "dim", "rank", "shape"),
    "mask of the wrong shape": ("attention_mask",),
    "input_pos outside the cache": ("input_pos", "cache"),
}


def _bad_call(model: zoo.GPT2, case: s.BadInput, valid: torch.Tensor) -> tuple[Callable[[], Any], tuple[str, ...]]:
    """The call that must raise, and words of which its message must contain one."""
    import torch

    config, kind, value = case.config, case.kind, case.value
    ids = valid.clone()
    if kind in ("negative id", "id >= vocab_size"):
        ids[0, -1] = value
        return (lambda: model(ids)), (str(value),)
    if kind == "longer than n_positions":
        long = torch.zeros((1, value), dtype=torch.long, device=valid.device)
        return (lambda: model(long)), (str(config.n_positions), "n_positions")
    if kind == "empty sequence":
        return (lambda: model(valid[:, :0])), _KEYWORDS[kind]
    if kind == "empty batch":
        return (lambda: model(valid[:0])), _KEYWORDS[kind]
    if kind == "float ids":
        return (lambda: model(valid.float())), _KEYWORDS[kind]
    if kind == "1-D ids":
        return (lambda: model(valid[0])), _KEYWORDS[kind]
    if kind == "3-D ids":
        return (lambda: model(valid[None])), _KEYWORDS[kind]
    if kind == "mask of the wrong shape":
        mask = torch.ones((1, valid.size(1) + value), dtype=torch.long, device=valid.device)
        return (lambda: model(valid, attention_mask=mask)), _KEYWORDS[kind]
    if kind == "input_pos outside the cache":
        size = valid.size(1)

        def outside() -> Any:
            model.setup_caches(1, size)
            return model(valid[:, :1], input_pos=torch.tensor([size], device=valid.device))

        return outside, _KEYWORDS[kind]
    raise ValueError(f"unknown bad-input kind {kind!r}")


def _bad_input(ctx: Context) -> Built:
    judge = ctx.judge("bad-input")

    @given(case=s.bad_inputs(ctx.configs(), kv_cache=ctx.caps.kv_cache))
    def bad_input(case: s.BadInput) -> None:
        ctx.stats.examples += 1
        model = ctx.model(case.config, s.PINNED_INIT)
        valid = _ids(s._edge_ids(case.config, min(4, case.config.n_positions)), str(model.device))
        before = _run(model, valid)
        call, words = _bad_call(model, case, valid)
        try:
            out = call()
        except zoo.InvalidInputError as exc:
            message = str(exc)
            if not any(w.lower() in message.lower() for w in words):
                judge.fail(f"the error for {case.kind} does not name the problem (expected one of {words})",
                           message, f"a message naming {' or '.join(words)}")
        except Exception as exc:  # noqa: BLE001  # any other type is the failure being reported
            judge.fail(f"{case.kind} raised the wrong error type",
                       f"{type(exc).__name__}: {exc}", "zoo.InvalidInputError")
        else:
            shape = list(getattr(out, "shape", []))
            judge.fail(f"{case.kind} was accepted silently (returned logits of shape {shape})",
                       "no error", "zoo.InvalidInputError")
        judge.assert_equal(f"logits of a valid input after the rejected {case.kind}", _run(model, valid), before)

    return bad_input, s.bad_input_examples(ctx.caps.kv_cache, ctx.caps.test_configs)


def _determinism(ctx: Context) -> Built:
    judge = ctx.judge("determinism")

    @given(case=s.forward_cases(ctx.configs()))
    def determinism(case: s.ForwardCase) -> None:
        import torch

        ctx.stats.examples += 1
        model = ctx.model(case.config, case.init)
        ids = _ids(case.ids)
        first = _run(model, ids)
        _run(model, ids.flip(-1))  # something else in between
        judge.assert_equal("the same input run twice", _run(model, ids), first)
        if ctx.caps.kv_cache:
            B, T = ids.shape
            runs = []
            for _ in range(2):
                model.setup_caches(B, T)
                runs.append(_run(model, ids, input_pos=torch.arange(T)))
            judge.assert_equal("the same prefill through the KV cache run twice", runs[1], runs[0])

    return determinism, [s.forward_example(ctx.dtype_name, ctx.caps.test_configs)]


def _needs(flag: str, what: str) -> Callable[[zoo.Capabilities], str | None]:
    return lambda caps: None if getattr(caps, flag) else f"the variant does not declare {what}"


PROPERTIES: tuple[Property, ...] = (
    Property("logits", "logits equal Hugging Face's on the same weights, for every declared dtype", _logits),
    Property("causality", "changing the token at t changes no logits before t", _causality),
    Property("batch", "a batch gives the same rows as each sequence alone", _batch),
    Property("padding", "left padding with a mask changes nothing for real tokens, as in Hugging Face",
             _padding, _needs("padding", "padding")),
    Property("incremental", "prefill then decoding through the KV cache equals one full forward",
             _incremental, _needs("kv_cache", "a KV cache")),
    Property("generation", "greedy generation equals Hugging Face's generate; seeded sampling repeats",
             _generation),
    Property("weights", "import, export, import is lossless and lm_head stays tied to wte", _weights),
    Property("training", "loss and every parameter's gradient equal Hugging Face's", _training,
             _needs("trainable", "trainable")),
    Property("bad-input", "bad ids, lengths, ranks and masks raise zoo.InvalidInputError naming the problem",
             _bad_input),
    Property("determinism", "the same input twice gives the same output", _determinism),
)


def get_property(name: str) -> Property:
    for prop in PROPERTIES:
        if prop.name == name:
            return prop
    raise ValueError(f"unknown property {name!r}; choose from {', '.join(p.name for p in PROPERTIES)}")


# -- the interface, checked before any property --------------------------------------------
INTERFACE_CONFIG = zoo.GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)
KNOWN_DEVICES = ("cpu", "cuda", "mps", "xpu")


def check_interface(variant: zoo.Variant, device: str = "cpu") -> list[str]:
    """Problems with what ``variant`` declares and with the methods it has; empty when all is well."""
    import torch

    caps, tol = variant.capabilities, variant.tolerances
    problems: list[str] = []
    if not callable(variant.build):
        return [f"build={variant.build!r} is not callable"]
    if not caps.dtypes:
        problems.append("capabilities.dtypes is empty; declare at least one, e.g. ('float32',)")
    for name in caps.dtypes:
        if not isinstance(getattr(torch, name, None), torch.dtype):
            problems.append(f"declared dtype {name!r} is not a torch dtype name (e.g. 'float32')")
    for name in caps.devices:
        if name not in KNOWN_DEVICES:
            problems.append(f"declared device {name!r} is not a device type ({', '.join(KNOWN_DEVICES)})")
    if caps.exact:
        missing = [d for d in caps.dtypes if d not in tol.abs_floor]
        if missing:
            problems.append(f"tolerances.abs_floor has no entry for declared dtype(s) {', '.join(missing)}")
        if not tol.error_factor > 0:
            problems.append(f"tolerances.error_factor={tol.error_factor} must be positive")
    elif tol.max_kl is None and tol.min_top1 is None and tol.max_rel_logit_error is None:
        problems.append("an approximate variant (exact=False) must declare max_kl, min_top1 or "
                        "max_rel_logit_error in its Tolerances")
    if problems:
        return problems
    config = caps.test_configs[0] if caps.test_configs else INTERFACE_CONFIG
    for name in caps.dtypes:
        dtype = getattr(torch, name)
        try:
            model = variant.build(config, device=torch.device(device), dtype=dtype)
        except Exception as exc:  # noqa: BLE001  # a variant that cannot build is reported, not raised
            problems.append(f"build({config}, device={device!r}, dtype={name}) raised {type(exc).__name__}: {exc}")
            continue
        if not isinstance(model, zoo.GPT2):
            problems.append(f"build() returned a {type(model).__name__}, not a zoo.GPT2")
            continue
        for method in ("forward", "import_weights", "export_weights"):
            if not callable(getattr(model, method, None)):
                problems.append(f"the model has no {method}()")
        if caps.kv_cache and getattr(type(model), "setup_caches", None) is zoo.GPT2.setup_caches:
            problems.append("kv_cache=True is declared but setup_caches() is not implemented")
        try:
            if model.dtype != dtype:
                problems.append(f"build(dtype={name}) gave a model whose .dtype is {model.dtype}")
            if model.device.type != torch.device(device).type:
                problems.append(f"build(device={device!r}) gave a model on {model.device}")
            model.import_weights(canonical_weights(config, s.PINNED_INIT))
            out = model(_ids(s._edge_ids(config, 3), device))
            if tuple(out.shape[:2]) != (1, 3) or out.shape[2] < config.vocab_size:
                problems.append(f"forward([1, 3] ids) returned shape {list(out.shape)}, expected "
                                f"[1, 3, {config.vocab_size}]")
            elif not bool(torch.isfinite(out[..., : config.vocab_size]).all()):
                problems.append("forward() returned non-finite logits on a valid input")
        except Exception as exc:  # noqa: BLE001  # a model that crashes when used is reported, not raised
            problems.append(f"{name}: using the built model raised {type(exc).__name__}: {exc}")
    return problems
