"""One registry type for everything chosen by name: heads, prompt sets, detectors, layouts, LoRA heads.

A registry maps a name to a factory (or value); unknown names fail with one line listing the known
ones, so every `--head`/`--detector`/`--layout` option reports mistakes the same way.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from clipforensics.core.errors import UserError

V = TypeVar("V")


class Registry(Generic[V]):
    """Named entries of one kind; `what` names the kind in error messages ("head", "detector")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, V] = {}

    def register(self, name: str, value: V | None = None) -> V | Callable[[V], V]:
        """`reg.register("x", obj)`, or `@reg.register("x")` as a decorator; a name is taken once."""
        def add(item: V) -> V:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = item
            return item
        return add if value is None else add(value)

    def get(self, name: str) -> V:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(f"unknown {self.what} {name!r}; choose from {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
