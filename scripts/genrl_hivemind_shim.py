"""Give PyPI's hivemind 1.1.12 the top-level names gensyn-genrl 0.3.0 imports from it.

genrl 0.3.0 was written against Gensyn's hivemind fork, whose `hivemind/__init__.py`
re-exports `hivemind.utils.*` and `hivemind.p2p`'s classes; `HivemindBackend` does
`from hivemind import get_dht_time`, which fails on 1.1.12. Editing genrl's installed
files would be lost on every reinstall, and a `sitecustomize` that imports hivemind would
load torch into every Python process. Instead, scripts/setup.sh copies this file into the
venv's site-packages next to a `genrl_hivemind_shim.pth` that imports it: the import adds
one meta-path finder (no hivemind, no torch at interpreter start), and the finder wraps
the loader of the top-level `hivemind` module so that, right after hivemind's own
`__init__` has run, the missing names are set on it. Names hivemind already defines are
never replaced.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

# Where the fork's top-level names come from (its __init__ star-imports these).
SOURCES = ("hivemind.utils", "hivemind.p2p")


def add_missing_names(hivemind: ModuleType) -> list[str]:
    """Set on `hivemind` each public name of SOURCES it lacks; returns the names added."""
    import importlib

    added = []
    for source in SOURCES:
        module = importlib.import_module(source)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            if not hasattr(hivemind, name) and hasattr(module, name):
                setattr(hivemind, name, getattr(module, name))
                added.append(name)
    return added


class _PatchingLoader(importlib.abc.Loader):
    """hivemind's own loader, plus `add_missing_names` once its module body has run."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        add_missing_names(module)


class HivemindFinder(importlib.abc.MetaPathFinder):
    """Finds `hivemind` through the finders after it and wraps the loader it gets."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "hivemind":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Idempotent: one finder, first in line; a hivemind already imported is patched now."""
    if any(isinstance(f, HivemindFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, HivemindFinder())
    loaded = sys.modules.get("hivemind")
    if loaded is not None:
        add_missing_names(loaded)


install()
