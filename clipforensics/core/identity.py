"""One identity-and-claim mechanism: what an output was made with, and the one rule for reusing it.

A stage declares its identity once (`declare`: the settings fields flagged `identity=True` in their resolved
form, plus digests of the inputs it depends on), records it beside its output, and on the next run claims
that output with one call: `claim` reuses it when the identities agree, refuses naming every differing field
with both values, or under --overwrite has the stage's own files replaced (an `OutputDir.clear`: never
foreign files); `check` refuses only (a merge of shards, a cache read against what a run expects).
`differences` is the one comparison and `refusal` the one message:

    runs/a/run.json was made with other settings (found != expected); differs in protocol.train_fakes:
    ['FaceSwap'] != ['Deepfakes']; splits: '1a2b…' != '9f8e…'; rerun with --overwrite to replace it
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

from clipforensics.core.errors import UserError
from clipforensics.core.settings import flag_of, identity_fields, identity_keys, identity_values

OTHER_SETTINGS = "other settings"
REPLACE = "rerun with --overwrite to replace it"
WIDTHS = {str: 24, object: 72}
"""Longest repr of a string (a digest, a path) and of any other value (a list) shown whole; a longer one is shown
as a window of that width from a little before its first difference."""


class Identity(dict):
    """What an output is made with: a plain JSON-ready dict wherever it is recorded. `flags` (recorded key ->
    command-line option, for values recorded as given) let a refusal say what to pass to reuse the output."""

    def __init__(self, values: Mapping[str, Any], flags: Mapping[str, str] | None = None) -> None:
        super().__init__(values)
        self.flags = dict(flags or {})


def declare(settings: Any = None, *, resolved: Mapping[str, Any] | None = None,
            inputs: Mapping[str, Any] | None = None) -> Identity:
    """The identity of a stage's output: `inputs` (digests and records of what it reads), then the settings'
    identity fields, each replaced by its resolved form where given (`resolved`, by field name: 'all' layers
    as the block indices they meant). Naming a field in `resolved` that is not an identity field is a bug."""
    resolved, inputs = dict(resolved or {}), dict(inputs or {})
    values = identity_values(settings) if settings is not None else {}
    keys = identity_keys(settings) if settings is not None else {}
    unknown = set(resolved) - set(identity_fields(type(settings)) if settings is not None else ())
    clash = set(values) & set(inputs)
    if unknown or clash:
        raise ValueError(f"not identity fields: {sorted(unknown)}; settings and inputs share keys: {sorted(clash)}")
    for name, value in resolved.items():
        if name in keys:
            values[keys[name]] = _plain(value)
    flags = {key: flag_of(type(settings), name) for name, key in keys.items() if name not in resolved}
    return Identity({**inputs, **values}, flags)


def _plain(value: Any) -> Any:
    """The JSON form a value is recorded in (tuples as lists, keys as strings), so recorded and new compare."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def differences(old: Mapping[str, Any] | None, new: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """Every field whose value differs, as 'key: old != new': nested keys as dotted paths, a missing key read as
    None, long values shortened around their first difference. `keys` limits (and orders) the top-level keys
    compared; by default every key of either side, sorted."""
    old, new = _plain(dict(old or {})), _plain(dict(new))
    names = sorted(set(old) | set(new)) if keys is None else [str(k) for k in keys]
    return [line for name in names for line in _tree(old.get(name), new.get(name), name)]


def _tree(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new))
                for line in _tree(old.get(key), new.get(key), f"{path}.{key}")]
    if old == new:
        return []
    return [f"{path}: {shown(old, new)} != {shown(new, old)}"]


def shown(value: Any, other: Any) -> str:
    """`value` as repr, shortened readably when long: a window around where it first differs from `other`, so two
    long values never print alike."""
    text, versus = repr(value), repr(other)
    width = WIDTHS[str if isinstance(value, str) else object]
    if len(text) <= width:
        return text
    at = next((i for i, (a, b) in enumerate(zip(text, versus)) if a != b), min(len(text), len(versus)))
    start = max(0, min(at - width // 4, len(text) - width))
    end = start + width
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def refusal(what: str, diffs: list[str], *, made_with: str = OTHER_SETTINGS, remedy: str = REPLACE) -> UserError:
    """The one message of an output made otherwise than this run would make it: each difference reads 'key: the
    value `what` holds != the value this run expects'."""
    return UserError(f"{what} was made with {made_with} (found != expected); differs in {'; '.join(diffs)}"
                     + (f"; {remedy}" if remedy else ""))


def _hint(old: Mapping[str, Any], new: Mapping[str, Any], keys: Iterable[str] | None) -> str:
    """'to reuse it pass --chunk-size 512, not 256': the options, recorded as given, that would make this run match."""
    flags = getattr(new, "flags", {})
    names = set(flags) if keys is None else set(flags) & set(keys)
    old, plain = _plain(dict(old)), _plain(dict(new))
    pairs = [f"{flags[k]} {_argument(old.get(k))}, not {_argument(plain.get(k))}" for k in sorted(names)
             if old.get(k) != plain.get(k) and _argument(old.get(k)) and _argument(plain.get(k))]
    return f"to reuse it pass {' and '.join(pairs)}" if pairs else ""


def _argument(value: Any) -> str:
    """A recorded value as it is typed on the command line ('' where it cannot be: None, a switch, a mapping)."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "" if value is None or isinstance(value, (bool, dict)) else str(value)


def check(recorded: Mapping[str, Any], identity: Mapping[str, Any], what: str, *, keys: Iterable[str] | None = None,
          made_with: str = OTHER_SETTINGS, remedy: str = REPLACE) -> None:
    """Refuse `what` unless it was made with `identity` (every differing field named, with both values)."""
    keys = None if keys is None else list(keys)
    diffs = differences(recorded, identity, keys)
    if diffs:
        hint = _hint(recorded, identity, keys)
        raise refusal(what, diffs, made_with=made_with, remedy="; ".join(filter(None, (hint, remedy))))


def claim(recorded: Mapping[str, Any], identity: Mapping[str, Any], what: str, *, overwrite: bool,
          replace: Callable[[], None], keys: Iterable[str] | None = None, made_with: str = OTHER_SETTINGS,
          remedy: str = REPLACE) -> bool:
    """Whether the output `recorded` describes may be reused by this run: True when made with `identity`;
    otherwise refused before any work, or under --overwrite `replace()`d (the stage's own files only) and False."""
    keys = None if keys is None else list(keys)
    if not differences(recorded, identity, keys):
        return True
    if not overwrite:
        check(recorded, identity, what, keys=keys, made_with=made_with, remedy=remedy)
    replace()
    return False
