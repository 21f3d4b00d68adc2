"""The variant registry: a pluggy plugin manager wired like pytest's.

Built-ins and third-party plugins come through the same ``zoo`` entry-point
group; :func:`register` adds variants at run time. Nothing here breaks because
one plugin is broken: the plugin is listed with its error instead.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import inspect
import logging
import os
import re
import threading
from dataclasses import dataclass, replace
from typing import Any

import pluggy

from . import hookspec
from ._errors import BrokenPluginError, DuplicateVariantError, UnknownVariantError
from ._interface import Variant

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISTRIBUTION",
    "BrokenPlugin",
    "get_variant",
    "list_variants",
    "plugin_manager",
    "register",
    "unregister",
]

log = logging.getLogger("zoo")

DISTRIBUTION = "gpt2-zoo"
DISABLE_AUTOLOAD_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")


@dataclass(frozen=True)
class BrokenPlugin:
    """A name that cannot be used, and why: a plugin that failed, or a name claimed twice."""

    name: str
    source: str
    error: BaseException

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _entry_point_source(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    where = f"entry point {ep.name} = {ep.value}"
    return f"{dist.name} {dist.version} ({where})" if dist is not None else where


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspec.PROJECT)
        self.pm.add_hookspecs(hookspec)
        self.variants: dict[str, Variant] = {}
        self.broken: dict[str, BrokenPlugin] = {}
        self._load_entry_points()

    # -- discovery ------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        disabled = _autoload_disabled()
        for ep in importlib.metadata.entry_points(group=hookspec.PROJECT):
            builtin = ep.dist is not None and ep.dist.name == DISTRIBUTION
            if disabled and not builtin:
                log.debug("not loading plugin %s: %s is set", ep.name, DISABLE_AUTOLOAD_ENV)
                continue
            source = _entry_point_source(ep)
            if self.pm.has_plugin(ep.name) or ep.name in self.broken:
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:
                self._mark_broken(ep.name, source, exc)
                continue
            self._check_hooks(ep.name, source)
            if self.pm.has_plugin(ep.name):
                self._collect(ep.name, source)

    def _check_hooks(self, plugin_name: str, source: str) -> None:
        """A misspelled hook fails loudly: the plugin is unregistered and listed as broken."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin = self.pm.get_plugin(plugin_name)
            hooks = [n for n in dir(plugin) if n.startswith(hookspec.PROJECT + "_")]
            unknown = [n for n in hooks if not hasattr(hookspec, n)]
            known = [n for n in dir(hookspec) if n.startswith(hookspec.PROJECT + "_")]
            hints = [
                f"{n!r} (did you mean {difflib.get_close_matches(n, known, 1, 0.5)[0]!r}?)"
                if difflib.get_close_matches(n, known, 1, 0.5)
                else repr(n)
                for n in unknown
            ]
            self.pm.unregister(name=plugin_name)
            self._mark_broken(
                plugin_name,
                source,
                BrokenPluginError(
                    f"plugin {plugin_name!r} implements unknown hook {', '.join(hints)}; "
                    f"the hooks are: {', '.join(known)} ({exc})"
                ),
            )

    def _collect(self, plugin_name: str, source: str) -> None:
        plugin = self.pm.get_plugin(plugin_name)
        impls = [i for i in self.pm.hook.zoo_variants.get_hookimpls() if i.plugin is plugin]
        for impl in impls:
            try:
                declared = list(impl.function())
                for variant in declared:
                    if not isinstance(variant, Variant):
                        raise TypeError(
                            f"zoo_variants() must return zoo.Variant objects, got {type(variant).__name__}"
                        )
            except Exception as exc:
                self._mark_broken(plugin_name, source, exc)
                return
            for variant in declared:
                self._add(replace(variant, source=source))

    def _mark_broken(self, name: str, source: str, error: BaseException) -> None:
        log.warning("zoo plugin %r is broken: %s: %s", name, type(error).__name__, error)
        self.broken[name] = BrokenPlugin(name, source, error)

    def _add(self, variant: Variant, *, raise_on_clash: bool = False) -> None:
        name = variant.name
        if not isinstance(name, str) or not _NAME.match(name):
            error = ValueError(
                f"invalid variant name {name!r}: use lower-case letters, digits, '.', '_' and '-'"
            )
            if raise_on_clash:
                raise error
            self._mark_broken(str(name), variant.source, error)
            return
        other = self.variants.get(name)
        if other is not None or name in self.broken:
            first = other.source if other is not None else self.broken[name].source
            error = DuplicateVariantError(
                f"variant {name!r} is registered twice: by {first} and by {variant.source}; "
                "rename one of them, or uninstall one of the packages"
            )
            if raise_on_clash:
                raise error
            self.variants.pop(name, None)
            self._mark_broken(name, first, error)
            return
        self.variants[name] = variant


_lock = threading.Lock()
_registry: _Registry | None = None


def _get() -> _Registry:
    global _registry
    with _lock:
        if _registry is None:
            _registry = _Registry()
        return _registry


def _reset() -> None:
    """Forget everything discovered; the next call discovers plugins again (for tests)."""
    global _registry
    with _lock:
        _registry = None


def plugin_manager() -> pluggy.PluginManager:
    """The underlying :class:`pluggy.PluginManager` (hook prefix, marker and entry-point group ``zoo``)."""
    return _get().pm


def list_variants(pattern: str | None = None, *, include_broken: bool = False) -> list[str]:
    """Names of the registered variants, naturally sorted.

    :param pattern: shell-style wildcard (``"quant*"``); ``None`` lists all.
    :param include_broken: also list names whose plugin is broken.
    """
    reg = _get()
    names = set(reg.variants)
    if include_broken:
        names |= set(reg.broken)
    if pattern is not None:
        names = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
    return sorted(names, key=_natural_key)


def broken_plugins() -> list[BrokenPlugin]:
    """Plugins that failed to import or to declare variants, and names claimed twice."""
    reg = _get()
    return [reg.broken[n] for n in sorted(reg.broken, key=_natural_key)]


def get_variant(name: str) -> Variant:
    """The variant registered as ``name``.

    :raises UnknownVariantError: naming the close matches.
    :raises BrokenPluginError: if the plugin that provides ``name`` failed.
    :raises DuplicateVariantError: if two sources claim ``name``.
    """
    reg = _get()
    if name in reg.variants:
        return reg.variants[name]
    if name in reg.broken:
        broken = reg.broken[name]
        if isinstance(broken.error, DuplicateVariantError):
            raise broken.error
        raise BrokenPluginError(
            f"variant plugin {name!r} from {broken.source} is broken: {broken.message}"
        ) from broken.error
    known = list_variants(include_broken=True)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownVariantError(
        f"no variant named {name!r}; {hint}known variants: {', '.join(known) or 'none'} "
        "(`zoo list` shows them with their status)"
    )


def register(variant: Variant) -> Variant:
    """Add a variant defined at run time (in a notebook, a test) and return it.

    :raises DuplicateVariantError: if the name is taken, naming both sources.
    """
    if not isinstance(variant, Variant):
        raise TypeError(f"register() takes a zoo.Variant, got {type(variant).__name__}")
    caller = inspect.stack()[1]
    source = variant.source or f"registered at run time from {caller.filename}:{caller.lineno}"
    variant = replace(variant, source=source)
    _get()._add(variant, raise_on_clash=True)
    return variant


def unregister(name: str) -> Variant:
    """Remove a variant registered with :func:`register` (or any other) and return it."""
    reg = _get()
    if name not in reg.variants:
        get_variant(name)  # raises the helpful error
    return reg.variants.pop(name)
