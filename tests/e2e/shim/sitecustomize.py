"""Fault injection for end-to-end tests: put this directory first on PYTHONPATH and set PILOT_TEST_SHIM.

    hide:MODULE                      the module cannot be imported (a Python without it): ModuleNotFoundError
    raise:MODULE:CLASS.METHOD:EXC    calling the method raises EXC (a builtin exception), like a bug in it
    swallow:MODULE:CLASS.METHOD:SIG  calling the method first runs the installed handler of signal SIG inside a
                                     weakref callback, where Python prints and drops what it raises (as when a
                                     signal lands in the import lock's clean-up), then the method itself

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


def _swallower(original, signame):
    def method(*args, **kwargs):
        import signal
        import weakref

        class _Dying:
            pass

        signum = getattr(signal, signame)
        handler = signal.getsignal(signum)
        dying = _Dying()
        ref = weakref.ref(dying, lambda _ref: handler(signum, None))  # noqa: F841 -- alive until `dying` goes
        del dying  # the callback runs here; what it raises is printed as "Exception ignored in" and dropped
        return original(*args, **kwargs)
    return method


def _target(rest):
    module_name, attr_path, arg = rest.split(":")
    owner = importlib.import_module(module_name)
    *owners, method = attr_path.split(".")
    for name in owners:
        owner = getattr(owner, name)
    return owner, method, arg


def _install(spec):
    kind, _, rest = spec.partition(":")
    if kind == "hide":
        sys.meta_path.insert(0, _Hide(rest.split(",")))
    elif kind == "raise":
        owner, method, exc_name = _target(rest)
        setattr(owner, method, _raiser(getattr(builtins, exc_name), rest.rpartition(":")[0]))
    elif kind == "swallow":
        owner, method, signame = _target(rest)
        setattr(owner, method, _swallower(getattr(owner, method), signame))
    else:
        raise ValueError(f"PILOT_TEST_SHIM: unknown fault {spec!r}")


for _spec in filter(None, os.environ.get("PILOT_TEST_SHIM", "").split(";")):
    _install(_spec)
