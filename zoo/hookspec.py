"""Hook specifications: what a zoo plugin may implement.

A plugin is a module (or any object) with functions marked ``@zoo.hookimpl``,
named after the hooks below. Third-party plugins are found through the
``zoo`` entry-point group::

    # pyproject.toml of your package
    [project.entry-points.zoo]
    my-variant = "my_package.zoo_plugin"

The built-in variants are registered through the very same group. Set
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
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
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
