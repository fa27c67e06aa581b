"""One registry type for everything chosen by name: heads, prompt sets, detectors, layouts, LoRA heads.

A registry maps a name to a factory (or value); unknown names fail with one line listing the known
ones, so every `--head`/`--detector`/`--layout` option reports mistakes the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from clipforensics.core.errors import UserError

V = TypeVar("V")
_MISSING: Any = object()


class Registry(Generic[V]):
    """Named entries of one kind; `what` names the kind in error messages ("head", "detector").

    `register` adds a name once; `reg[name] = value` / `del reg[name]` replace or remove one on purpose
    (a test swapping in a stub, with pytest's `monkeypatch.setitem`); `get` is the one look-up.
    """

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

    def get(self, name: str, default: V = _MISSING) -> V:
        """The entry called `name`; an unknown name is a UserError listing the known ones (or `default`)."""
        if name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise UserError(f"unknown {self.what} {name!r}; choose from {', '.join(self.names())}")

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, V]]:
        return list(self._entries.items())

    def __setitem__(self, name: str, value: V) -> None:
        self._entries[name] = value

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
