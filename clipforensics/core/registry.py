"""One registry type for everything chosen by name: heads, prompt sets, detectors, layouts, LoRA heads.

A registry maps a name to a factory (or value); unknown names fail with one line listing the known
ones and the closest of them ("did you mean"), so every `--head`/`--detector`/`--layout` option reports
mistakes the same way; `unknown_name` gives that line to a choice that is no registry, and `SuggestingParser`
to an argparse option with `choices`.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any, Callable, Collection, Generic, Iterator, TypeVar

from clipforensics.core.errors import UserError

V = TypeVar("V")
_MISSING: Any = object()
CUTOFF = 0.6  # difflib's default similarity: 'logrg' finds 'logreg', 'c' finds nothing among 'a', 'b'


def close_names(name: str, known: Collection[str], n: int = 3) -> list[str]:
    """The known names most like `name` (a case slip counts as a match), best first; none when nothing is close."""
    by_lower = {k.lower(): k for k in known}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=CUTOFF)]


def suggestion(close: Collection[str]) -> str:
    """"; did you mean 'x'?" (or "'x' or 'y'"), or "" for no names."""
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def did_you_mean(name: str, known: Collection[str]) -> str:
    """The suggestion of the closest known names, or "" when none is close."""
    return suggestion(close_names(name, known))


def unknown_name(what: str, name: str, known: Collection[str], choices: str | None = None) -> str:
    """The one line for an unknown name: what it is, the known names (or `choices`, said otherwise), the closest.

    The suggestion comes last so that "unknown X 'y'; choose from ..." reads the same with or without one."""
    return f"unknown {what} {name!r}; choose from {choices or ', '.join(known)}{did_you_mean(name, known)}"


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
        raise UserError(unknown_name(self.what, name, self.names()))

    def require(self, name: str, flag: str, also: Collection[str] = ()) -> None:
        """Refuse a name given to option `flag` that is neither an entry nor one of `also` (values the option takes
        beside the entries, e.g. 'none'): the check of an option argparse could not give choices to, or of settings
        built without argparse."""
        if name not in self._entries and name not in also:
            known = [*also, *self._entries]
            raise UserError(f"{flag}: {unknown_name(self.what, name, known)}")

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


class SuggestingParser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are one line with a way out: an "invalid choice" names the closest
    choices (`--video-agg meen`), an unknown option the closest options (`--cahce`), a renamed option its new
    name (`renamed`: old flag -> new flag, filled by `core.settings.add_arguments` from each field's
    `formerly`). Options are taken whole, never abbreviated, so no prefix can stand for another option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.renamed: dict[str, str] = {}

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            if action.choices is None or not isinstance(value, str):
                raise
            hint = did_you_mean(value, [str(c) for c in action.choices])
            raise argparse.ArgumentError(action, exc.message + hint) from None

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """Unknown options are named before any other complaint (a misspelt required option would otherwise
        be reported as missing). A parser with sub-commands leaves the check to the sub-command's parser."""
        args = sys.argv[1:] if args is None else list(args)
        if self._subparsers is None:
            self._refuse_unknown(args)
        return super().parse_known_args(args, namespace)

    def _refuse_unknown(self, args: list[str]) -> None:
        known = [s for s in self._option_string_actions if s.startswith("--") and s != "--help"]
        for arg in args:
            if arg == "--":
                return
            name = arg.split("=", 1)[0]
            if not name.startswith("--") or name in self._option_string_actions:
                continue
            if name in self.renamed:
                self.error(f"{name} is now {self.renamed[name]}")
            starting = [k for k in known if k.startswith(name)][:3]  # a shortened name: the options it begins
            self.error(f"unknown option {name}{suggestion(starting or close_names(name, known))}")
