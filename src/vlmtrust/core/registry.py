"""One registry type for probes and mitigations: decorator, built-ins, plug-ins, look-up."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from vlmtrust.core.errors import InputError

_T = TypeVar("_T", bound=type)


class Registry(Generic[_T]):
    """Classes registered by name, with the built-in package and plug-ins loaded on first use.

    Args:
        kind: what is registered (``"probe"``), for messages.
        package: the built-in package whose public modules are imported on first use.
        group: the entry-point group of third-party plug-ins (:mod:`vlmtrust.core.plugins`).
        base: the class every plug-in class must subclass.
    """

    def __init__(self, kind: str, package: str, group: str, base: type) -> None:
        self.kind, self.package, self.group, self.base = kind, package, group, base
        self.entries: dict[str, _T] = {}
        self.builtins_loaded = False
        self.plugins_loaded = False
        self.seen: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def decorator(self, name: str) -> Callable[[_T], _T]:
        """A class decorator registering the class under ``name`` (sets ``cls.name``)."""

        def deco(cls: _T) -> _T:
            if name in self.entries and self.entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self.entries[name] = cls
            return cls

        return deco

    def load(self) -> None:
        """Import the built-ins once, then any plug-in entry points not seen yet."""
        if not self.builtins_loaded:
            self.builtins_loaded = True  # set first: a module may look the registry up
            try:
                pkg = importlib.import_module(self.package)
                for mod in pkgutil.walk_packages(pkg.__path__, prefix=f"{self.package}."):
                    if not mod.ispkg and not mod.name.rsplit(".", 1)[-1].startswith("_"):
                        importlib.import_module(mod.name)
            except BaseException:
                self.builtins_loaded = False  # a failed import is raised again next time
                raise
        if not self.plugins_loaded:
            self.load_plugins()

    def load_plugins(self) -> None:
        """Load this registry's entry points; those already loaded are skipped."""
        from vlmtrust.core.plugins import load_entry_points

        self.plugins_loaded = True
        load_entry_points(
            self.group,
            base=self.base,
            register=lambda name, cls: self.decorator(name)(cast(_T, cls)),
            registered=lambda cls: cls in self.entries.values(),
            seen=self.seen,
        )

    def all(self) -> dict[str, _T]:
        """Every registered class by name, sorted (loads built-ins and plug-ins first)."""
        self.load()
        return dict(sorted(self.entries.items()))

    def get(self, name: str) -> _T:
        """Look a class up by name; an unknown name is one line with close matches."""
        reg = self.all()
        if name not in reg:
            close = difflib.get_close_matches(name, list(reg), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InputError(
                f"unknown {self.kind} {name!r}.{hint} "
                f"Run `vlmtrust list {self.kind}s` to see the known ones."
            )
        return reg[name]
