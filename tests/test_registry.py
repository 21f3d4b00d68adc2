"""The pluggy registry: built-ins through entry points, third-party discovery, and everything that can go wrong.

Third-party plugins are simulated without installing anything: a temporary
folder holding ``<name>-1.0.dist-info/`` (METADATA and entry_points.txt) and the
plugin module is put on ``sys.path``, which is all ``importlib.metadata`` needs.
"""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest

import zoo
import zoo._registry as registry
from zoo import hookspec

REPO_ROOT = Path(zoo.__file__).resolve().parent.parent

GOOD_PLUGIN = """
import zoo

def _build(config, *, device="cpu", dtype=None):
    return zoo.get_variant("pure").build(config, device=device, dtype=dtype)

@zoo.hookimpl
def zoo_variants():
    return [zoo.Variant(name={name!r}, build=_build, summary="a third-party GPT-2")]
"""


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Every test discovers plugins afresh, and leaves the global registry and sys.modules as it found them."""
    monkeypatch.delenv(registry.DISABLE_AUTOLOAD_ENV, raising=False)
    modules = dict(sys.modules)
    registry._reset()
    yield
    registry._reset()
    for name in set(sys.modules) - set(modules):
        if name.startswith(("fake_", "plugins")):  # the test's own plugin modules, nothing else
            del sys.modules[name]
    sys.modules.update({k: v for k, v in modules.items() if k == "plugins" or k.startswith("plugins.")})


@pytest.fixture
def site(tmp_path, monkeypatch):
    """``site(dist, {entry_point: module}, {module: source})`` fakes an installed distribution."""

    def make(dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        root = tmp_path / dist
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = [f"{name} = {module}" for name, module in entry_points.items()]
        (info / "entry_points.txt").write_text("[zoo]\n" + "\n".join(lines) + "\n")
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(root))
        registry._reset()
        return root

    return make


def broken_by_name() -> dict[str, registry.BrokenPlugin]:
    return {b.name: b for b in zoo.broken_plugins()}


# -- built-ins ------------------------------------------------------------------------


def test_builtins_come_through_this_distributions_entry_points():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=hookspec.PROJECT)}
    for name in ("pure", "hf"):
        assert eps[name].dist is not None and eps[name].dist.name == registry.DISTRIBUTION
        assert eps[name].value == f"plugins.{name}"
        assert zoo.get_variant(name).source.startswith(f"{registry.DISTRIBUTION} ")
        assert registry.distribution_of(name) == registry.DISTRIBUTION


@pytest.mark.parametrize("name", ["pure", "hf"])
def test_builtin_plugin_modules_are_this_distributions_files(name):
    plugin = zoo.plugin_manager().get_plugin(name)
    assert plugin is not None, zoo.plugin_manager().list_name_plugin()
    plugin_file = Path(plugin.__file__).resolve()
    assert plugin_file == REPO_ROOT / "plugins" / name / "__init__.py"
    build = zoo.get_variant(name).build
    build_module = sys.modules[getattr(build, "func", build).__module__]  # a declaration's build is a partial
    where = Path(build_module.__file__).resolve()
    assert where.is_relative_to(REPO_ROOT / "plugins" / name) or where.is_relative_to(REPO_ROOT / "zoo" / "nn")


def test_a_foreign_plugins_package_cannot_pose_as_a_builtin(tmp_path, monkeypatch):
    fake = tmp_path / "plugins" / "pure"
    fake.mkdir(parents=True)
    (tmp_path / "plugins" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text(GOOD_PLUGIN.format(name="pure"))
    for name in [n for n in sys.modules if n == "plugins" or n.startswith("plugins.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._reset()

    broken = broken_by_name()
    assert "pure" in broken, zoo.list_variants()
    assert "shadows it" in broken["pure"].message and str(tmp_path) in broken["pure"].message
    with pytest.raises(zoo.BrokenPluginError, match="shadows"):
        zoo.get_variant("pure")


def test_hookspec_is_documented_and_named_after_the_project():
    assert hookspec.PROJECT == "zoo"
    hooks = [n for n in dir(hookspec) if n.startswith("zoo_")]
    assert hooks == ["zoo_addcommands", "zoo_variants"]
    for hook in hooks:
        doc = getattr(hookspec, hook).__doc__
        assert doc and "Example::" in doc and "Called once" in doc
    assert ":returns:" in hookspec.zoo_variants.__doc__
    assert ":param subparsers:" in hookspec.zoo_addcommands.__doc__
    assert zoo.plugin_manager().project_name == "zoo"
    assert zoo.hookimpl.project_name == "zoo"


def test_the_harness_is_a_builtin_plugin_that_adds_commands_and_no_variants():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=hookspec.PROJECT)}
    assert eps["conformance"].value == "conformance.cli"
    assert eps["conformance"].dist is not None and eps["conformance"].dist.name == registry.DISTRIBUTION
    plugin = zoo.plugin_manager().get_plugin("conformance")
    assert plugin is not None and "conformance" not in broken_by_name()
    callers = {caller.name for caller in zoo.plugin_manager().get_hookcallers(plugin) or []}
    assert callers == {"zoo_addcommands"}


# -- third-party plugins ----------------------------------------------------------------


def test_third_party_variant_is_found_with_its_distribution(site, small_config):
    site("fake-dist", {"fake": "fake_zoo_good"}, {"fake_zoo_good": GOOD_PLUGIN.format(name="fake-good")})
    assert "fake-good" in zoo.list_variants()
    assert {"pure", "hf"} <= set(zoo.list_variants())
    variant = zoo.get_variant("fake-good")
    assert variant.source.startswith("fake-dist 1.0")
    assert registry.distribution_of("fake-good") == "fake-dist"
    model = zoo.load("fake-good", config=small_config)
    assert model.config == small_config


def test_plugin_that_fails_to_import_is_listed_broken_and_the_rest_works(site):
    site("fake-dist", {"fake-broken": "fake_zoo_boom"}, {"fake_zoo_boom": "raise RuntimeError('boom')\n"})
    broken = broken_by_name()
    assert broken["fake-broken"].message == "RuntimeError: boom"
    assert broken["fake-broken"].source.startswith("fake-dist 1.0")
    assert "fake-broken" in zoo.list_variants(include_broken=True)
    assert "fake-broken" not in zoo.list_variants()
    assert zoo.get_variant("pure").name == "pure"
    with pytest.raises(zoo.BrokenPluginError, match="boom") as info:
        zoo.get_variant("fake-broken")
    assert "fake-dist" in str(info.value)


def test_plugin_calling_sys_exit_on_import_is_broken_not_fatal(site):
    site("fake-dist", {"fake-exit": "fake_zoo_exit"}, {"fake_zoo_exit": "import sys\nsys.exit(3)\n"})
    assert broken_by_name()["fake-exit"].message.startswith("SystemExit")
    assert "pure" in zoo.list_variants()


def test_misspelled_hook_marks_the_plugin_broken_with_a_suggestion(site):
    source = """
    import zoo

    @zoo.hookimpl
    def zoo_variant():
        return []
    """
    site("fake-dist", {"fake-typo": "fake_zoo_typo"}, {"fake_zoo_typo": source})
    message = broken_by_name()["fake-typo"].message
    assert "did you mean 'zoo_variants'" in message
    assert "'zoo_variant'" in message
    assert zoo.plugin_manager().get_plugin("fake-dist:fake-typo") is None  # unregistered again
    assert zoo.get_variant("pure").name == "pure"
    zoo.plugin_manager().check_pending()  # nothing unknown is left behind


def test_hook_without_the_marker_is_reported(site):
    source = """
    import zoo

    def zoo_variants():
        return [zoo.Variant(name="fake-unmarked", build=None, summary="")]
    """
    site("fake-dist", {"fake-unmarked": "fake_zoo_unmarked"}, {"fake_zoo_unmarked": source})
    assert "@zoo.hookimpl" in broken_by_name()["fake-unmarked"].message
    assert "fake-unmarked" not in zoo.list_variants()


def test_plugin_that_only_adds_commands_is_not_broken(site):
    source = """
    import zoo

    @zoo.hookimpl
    def zoo_addcommands(subparsers):
        subparsers.add_parser("fake-hello")
    """
    site("fake-dist", {"fake-commands": "fake_zoo_commands"}, {"fake_zoo_commands": source})
    assert "fake-commands" not in broken_by_name()
    assert zoo.plugin_manager().get_plugin("fake-dist:fake-commands") is not None
    assert "fake-commands" not in zoo.list_variants(include_broken=True)  # a plugin, not a variant
    assert {"pure", "hf"} <= set(zoo.list_variants())


def test_plugin_implementing_no_hook_names_every_hook(site):
    source = """
    def helper():
        return 1
    """
    site("fake-dist", {"fake-none": "fake_zoo_none"}, {"fake_zoo_none": source})
    message = broken_by_name()["fake-none"].message
    assert "implements no zoo hook" in message
    assert "zoo_addcommands()" in message and "zoo_variants()" in message
    assert zoo.plugin_manager().get_plugin("fake-dist:fake-none") is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return None", "must return a list of zoo.Variant, got NoneType"),
        ("return ['pure']", "must return zoo.Variant objects, got str"),
        ("raise ValueError('cannot declare')", "ValueError: cannot declare"),
    ],
)
def test_bad_declarations_mark_the_plugin_broken(site, body, error):
    source = f"import zoo\n\n@zoo.hookimpl\ndef zoo_variants():\n    {body}\n"
    site("fake-dist", {"fake-bad": "fake_zoo_bad"}, {"fake_zoo_bad": source})
    assert error in broken_by_name()["fake-bad"].message
    assert {"pure", "hf"} <= set(zoo.list_variants())


def test_invalid_variant_name_is_refused(site):
    site("fake-dist", {"fake": "fake_zoo_caps"}, {"fake_zoo_caps": GOOD_PLUGIN.format(name="Bad Name")})
    assert "invalid variant name 'Bad Name'" in broken_by_name()["Bad Name"].message


def test_duplicate_name_across_two_distributions_raises_naming_both(site):
    site("dist-a", {"a": "fake_zoo_a"}, {"fake_zoo_a": GOOD_PLUGIN.format(name="fake-dup")})
    site("dist-b", {"b": "fake_zoo_b"}, {"fake_zoo_b": GOOD_PLUGIN.format(name="fake-dup")})
    assert "fake-dup" not in zoo.list_variants()
    assert "fake-dup" in zoo.list_variants(include_broken=True)
    with pytest.raises(zoo.DuplicateVariantError) as info:
        zoo.get_variant("fake-dup")
    assert "dist-a 1.0" in str(info.value) and "dist-b 1.0" in str(info.value)


def test_third_party_claiming_a_builtin_name_is_refused_and_the_builtin_keeps_it(site, capsys):
    # site() puts the third party first on sys.path: its entry point is found before the built-in's
    site("dist-a", {"a": "fake_zoo_pure"}, {"fake_zoo_pure": GOOD_PLUGIN.format(name="pure")})
    assert zoo.get_variant("pure").source.startswith(registry.DISTRIBUTION)
    assert "pure" in zoo.list_variants()
    refused = broken_by_name()["dist-a:pure"]
    assert isinstance(refused.error, zoo.DuplicateVariantError)
    assert "dist-a 1.0" in refused.message and registry.DISTRIBUTION in refused.message
    assert "is a built-in variant" in refused.message and "rename the third-party variant" in refused.message
    from zoo._cli import main

    assert main(["list"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert any(row[:3] == ["dist-a:pure", "broken", "DuplicateVariantError:"] for row in rows), rows
    assert any(row[:2] == ["pure", "ok"] for row in rows)


BAD_FIELDS_PLUGIN = """
import zoo

def _build(config, *, device="cpu", dtype=None):
    return zoo.get_variant("pure").build(config, device=device, dtype=dtype)

@zoo.hookimpl
def zoo_variants():
    return [zoo.Variant(name="fake-bad-fields", build=_build, summary="a third-party GPT-2", {fields}),
            zoo.Variant(name="fake-fine", build=_build, summary="declared next to it, and fine")]
"""


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ("capabilities=None", "capabilities must be a Capabilities, got NoneType"),
        ("tolerances={}", "tolerances must be a Tolerances, got dict"),
        ("notes=3", "notes must be a str, got int"),
        ("capabilities=zoo.Capabilities(devices=None)", "capabilities.devices must be a non-empty tuple of str"),
        ("capabilities=zoo.Capabilities(kv_cache='yes')", "capabilities.kv_cache must be a bool, got str"),
        ("precision='q5_k'", "precision 'q5_k' is not one the zoo knows: declare one of float64, float32"),
    ],
)
def test_a_variant_with_fields_of_the_wrong_type_is_isolated_as_broken(site, fields, error, capsys):
    site("fake-dist", {"fake": "fake_zoo_fields"}, {"fake_zoo_fields": BAD_FIELDS_PLUGIN.format(fields=fields)})
    broken = broken_by_name()["fake-bad-fields"]
    assert isinstance(broken.error, TypeError) and error in broken.message and "fake-dist 1.0" in broken.message
    assert {"pure", "fake-fine"} <= set(zoo.list_variants())
    with pytest.raises(zoo.BrokenPluginError, match=error.split(",")[0]):
        zoo.get_variant("fake-bad-fields")
    from zoo._cli import main

    assert main(["list"]) == 0  # zoo list still works for everyone, and shows why
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert any(row[:3] == ["fake-bad-fields", "broken", "TypeError:"] for row in rows), rows
    assert any(row[:2] == ["fake-fine", "ok"] for row in rows) and any(row[:2] == ["pure", "ok"] for row in rows)


def test_two_distributions_may_use_the_same_entry_point_name(site):
    site("dist-a", {"shared": "fake_zoo_a"}, {"fake_zoo_a": GOOD_PLUGIN.format(name="fake-a")})
    site("dist-b", {"shared": "fake_zoo_b"}, {"fake_zoo_b": GOOD_PLUGIN.format(name="fake-b")})
    assert {"fake-a", "fake-b"} <= set(zoo.list_variants())


def test_plugin_may_use_the_zoo_while_it_is_imported(site):
    source = GOOD_PLUGIN.format(name="fake-eager") + "\nSEEN = zoo.list_variants()\n"
    site("fake-dist", {"fake": "fake_zoo_eager"}, {"fake_zoo_eager": source})
    assert "fake-eager" in zoo.list_variants()  # no deadlock, no second discovery
    assert isinstance(sys.modules["fake_zoo_eager"].SEEN, list)


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_disable_autoload_hides_third_party_but_keeps_builtins(site, monkeypatch, value):
    site("fake-dist", {"fake": "fake_zoo_good"}, {"fake_zoo_good": GOOD_PLUGIN.format(name="fake-good")})
    assert "fake-good" in zoo.list_variants()
    monkeypatch.setenv(registry.DISABLE_AUTOLOAD_ENV, value)
    registry._reset()
    assert "fake-good" not in zoo.list_variants(include_broken=True)
    assert {"pure", "hf"} <= set(zoo.list_variants())


def test_disable_autoload_off_values_still_load(site, monkeypatch):
    monkeypatch.setenv(registry.DISABLE_AUTOLOAD_ENV, "0")
    site("fake-dist", {"fake": "fake_zoo_good"}, {"fake_zoo_good": GOOD_PLUGIN.format(name="fake-good")})
    assert "fake-good" in zoo.list_variants()


# -- run-time registration and lookup ------------------------------------------------------


def _build(config, *, device="cpu", dtype=None):
    return zoo.get_variant("pure").build(config, device=device, dtype=dtype)


def test_register_at_run_time_and_unregister(small_config):
    variant = zoo.register(zoo.Variant(name="zz-runtime", build=_build, summary="defined in a test"))
    assert "test_registry.py" in variant.source
    assert zoo.get_variant("zz-runtime") is variant
    assert registry.distribution_of("zz-runtime") is None
    assert zoo.load("zz-runtime", config=small_config).config == small_config
    assert zoo.unregister("zz-runtime") is variant
    with pytest.raises(zoo.UnknownVariantError):
        zoo.get_variant("zz-runtime")
    with pytest.raises(zoo.UnknownVariantError):
        zoo.unregister("zz-runtime")


def test_register_duplicate_raises_naming_both_sources():
    zoo.register(zoo.Variant(name="zz-twice", build=_build, summary="first", source="the first notebook"))
    with pytest.raises(zoo.DuplicateVariantError) as info:
        zoo.register(zoo.Variant(name="zz-twice", build=_build, summary="second"))
    assert "the first notebook" in str(info.value) and "test_registry.py" in str(info.value)
    assert zoo.get_variant("zz-twice").summary == "first"  # the first one is kept
    with pytest.raises(zoo.DuplicateVariantError, match=registry.DISTRIBUTION):
        zoo.register(zoo.Variant(name="pure", build=_build, summary="shadowing pure"))
    assert zoo.get_variant("pure").source.startswith(registry.DISTRIBUTION)


@pytest.mark.parametrize(
    ("variant", "error"),
    [
        ("not a variant", TypeError),
        (zoo.Variant(name="Has Spaces", build=_build, summary=""), ValueError),
        (zoo.Variant(name="zz-nobuild", build="nope", summary=""), TypeError),  # type: ignore[arg-type]
        (zoo.Variant(name="zz-nobuild", build=_build, summary="", capabilities=None), TypeError),  # type: ignore[arg-type]
    ],
)
def test_register_rejects_bad_variants(variant, error):
    with pytest.raises(error):
        zoo.register(variant)
    assert "zz-nobuild" not in zoo.list_variants()


def test_list_variants_wildcards_and_natural_sort():
    for name in ("zz-v10", "zz-v2", "zz-v1", "zz-w1"):
        zoo.register(zoo.Variant(name=name, build=_build, summary=""))
    assert zoo.list_variants("zz-v*") == ["zz-v1", "zz-v2", "zz-v10"]
    assert zoo.list_variants("zz-?1") == ["zz-v1", "zz-w1"]
    assert zoo.list_variants("zz-[w]*") == ["zz-w1"]
    assert zoo.list_variants("ZZ-V1*") == ["zz-v1", "zz-v10"]
    assert zoo.list_variants("nothing-matches-*") == []
    everything = zoo.list_variants()
    assert everything.index("zz-v2") < everything.index("zz-v10")
    assert everything == sorted(everything, key=registry._natural_key)


def test_unknown_name_lists_close_matches():
    with pytest.raises(zoo.UnknownVariantError) as info:
        zoo.get_variant("pur")
    message = str(info.value)
    assert "did you mean 'pure'" in message and "known variants:" in message and "hf" in message
    assert not message.startswith('"')  # not quoted like a KeyError
    assert isinstance(info.value, LookupError)
    with pytest.raises(zoo.UnknownVariantError) as info:
        zoo.get_variant("qqqqqqqq")
    assert "did you mean" not in str(info.value)


def test_reset_forgets_run_time_registrations():
    zoo.register(zoo.Variant(name="zz-ephemeral", build=_build, summary=""))
    registry._reset()
    assert "zz-ephemeral" not in zoo.list_variants()
