"""The one registry mechanism: named plugins of one kind, registered by decorator or through entry points.

Encoder backends, composers, projection-head kinds and training recipes are each a :class:`Registry`. A registry
lives in the module that defines its base (``cir_milvus.encoders.base``, ``cir_milvus.composers.base``,
``cir_milvus.heads.kinds``...); implementations import that module and register themselves, and the package's
``__init__`` imports its built-in implementations, so nothing imports "upward" (no import cycles).

Third-party packages extend a registry by declaring an entry point in its group, e.g. for composers::

    [project.entry-points."cir_milvus.composers"]
    mine = "my_pkg.composers:MyComposer"

Entry points are read once, on the first lookup; a plugin that fails to load (or is not of the registry's base) is
skipped with a warning, and a plugin never replaces a built-in of the same name.

Example:
    >>> class Shape:
    ...     sides = 0
    >>> shapes = Registry("shape", Shape)
    >>> @shapes.register("square")
    ... class Square(Shape):
    ...     sides = 4
    >>> shapes.list()
    ['square']
    >>> shapes.create("square").sides
    4
    >>> shapes.get("circle")
    Traceback (most recent call last):
    ...
    cir_milvus.errors.ConfigError: unknown shape 'circle'; available: square
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from cir_milvus.errors import ConfigError

__all__ = ["Registry"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugins of one kind.

    Args:
        kind: what is registered, for messages (``"composer"``, ``"encoder backend"``...).
        base: every entry must be a subclass of ``base`` (or, with ``instances=True``, an instance of it).
        group: the entry-point group plugins are declared in (``None``: no plugins).
        instances: register instances of ``base`` (e.g. head kinds) instead of subclasses.
        on_register: called as ``on_register(name, entry)`` after a new entry is added (e.g. to set its name).
    """

    def __init__(self, kind: str, base: type[Any], *, group: str | None = None, instances: bool = False,
                 on_register: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self.instances = instances
        self._on_register = on_register
        self._items: dict[str, T] = {}
        self._plugins_loaded = group is None

    def _check(self, name: str, entry: Any) -> None:
        ok = isinstance(entry, self.base) if self.instances else (
            isinstance(entry, type) and issubclass(entry, self.base))
        if not ok:
            what = f"a {self.base.__name__} instance" if self.instances else f"a {self.base.__name__} subclass"
            raise ConfigError(f"{self.kind} {name!r} must be {what}, got {entry!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} needs a non-empty name, got {name!r}")

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name`` and return it (registering the same entry again is harmless).

        Raises:
            ConfigError: the name is taken by another entry, or ``entry`` is not of the registry's base.
        """
        self._check(name, entry)
        have = self._items.get(name)
        if have is not None and have is not entry:
            raise ConfigError(f"a {self.kind} named {name!r} is already registered ({_describe(have)}); "
                              "pick another name")
        self._items[name] = entry
        if have is None and self._on_register is not None:
            self._on_register(name, entry)
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@registry.register("name")``."""

        def deco(entry: T) -> T:
            return self.add(name, entry)

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error when absent); for tests and plugins that replace themselves."""
        self._items.pop(name, None)

    def load_entry_points(self) -> None:
        """Register the plugins of the entry-point group (once; later calls do nothing)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=str(self.group)):
            if ep.name in self._items:
                continue  # a plugin never shadows a built-in
            try:
                self.add(ep.name, ep.load())
            except Exception as e:  # noqa: BLE001 - a broken plugin must not break the library
                log.warning("could not load %s plugin %s (%s): %s", self.kind, ep.name, ep.value, e)

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ConfigError: unknown name; the message lists the available ones.
        """
        self.load_entry_points()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.list())}") from None

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the entry registered as ``name`` (a class: an instance) with the arguments.

        Raises:
            ConfigError: unknown name.
        """
        entry: Any = self.get(name)
        return entry(*args, **kwargs)

    def list(self) -> builtins.list[str]:
        """Sorted names of every entry (built-ins and plugins)."""
        self.load_entry_points()
        return sorted(self._items)

    def items(self) -> builtins.list[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        self.load_entry_points()
        return sorted(self._items.items())

    def mapping(self) -> Mapping[str, T]:
        """A read-only live view of the registered entries (name → entry); plugins appear once loaded."""
        return MappingProxyType(self._items)

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


def _describe(entry: Any) -> str:
    return getattr(entry, "__qualname__", None) or repr(entry)
