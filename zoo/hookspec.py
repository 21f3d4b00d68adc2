"""Hook specifications: what a zoo plugin may implement.

A plugin is a module (or any object) with functions marked ``@zoo.hookimpl``,
named after the hooks below: :func:`zoo_variants` declares GPT-2 variants,
:func:`zoo_addcommands` adds subcommands to the ``zoo`` command line. A plugin
implements one or both. Third-party plugins are found through the ``zoo``
entry-point group::

    # pyproject.toml of your package
    [project.entry-points.zoo]
    my-variant = "my_package.zoo_plugin"

The built-in variants are registered through the very same group, and so is
the conformance harness, which adds ``zoo check``. Set
``ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` to load only the built-ins. Hooks are called
with keyword arguments, and an implementation may accept fewer arguments than
its specification, so specifications can grow without breaking plugins.

A plugin that fails to import, implements a hook that is not specified here
(``zoo_variant`` for ``zoo_variants``: pluggy's ``check_pending``), implements
none, or declares a name another source already uses is listed as broken by
``zoo list``, with its error; the rest of the zoo keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from ._interface import Variant

#: The project name: the hookspec marker, the ``zoo_`` hook prefix and the entry-point group.
PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec  # a specification's body is its docstring: pluggy never calls it
def zoo_variants() -> Sequence[Variant]:  # type: ignore[empty-body]
    """Declare the GPT-2 variants this plugin provides.

    :returns: A sequence of :class:`zoo.Variant`; each name must be unique in
        the zoo, and a clash with another source's variant marks the name as
        broken, naming both sources.

    Called once per plugin when the registry is first used. Keep it cheap:
    import heavy libraries inside ``Variant.build``, not at module level, so
    that ``zoo list`` stays fast and a missing optional dependency only breaks
    the variant that needs it. An exception raised here marks the plugin as
    broken, with its error, without affecting the rest of the zoo.

    Example::

        @zoo.hookimpl
        def zoo_variants():
            return [zoo.Variant(name="my-gpt2", build=MyGPT2.build, summary="...")]
    """


@hookspec
def zoo_addcommands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add subcommands to the ``zoo`` command line.

    :param subparsers: The ``zoo`` parser's sub-parsers, as
        :meth:`argparse.ArgumentParser.add_subparsers` returns them. Call its
        ``add_parser(name, help=...)`` once per command, and give each parser a
        ``func`` default: the function ``zoo`` calls with the parsed
        :class:`argparse.Namespace`, returning the exit status.

    Called once per plugin each time ``zoo`` builds its parser, after the
    built-in commands (``list``, ``info``, ``generate``, ``convert``,
    ``bench``), so a name already taken is an error. It runs on every ``zoo``
    invocation, ``zoo list`` included: keep it cheap, and import what the
    command needs inside ``func``. A :class:`zoo.ZooError` raised by ``func``
    is printed as one line, ``zoo: error: ...``, with exit status 1.

    An exception raised here is logged naming the plugin; the other commands
    keep working, and a command the plugin added before it raised says, when
    run, that its plugin failed. The conformance harness adds ``zoo check``
    through this hook.

    Example::

        @zoo.hookimpl
        def zoo_addcommands(subparsers):
            p = subparsers.add_parser("hello", help="greet a variant")
            p.add_argument("name")
            p.set_defaults(func=lambda args: print(f"hello, {zoo.get_variant(args.name).name}") or 0)
    """
