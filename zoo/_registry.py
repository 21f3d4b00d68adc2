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
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pluggy

from . import hookspec
from ._errors import BrokenPluginError, DuplicateVariantError, UnknownVariantError
from ._interface import Variant

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "DISTRIBUTION",
    "BrokenPlugin",
    "broken_plugins",
    "distribution_of",
    "get_variant",
    "list_variants",
    "plugin_manager",
    "register",
    "resolve",
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


def _normalize(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _entry_point_source(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    where = f"entry point {ep.name} = {ep.value}"
    return f"{dist.name} {dist.version} ({where})" if dist is not None else where


def _install_root() -> Path:
    """The folder holding this distribution's top-level packages (``zoo``, ``plugins``...)."""
    return Path(__file__).resolve().parent.parent


def _check_builtin_origin(ep: importlib.metadata.EntryPoint, plugin: object) -> None:
    """A built-in plugin must come from this distribution, not from another top-level ``plugins``."""
    file = getattr(plugin, "__file__", None)
    root = _install_root()
    if file is None or not Path(file).resolve().is_relative_to(root):
        raise BrokenPluginError(
            f"built-in plugin {ep.value!r} was imported from {file or 'nowhere'}, not from {DISTRIBUTION} "
            f"in {root}: another top-level package named {ep.value.split('.')[0]!r} shadows it on sys.path; "
            "rename that package or run from another directory"
        )


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspec.PROJECT)
        self.pm.add_hookspecs(hookspec)
        self.variants: dict[str, Variant] = {}
        self.distributions: dict[str, str | None] = {}  # variant name -> distribution that provides it
        self.broken: dict[str, BrokenPlugin] = {}  # failed plugins (entry-point name), clashing names

    # -- discovery ------------------------------------------------------------------
    def load_entry_points(self) -> None:
        disabled = _autoload_disabled()
        # the built-ins first: a third party that claims one of their names is refused, not the built-in
        eps = sorted(importlib.metadata.entry_points(group=hookspec.PROJECT), key=lambda ep: not _is_builtin(ep))
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else None
            builtin = _is_builtin(ep)
            if disabled and not builtin:
                log.debug("not loading plugin %s: %s is set", ep.name, DISABLE_AUTOLOAD_ENV)
                continue
            source = _entry_point_source(ep)
            # pluggy's name for the plugin: two distributions may use the same entry-point name
            plugin_name = ep.name if builtin else f"{dist}:{ep.name}"
            if self.pm.has_plugin(plugin_name) or self.pm.is_blocked(plugin_name):
                continue
            try:
                plugin = ep.load()
                if builtin:
                    _check_builtin_origin(ep, plugin)
                self.pm.register(plugin, name=plugin_name)
            except (Exception, SystemExit) as exc:  # noqa: BLE001  # a broken plugin must not break the zoo
                self._mark_broken(ep.name, source, exc)
                self.pm.set_blocked(plugin_name)
                continue
            if self._check_hooks(plugin_name, ep.name, source):
                self._collect(plugin_name, ep.name, source, dist)

    def _check_hooks(self, plugin_name: str, label: str, source: str) -> bool:
        """A misspelled hook fails loudly: the plugin is unregistered and listed as broken."""
        plugin = self.pm.get_plugin(plugin_name)
        known = [n for n in dir(hookspec) if n.startswith(hookspec.PROJECT + "_")]
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = [
                n for n in dir(plugin)
                if n.startswith(hookspec.PROJECT + "_") and n not in known
                and self.pm.parse_hookimpl_opts(plugin, n) is not None
            ] or [str(exc)]
            hints = []
            for n in unknown:
                close = difflib.get_close_matches(n, known, 1, 0.5)
                hints.append(f"{n!r} (did you mean {close[0]!r}?)" if close else repr(n))
            self._unregister(plugin_name)
            self._mark_broken(label, source, BrokenPluginError(
                f"plugin {label!r} implements unknown hook {', '.join(hints)}; "
                f"the zoo's hooks are: {', '.join(known)}"
            ))
            return False
        if not self.pm.get_hookcallers(plugin):  # any one hook will do: variants, commands or both
            self._unregister(plugin_name)
            self._mark_broken(label, source, BrokenPluginError(
                f"plugin {label!r} implements no zoo hook; mark its {' or '.join(f'{n}()' for n in known)} "
                "function with @zoo.hookimpl"
            ))
            return False
        return True

    def _unregister(self, plugin_name: str) -> None:
        self.pm.unregister(name=plugin_name)
        self.pm.set_blocked(plugin_name)

    def _collect(self, plugin_name: str, label: str, source: str, dist: str | None) -> None:
        """The plugin's variants; one that only adds commands (``zoo_addcommands``) declares none."""
        plugin = self.pm.get_plugin(plugin_name)
        impls = [i for i in self.pm.hook.zoo_variants.get_hookimpls() if i.plugin is plugin]
        declared: list[Variant] = []
        try:
            for impl in impls:
                result = impl.function()  # the spec has no arguments (yet)
                if isinstance(result, Variant) or not isinstance(result, Iterable):
                    raise TypeError(
                        f"zoo_variants() must return a list of zoo.Variant, got {type(result).__name__}"
                    )
                for variant in result:
                    if not isinstance(variant, Variant):
                        raise TypeError(
                            f"zoo_variants() must return zoo.Variant objects, got {type(variant).__name__}"
                        )
                    declared.append(variant)
        except Exception as exc:  # noqa: BLE001  # a plugin's hook failing must not break the zoo
            self._mark_broken(label, source, exc)
            return
        for variant in declared:
            self._add(replace(variant, source=source), dist)

    def _mark_broken(self, name: str, source: str, error: BaseException) -> None:
        log.warning("zoo plugin %r is broken: %s: %s", name, type(error).__name__, error)
        self.broken[name] = BrokenPlugin(name, source, error)

    def clash(self, name: str) -> DuplicateVariantError | None:
        broken = self.broken.get(name)
        return broken.error if broken is not None and isinstance(broken.error, DuplicateVariantError) else None

    def _add(self, variant: Variant, dist: str | None, *, raise_on_clash: bool = False) -> None:
        name = variant.name
        wrong = _wrong_fields(variant)
        if wrong:
            type_error = TypeError(
                f"Variant {name!r} from {variant.source}: {wrong}; declare it as zoo.Variant(name=..., build=..., "
                "summary=..., capabilities=zoo.Capabilities(...), tolerances=zoo.Tolerances(...))"
            )
            if raise_on_clash:
                raise type_error
            label = name if isinstance(name, str) and _NAME.match(name) else str(name)
            self._mark_broken(f"{dist}:{label}" if label in self.variants else label, variant.source, type_error)
            return
        if not isinstance(name, str) or not _NAME.match(name):
            error = ValueError(
                f"invalid variant name {name!r}: use lower-case letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
            if raise_on_clash:
                raise error
            self._mark_broken(str(name), variant.source, error)
            return
        other = self.variants.get(name)
        if other is not None and _is_builtin_dist(self.distributions.get(name)) and not raise_on_clash:
            # a built-in keeps its name; the third party's variant is listed as broken under its own
            self._mark_broken(f"{dist or variant.source}:{name}", variant.source, DuplicateVariantError(
                f"variant {name!r} from {variant.source} is refused: {name!r} is a built-in variant of "
                f"{other.source}; rename the third-party variant (e.g. '{_normalize(dist or 'my')}-{name}')"
            ))
            return
        clash = self.clash(name)
        if other is not None or clash is not None:
            first = other.source if other is not None else self.broken[name].source
            error = DuplicateVariantError(
                f"variant {name!r} is registered twice: by {first} and by {variant.source}; "
                "rename one of them, or uninstall one of the packages"
            )
            if raise_on_clash:
                raise error
            self.variants.pop(name, None)
            self.distributions.pop(name, None)
            self._mark_broken(name, first, error)
            return
        self.variants[name] = variant
        self.distributions[name] = dist


def _is_builtin_dist(dist: str | None) -> bool:
    return dist is not None and _normalize(dist) == DISTRIBUTION


def _is_builtin(ep: importlib.metadata.EntryPoint) -> bool:
    return _is_builtin_dist(ep.dist.name if ep.dist is not None else None)


def _wrong_fields(variant: Variant) -> str:
    """What is of the wrong type in a declared variant ("" if nothing): ``zoo list`` reads every field."""
    from ._interface import PRECISIONS, Capabilities, Tolerances

    wrong = []
    for field, kind in (("name", str), ("summary", str), ("capabilities", Capabilities), ("tolerances", Tolerances),
                        ("notes", str), ("precision", str), ("reference", bool), ("source", str)):
        value = getattr(variant, field)
        if not isinstance(value, kind):
            wrong.append(f"{field} must be a {kind.__name__}, got {type(value).__name__}")
    if isinstance(variant.precision, str) and variant.precision and variant.precision not in PRECISIONS:
        wrong.append(f"precision {variant.precision!r} is not one the zoo knows: declare one of "
                     f"{', '.join(PRECISIONS)}, or '' for the dtype (zoo.PRECISIONS)")
    if not callable(variant.build):
        wrong.append(f"build must be callable, got {type(variant.build).__name__}")
    if variant.unavailable is not None and not callable(variant.unavailable):
        wrong.append(f"unavailable must be None or callable, got {type(variant.unavailable).__name__}")
    caps = variant.capabilities
    if isinstance(caps, Capabilities):
        for field in ("devices", "dtypes"):
            value = getattr(caps, field)
            if not isinstance(value, (tuple, list)) or not value or not all(isinstance(v, str) for v in value):
                wrong.append(f"capabilities.{field} must be a non-empty tuple of str, got {value!r:.40}")
        for field in ("exact", "kv_cache", "padding", "trainable", "lossless_weights"):
            if not isinstance(getattr(caps, field), bool):
                wrong.append(f"capabilities.{field} must be a bool, got {type(getattr(caps, field)).__name__}")
    return "; ".join(wrong)


_lock = threading.RLock()
_registry: _Registry | None = None


def _get() -> _Registry:
    global _registry  # noqa: PLW0603  # the one registry, discovered on first use under the lock
    with _lock:
        if _registry is None:
            # published before discovery, so a plugin that asks the zoo while it is imported
            # sees the variants found so far instead of starting discovery again
            _registry = _Registry()
            _registry.load_entry_points()
        return _registry


def _reset() -> None:
    """Forget everything discovered; the next call discovers plugins again (for tests)."""
    global _registry  # noqa: PLW0603  # see _get
    with _lock:
        _registry = None


def plugin_manager() -> pluggy.PluginManager:
    """The underlying :class:`pluggy.PluginManager` (hook prefix, marker and entry-point group ``zoo``)."""
    return _get().pm


def list_variants(pattern: str | None = None, *, include_broken: bool = False) -> list[str]:
    """Names of the registered variants, naturally sorted (``v2`` before ``v10``).

    :param pattern: shell-style wildcard (``"quant*"``, ``"?f"``, ``"[ph]*"``),
        matched case-insensitively; ``None`` lists all.
    :param include_broken: also list the names of broken plugins and of names
        claimed twice (:func:`broken_plugins` says why).
    """
    reg = _get()
    names = set(reg.variants)
    if include_broken:
        names |= set(reg.broken)
    if pattern is not None:
        names = {n for n in names if fnmatch.fnmatchcase(n, pattern.lower())}
    return sorted(names, key=_natural_key)


def broken_plugins() -> list[BrokenPlugin]:
    """Plugins that failed to import or to declare variants, and names claimed twice."""
    reg = _get()
    return [reg.broken[n] for n in sorted(reg.broken, key=_natural_key)]


def distribution_of(name: str) -> str | None:
    """The distribution that provides variant ``name`` (``None``: registered at run time)."""
    get_variant(name)
    return _get().distributions.get(name)


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
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownVariantError(
        f"no variant named {name!r}; {hint}known variants: {', '.join(known) or 'none'} "
        "(`zoo list` shows them with their status)"
    )


def resolve(spec: str) -> tuple[Variant, str | None]:
    """A ``NAME`` or ``NAME@PRECISION`` spec: the variant, and the dtype it asks for (``None``: the default).

    ``PRECISION`` is one of the variant's declared dtypes (``pure@bfloat16``),
    or names a variant ``NAME-PRECISION`` (``onnxruntime@int8`` is
    ``onnxruntime-int8``, ``quantised@int4`` is ``quantised-int4``).

    :raises UnknownVariantError: for an unknown name, or a precision neither way offers, naming those there are.
    """
    name, at, precision = spec.partition("@")
    if not at:
        return get_variant(name), None
    variant = get_variant(name)
    if precision in variant.capabilities.dtypes:
        return variant, precision
    siblings = {v.precision: v for v in map(get_variant, list_variants(f"{name}-*")) if v.name == f"{name}-{v.precision}"}
    if precision in siblings:
        return siblings[precision], None
    offered = [*variant.capabilities.dtypes, *siblings]
    raise UnknownVariantError(f"{name} has no precision {precision!r}; it offers {', '.join(offered)} "
                              f"({name}@PRECISION)")


def register(variant: Variant) -> Variant:
    """Add a variant defined at run time (in a notebook, a test) and return it.

    Its ``source`` says where it was registered unless it names one itself.

    :raises DuplicateVariantError: if the name is taken, naming both sources.
    """
    if not isinstance(variant, Variant):
        raise TypeError(f"register() takes a zoo.Variant, got {type(variant).__name__}")
    if not variant.source:
        caller = inspect.currentframe()
        caller = caller.f_back if caller is not None else None
        where = f"{caller.f_code.co_filename}:{caller.f_lineno}" if caller is not None else "unknown"
        variant = replace(variant, source=f"registered at run time from {where}")
    reg = _get()
    with _lock:
        reg._add(variant, None, raise_on_clash=True)
    return variant


def unregister(name: str) -> Variant:
    """Remove a variant (one added by :func:`register`, or any other) and return it.

    :raises UnknownVariantError: if no variant has that name.
    """
    reg = _get()
    with _lock:
        if name not in reg.variants:
            get_variant(name)  # raises the helpful error
        reg.distributions.pop(name, None)
        return reg.variants.pop(name)
