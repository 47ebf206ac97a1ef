"""Fault injection for end-to-end tests: put this directory first on PYTHONPATH and set PILOT_TEST_SHIM.

    hide:MODULE                      the module cannot be imported (a Python without it): ModuleNotFoundError
    raise:MODULE:CLASS.METHOD:EXC    calling the method raises EXC (a builtin exception), like a bug in it

Several faults are separated by ";". The pilot itself is never changed: a test sees what a real pilot does when
one of its parts fails in a way no real input can (yet) provoke.
"""

import builtins
import importlib
import importlib.abc
import os
import sys


class _Hide(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by the test shim)", name=fullname)
        return None


def _raiser(exc_type, where):
    def method(*_args, **_kwargs):
        raise exc_type(f"injected by the test shim into {where}")
    return method


def _install(spec):
    kind, _, rest = spec.partition(":")
    if kind == "hide":
        sys.meta_path.insert(0, _Hide(rest.split(",")))
    elif kind == "raise":
        module_name, attr_path, exc_name = rest.split(":")
        owner = importlib.import_module(module_name)
        *owners, method = attr_path.split(".")
        for name in owners:
            owner = getattr(owner, name)
        setattr(owner, method, _raiser(getattr(builtins, exc_name), f"{module_name}.{attr_path}"))
    else:
        raise ValueError(f"PILOT_TEST_SHIM: unknown fault {spec!r}")


for _spec in filter(None, os.environ.get("PILOT_TEST_SHIM", "").split(";")):
    _install(_spec)
