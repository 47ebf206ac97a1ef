"""The one plug-in registry: names -> classes, imported only when chosen, unknown names give the kind's code."""

import sys

import pytest

from pilot.errors import PilotError
from pilot.registry import CHANNELS, CHECKS, CONTAINER_RUNTIMES, COPYTOOLS, DEFAULT_CHECKS, Registry


def test_every_registered_plugin_resolves_to_a_class():
    for registry in (CHANNELS, COPYTOOLS, CONTAINER_RUNTIMES, CHECKS):
        for name in registry.names():
            assert isinstance(registry.get(name), type), (registry.kind, name)
    assert set(DEFAULT_CHECKS) <= set(CHECKS.names())


def test_unknown_name_is_the_kinds_code_with_the_choices():
    with pytest.raises(PilotError) as err:
        COPYTOOLS.get("ftp")
    assert err.value.code == 1323 and "mv" in err.value.diag
    with pytest.raises(PilotError) as err:
        CONTAINER_RUNTIMES.get("docker")
    assert err.value.code == 1341 and "apptainer" in err.value.diag


def test_plugins_are_imported_only_when_chosen(monkeypatch):
    registry = Registry("thing", 1008, {"lazy": "tests.unit.lazy_plugin_never_imported:Thing"})
    assert "lazy" in registry and "tests.unit.lazy_plugin_never_imported" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        registry.get("lazy")


def test_register_adds_and_replaces():
    class Mine:
        def __init__(self, value):
            self.value = value

    registry = Registry("thing", 1008, {"a": "pilot.trigger:Trigger"})
    registry.register("b", Mine)
    assert registry.names() == ["a", "b"]
    assert registry.create("b", 3).value == 3
    registry.register("a", Mine)
    assert registry.get("a") is Mine
    with pytest.raises(ValueError):
        registry.register("", Mine)
