"""The harness's hypothesis settings profiles, registered in one place.

=============  ===========================================================
``quick``      a smoke run: a handful of examples per property
``ci``         the default: extends hypothesis' own ``ci`` profile
               (derandomised, no database, prints a replay blob, no deadline)
``thorough``   many random examples, for a nightly run
=============  ===========================================================

They are registered with hypothesis as ``zoo-quick``, ``zoo-ci`` and
``zoo-thorough`` and applied to the harness's own test functions only; nothing
here loads a profile globally. None has an example database: ``zoo check``
adds the user's at run time (:mod:`conformance.database`), so the test suite
and a host's own tests write none. ``zoo check --profile P``, ``pytest
--zoo-profile P`` and the ``HYPOTHESIS_PROFILE`` environment variable (``ci``
or ``zoo-ci`` alike) choose one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import InvalidArgument

__all__ = ["DEFAULT", "ENV", "PROFILES", "get", "resolve"]

ENV = "HYPOTHESIS_PROFILE"
DEFAULT = "ci"
PREFIX = "zoo-"

# Model builds and references make examples slow and their inputs large by
# hypothesis' standards; neither is a problem with the code under test.
_SLOW = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example)

settings.register_profile(
    PREFIX + "quick",
    max_examples=5,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=_SLOW,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)
settings.register_profile(
    PREFIX + "ci",
    parent=settings.get_profile("ci"),
    max_examples=25,
    report_multiple_bugs=False,  # one shrunk counterexample per property is what a reader needs
    suppress_health_check=_SLOW,
    # the explain phase traces every line the failing example runs, torch and transformers
    # included: it multiplied the time to report a failure by five; `thorough` keeps it
    phases=tuple(p for p in settings.get_profile("ci").phases if p != Phase.explain),
)
settings.register_profile(
    PREFIX + "thorough",
    max_examples=300,
    derandomize=False,  # a fresh seed each night; the reproducer names it
    database=None,
    deadline=None,
    print_blob=True,
    report_multiple_bugs=False,
    suppress_health_check=_SLOW,
)

PROFILES: tuple[str, ...] = ("quick", "ci", "thorough")


def resolve(name: str | None = None) -> str:
    """The short profile name for ``name``, ``$HYPOTHESIS_PROFILE``, or the default.

    Accepts ``ci`` and ``zoo-ci`` alike; an unknown name raises ``ValueError``
    listing the choices. A ``HYPOTHESIS_PROFILE`` that names a profile of
    someone else's (registered with hypothesis, not one of ours) is ignored in
    favour of the default; one that names no profile at all (a typo) raises
    ``ValueError`` naming ours, rather than running the default silently.
    """
    if name is None:
        raw = os.environ.get(ENV, "").strip()
        if not raw or raw.removeprefix(PREFIX) in PROFILES:
            return raw.removeprefix(PREFIX) or DEFAULT
        try:
            settings.get_profile(raw)
        except InvalidArgument:
            raise ValueError(
                f"{ENV}={raw!r} names no hypothesis profile; the harness's are {', '.join(PROFILES)} "
                f"(also as {PREFIX}{PROFILES[0]}...): set one of them, or unset {ENV} for {DEFAULT}"
            ) from None
        return DEFAULT
    short = name.strip().removeprefix(PREFIX)
    if short not in PROFILES:
        raise ValueError(f"unknown conformance profile {name!r}; choose one of {', '.join(PROFILES)}")
    return short


def get(name: str | None = None) -> settings:
    """The ``hypothesis.settings`` object for a profile (see :func:`resolve`)."""
    return settings.get_profile(PREFIX + resolve(name))


def is_derandomized(name: str | None = None) -> bool:
    return bool(get(name).derandomize)
