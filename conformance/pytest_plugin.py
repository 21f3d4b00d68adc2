"""The pytest plugin (entry point ``pytest11``): ``pytest --zoo-variant NAME`` runs the harness.

A package that provides a variant tests it in its own CI with one line::

    pytest --zoo-variant my-variant [--zoo-profile quick|ci|thorough] [--zoo-device cpu|cuda]

(or ``ZOO_VARIANT=my-variant pytest``). Failing examples are kept in the
same example database as ``zoo check`` keeps them (``--zoo-database DIR``,
``--zoo-no-database``; see :mod:`conformance.database`) and replayed first
next time. The plugin then adds one test item
per property, ``zoo-conformance[NAME]::PROPERTY``, to whatever else pytest
collects; ``-k padding`` picks one. The interface item runs first, and if it
fails every property is skipped with that reason. The report header names
what is under test: the variant and its source, the torch, transformers and
hypothesis versions, the device and the profile.

Without ``--zoo-variant`` (and ``ZOO_VARIANT``) the plugin adds nothing and
imports nothing heavy. Tests of your own may take the chosen variant as the
``zoo_variant`` fixture.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import zoo

__all__ = ["ENV", "ConformanceItem", "zoo_variant"]

ENV = "ZOO_VARIANT"
_HOW = f"pass --zoo-variant NAME to pytest, or set the environment variable {ENV}=NAME"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zoo", "gpt2-zoo conformance harness")
    group.addoption("--zoo-variant", default=None, metavar="NAME",
                    help=f"run the GPT-2 conformance checks on this registered variant (or ${ENV})")
    group.addoption("--zoo-profile", default=None, metavar="PROFILE",
                    help="quick, ci (default, or $HYPOTHESIS_PROFILE) or thorough")
    group.addoption("--zoo-device", default="cpu", metavar="DEVICE", help="cpu (default) or cuda")
    group.addoption("--zoo-database", default=None, metavar="DIR",
                    help="hypothesis example database for failing examples (default: as zoo check, "
                         "$ZOO_HYPOTHESIS_DB or ~/.cache/gpt2-zoo/hypothesis)")
    group.addoption("--zoo-no-database", action="store_true", help="neither replay nor save failing examples")


def chosen_variant(config: pytest.Config) -> str | None:
    """The variant asked for by option or environment, or ``None``."""
    name = config.getoption("zoo_variant", None) or os.environ.get(ENV, "").strip()
    return name or None


def pytest_configure(config: pytest.Config) -> None:
    name = chosen_variant(config)
    if name is not None:
        config.pluginmanager.register(_Conformance(config, name), "zoo-conformance")


@pytest.fixture
def zoo_variant(request: pytest.FixtureRequest) -> zoo.Variant:
    """The variant chosen with ``--zoo-variant`` or ``$ZOO_VARIANT``."""
    import zoo

    name = chosen_variant(request.config)
    if name is None:
        pytest.fail(f"this test needs a GPT-2 variant to test and none was chosen: {_HOW}", pytrace=False)
    return zoo.get_variant(name)


class _Conformance:
    """Registered only when a variant was chosen: header, collection, clean-up."""

    def __init__(self, config: pytest.Config, name: str) -> None:
        from . import profiles

        self.name = name
        self.device = config.getoption("zoo_device", "cpu") or "cpu"
        try:
            self.profile = profiles.resolve(config.getoption("zoo_profile", None))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        self._interface: list[str] | None = None
        self.no_database = bool(config.getoption("zoo_no_database", False))
        self.database_path: str | None = config.getoption("zoo_database", None)
        self._database: Any = None

    def database(self) -> Any:
        """The variant's part of the example database, made once; ``None`` with ``--zoo-no-database``."""
        if self._database is None and not self.no_database:
            from .database import VariantDatabase, default_path, open_database

            path = self.database_path or default_path()
            self._database = VariantDatabase(open_database(path), self.name, self.device.split(":")[0])
        return self._database

    def variant(self) -> zoo.Variant:
        import zoo

        try:
            return zoo.get_variant(self.name)
        except zoo.ZooError as exc:
            raise pytest.UsageError(f"--zoo-variant {self.name}: {exc}") from exc

    def interface_problems(self) -> list[str]:
        if self._interface is None:
            from .properties import check_interface

            self._interface = check_interface(self.variant(), self.device)
        return self._interface

    def reproducer(self, prop: str) -> str:
        device = f" --zoo-device {self.device}" if self.device != "cpu" else ""
        return f"pytest --zoo-variant {self.name} --zoo-profile {self.profile}{device} -k {prop}"

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        import hypothesis
        import torch
        import transformers

        variant = self.variant()
        return [
            f"zoo conformance: variant {variant.name} from {variant.source or 'unknown source'}",
            (f"zoo conformance: torch {torch.__version__}, transformers {transformers.__version__}, "
             f"hypothesis {hypothesis.__version__}; device {self.device}; profile {self.profile}"),
            f"zoo conformance: failing examples {self._where()}",
        ]

    def _where(self) -> str:
        from .database import default_path

        return "not kept (--zoo-no-database)" if self.no_database else f"kept in {self.database_path or default_path()}"

    @pytest.hookimpl(tryfirst=True)  # before -k / -m deselect items
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        from .properties import PROPERTIES

        name = f"zoo-conformance[{self.name}]"
        suite = _Suite.from_parent(session, name=name, nodeid=name)
        ours: list[pytest.Item] = [ConformanceItem.from_parent(suite, name="interface", prop="interface",
                                                               checks=self)]
        ours += [ConformanceItem.from_parent(suite, name=p.name, prop=p.name, checks=self) for p in PROPERTIES]
        items.extend(ours)
        # let the terminal's "collected N items" count them
        report = pytest.CollectReport(suite.nodeid, "passed", None, list(ours))  # a list of Item | Collector
        config.hook.pytest_collectreport(report=report)

    def pytest_sessionfinish(self) -> None:
        from . import models

        models.clear()


class _Suite(pytest.Collector):
    def collect(self) -> list[pytest.Item]:  # pragma: no cover - items are made by the plugin
        return []


class ConformanceItem(pytest.Item):
    """One property of the harness for the chosen variant, as a pytest test."""

    def __init__(self, *, prop: str, checks: _Conformance, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prop = prop
        self.checks = checks

    def runtest(self) -> None:
        from . import profiles
        from .assertions import fail
        from .properties import Context, get_property
        from .runner import _device_problem

        variant = self.checks.variant()
        unusable = _device_problem(variant, self.checks.device)
        if unusable is not None:
            pytest.skip(unusable)
        problems = self.checks.interface_problems()
        if self.prop == "interface":
            if problems:
                fail(variant.name, "interface", "; ".join(problems), self.checks.reproducer("interface"))
            return
        if problems:
            pytest.skip(f"the interface check of {variant.name} failed")
        prop = get_property(self.prop)
        reason = prop.requires(variant.capabilities)
        if reason is not None:
            pytest.skip(reason)
        ctx = Context(variant, self.checks.device, self.checks.reproducer)
        prop.test(ctx, profiles.get(self.checks.profile), database=self.checks.database())()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from .assertions import ConformanceFailure

        exc = excinfo.value
        if isinstance(exc, ConformanceFailure):
            notes = [str(n) for n in getattr(exc, "__notes__", [])]
            return "\n".join([str(exc), *notes])
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"zoo conformance: {self.checks.name} {self.prop}"
