"""Typed settings: each stage declares its options once, as a dataclass; argparse and JSON follow.

    @dataclass
    class ExtractSettings:
        data_root: str = option(None, "folder with one sub-folder per class", required=True)
        batch_size: int = option(64, "images per forward pass")

`add_arguments(parser, ExtractSettings)` adds `--data-root` and `--batch-size`;
`from_namespace(ExtractSettings, ns)` builds the object; `asdict` is what is saved beside outputs.
Fields typed `tuple[str, ...]` take comma-separated values, and a repeated flag adds to them
(`--test-cache B.h5 --test-cache C.h5` = `--test-cache B.h5,C.h5`); `bool` fields get `--x/--no-x`.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def option(default: Any, help: str, *, flag: str | None = None, choices: typing.Sequence[Any] | None = None,
           required: bool = False, metavar: str | None = None, spaced: bool = False) -> Any:
    """A dataclass field that carries its command-line help. `spaced`: a tuple option that also takes
    several space-separated words (`--perturb jpeg:90,70 blur:1,2`), each kept whole."""
    meta = {"help": help, "flag": flag, "choices": choices, "required": required, "metavar": metavar,
            "spaced": spaced}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=meta)


def _split_csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


class CommaList(argparse.Action):
    """A comma list whose first use replaces the default and whose repeats extend it, so no value given
    on the command line is silently dropped by a later flag."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        given = getattr(namespace, f"_{self.dest}_given", False)
        setattr(namespace, self.dest, (tuple(current) if given and current else ()) + tuple(values))
        setattr(namespace, f"_{self.dest}_given", True)


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(underlying type, is_tuple) for `int`, `str | None`, `tuple[str, ...]` and friends."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return args[0], True
    if args and origin is not None:  # Optional[X] / X | None
        return _base_type(args[0])
    return annotation, False


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """Add one option per field of dataclass `cls` (in a named group if `title`)."""
    group = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("help"):
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        typ, is_tuple = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
        if f.metadata.get("required"):
            kwargs["required"] = True
        elif f.default is not None and f.default != ():
            shown = ",".join(map(str, f.default)) if is_tuple else f.default
            kwargs["help"] += f" (default: {shown})"
        if typ is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = f.default
        else:
            kwargs["default"] = f.default
            kwargs["type"] = _split_csv if is_tuple else typ
            if is_tuple:
                kwargs["action"] = CommaList
                if f.metadata.get("spaced"):
                    kwargs.update(type=str, nargs="+")
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            if f.metadata.get("metavar"):
                kwargs["metavar"] = f.metadata["metavar"]
        group.add_argument(flag, **kwargs)


def from_namespace(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build `cls` from parsed arguments (fields absent from `ns` keep their defaults)."""
    values = {f.name: tuple(v) if isinstance(v := getattr(ns, f.name), list) else v
              for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    values.update(overrides)
    return cls(**values)


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-ready dict of a settings dataclass (tuples become lists)."""
    return json_ready(dataclasses.asdict(obj))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Inverse of `to_dict`: rebuild settings saved as JSON (unknown keys are ignored)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            _, is_tuple = _base_type(hints[f.name])
            values[f.name] = tuple(data[f.name]) if is_tuple and data[f.name] is not None else data[f.name]
    return cls(**values)
