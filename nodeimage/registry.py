"""The registry every variant subpackage keeps (distros, stacks, cni, formats): a unit per module.

A subpackage creates one ``Registry``; each of its modules registers its
unit at import; the first lookup imports every module of the package, so
adding a variant is adding a module, and an unknown name is one error that
lists the known ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from nodeimage.log import die


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Units of one kind (``what``, e.g. "stack"), found in the modules of ``package`` (its ``__path__``)."""

    def __init__(self, what: str, package: str, path: Iterable[str]) -> None:
        self.what = what
        self.package = package
        self.path = list(path)
        self._units: dict[str, T] = {}
        self._loaded = False

    def register(self, unit: T) -> T:
        if unit.name in self._units:
            raise ValueError(f"{self.what} {unit.name!r} registered twice")
        self._units[unit.name] = unit
        return unit

    def load(self) -> dict[str, T]:
        """Every unit, after importing every module of the package once."""
        if not self._loaded:
            self._loaded = True
            for mod in pkgutil.iter_modules(self.path):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{mod.name}")
        return self._units

    def names(self) -> list[str]:
        return sorted(self.load())

    def get(self, name: str, known: Iterable[str] | None = None) -> T:
        """The unit ``name``; die listing the known ones (``known``: the names to offer, default all)."""
        units = self.load()
        if name not in units:
            offered = ", ".join(known if known is not None else sorted(units))
            die(f"unknown {self.what} {name!r}", hint=f"known: {offered}")
        return units[name]
