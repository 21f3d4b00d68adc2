"""The peers of ``zoo bench``: other engines a CPU user might pick instead of the zoo, run on the same weights.

Each :class:`Peer` says which precisions it offers (its own names, mapped to
the zoo's dtype families), how to install it, and whether it is usable here
(:meth:`Peer.missing`). Its runner (:class:`zoo.bench.runners.Runner`)
converts the ``save_pretrained`` folder to the engine's own format once, in
``prepare``, and keeps it under ``work_dir``. Every peer is optional: nothing
here imports an engine until a runner loads or :meth:`Peer.missing` is asked.

========================  =====================  ==================================================
peer                      precisions             weights it runs on
========================  =====================  ==================================================
``llama.cpp``             F32, BF16, Q8_0        GGUF from ``zoo convert`` (F32, BF16), and Q8_0 by
                                                 llama.cpp's own quantiser from the F32 file
``onnxruntime``           float32, int8          a graph with past key/values exported by torch;
                                                 int8 by ONNX Runtime's dynamic quantisation
``ctranslate2``           float32, int8          CTranslate2's converter from the folder
========================  =====================  ==================================================
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zoo
from zoo import ZooError

from ..runners import Runner
from ._ctranslate2 import CTranslate2Runner
from ._llama_cpp import LlamaCppRunner
from ._onnxruntime import OnnxRuntimeRunner

__all__ = ["PEERS", "Peer", "UnknownPeerError", "get_peer"]


class UnknownPeerError(ZooError, LookupError):
    """No peer of that name exists."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Peer:
    """Another engine, as ``zoo bench --peer NAME`` measures it."""

    name: str
    #: the peer's own precision names -> the zoo's dtype family; the first is the default
    precisions: Mapping[str, str]
    #: how to get it, shown when it is missing
    install: str
    #: ``(weights_dir, work_dir, precision, device, threads) -> Runner``; ``precision`` is one of ``precisions``
    make_runner: Callable[[Path, Path, str, str, int], Runner]
    #: the Python modules the peer imports, in the order to check them
    modules: tuple[str, ...] = ()
    #: distribution -> the oldest release the peer works with, where newer than the zoo's floor
    versions: Mapping[str, str] = field(default_factory=dict)

    def missing(self) -> str | None:
        """``None`` when the peer can run here; otherwise why not, and the fix."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                if exc.name == module or (exc.name or "").startswith(module + "."):
                    return f"{module} is not installed: {self.install}"
                return f"{module} is installed but fails to import ({exc}); reinstall it: {self.install}"
            except OSError as exc:  # a native library that does not load
                return f"{module} is installed but fails to load ({exc}); reinstall it: {self.install}"
        return next((reason for distribution, minimum in self.versions.items()
                     if (reason := zoo.older_than(distribution, minimum, needs=f"the {self.name} peer"))), None)


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer(LlamaCppRunner.PEER, LlamaCppRunner.PRECISIONS,
             "pip install 'gpt2-zoo[llama-cpp]' (builds llama.cpp from source: needs cmake and a C++ compiler)",
             LlamaCppRunner, ("llama_cpp",)),
        Peer(OnnxRuntimeRunner.PEER, OnnxRuntimeRunner.PRECISIONS, "pip install 'gpt2-zoo[onnxruntime]'",
             OnnxRuntimeRunner, ("onnxruntime", "onnx"), {"transformers": OnnxRuntimeRunner.TRANSFORMERS}),
        Peer(CTranslate2Runner.PEER, CTranslate2Runner.PRECISIONS, "pip install 'gpt2-zoo[ctranslate2]'",
             CTranslate2Runner, ("ctranslate2",)),
    )
}


def get_peer(name: str) -> Peer:
    """The peer called ``name``.

    :raises UnknownPeerError: naming the known peers and the close matches.
    """
    if name in PEERS:
        return PEERS[name]
    close = difflib.get_close_matches(str(name), PEERS, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownPeerError(f"no peer called {name!r}; {hint}the peers are {', '.join(PEERS)}")
