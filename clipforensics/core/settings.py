"""Typed settings: each stage declares its options once, as a dataclass; argparse and JSON follow.

    @dataclass
    class ExtractSettings(RuntimeSettings):
        out: str = option(None, "cache file to write", required=True, metavar="FILE")
        batch_size: int = option(64, "images per forward pass")

`add_arguments(parser, ExtractSettings, "extraction")` adds `--out` and `--batch-size` under "extraction"
and the inherited `--device`, `--workers`, `--precision` under their group's own title ("runtime");
`from_namespace(ExtractSettings, ns)` builds the object; `to_dict` is what is saved beside outputs.
Fields typed `tuple[str, ...]` take comma-separated values, and a repeated flag adds to them
(`--test-cache B.h5 --test-cache C.h5` = `--test-cache B.h5,C.h5`); `bool` fields get `--x/--no-x`.

Options shared by several stages are declared once, in a group dataclass the stages inherit from
(`RuntimeSettings` here, `data.manifest.DataSettings`), so a stage's JSON stays flat. What a field means
for reuse is in the field too: `identity=True` (an output made with another value must not be mixed
with this one; `identity="key"` records it under another name, `identity_if="other"` only where field
`other` is set) or `execution_only=True` (where or how fast a run goes, never what it computes); the
stages read these flags through `identity_values()` (via `core.identity.declare`) and
`without_execution_only()`, so a renamed field cannot drop out of a hand-kept list of names.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from clipforensics.core.registry import SuggestingParser

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def option(default: Any, help: str, *, flag: str | None = None, choices: typing.Sequence[Any] | None = None,
           required: bool = False, metavar: str | None = None, spaced: bool = False, identity: bool | str = False,
           identity_if: str | None = None, execution_only: bool = False, formerly: str | None = None) -> Any:
    """A dataclass field that carries its command-line help and what it means for reusing outputs.
    `spaced`: a tuple option that also takes several space-separated words (`--perturb jpeg:90,70
    blur:1,2`), each kept whole. `identity`: True, or the key the value is recorded under (kept stable when
    a field is renamed); `identity_if`: the field that must be set for this one to matter (a noise seed
    matters only where there are noise copies). `formerly`: the option's old name, answered with "OLD is now
    NEW" (record the old field name with `identity=` so outputs made before the rename are still reused)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    if identity and execution_only:
        raise TypeError("a setting is either identity or execution-only, not both")
    if identity_if and not identity:
        raise TypeError("identity_if applies to identity settings only")
    meta = {"help": help, "flag": flag, "choices": choices, "required": required, "metavar": metavar,
            "spaced": spaced, "identity": identity, "identity_if": identity_if, "execution_only": execution_only,
            "formerly": formerly}
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class DeviceSettings:
    """Where and how fast a stage runs, never what it computes: a run may resume across other values.
    The LoRA and detect stages take this group alone (their precision options mean other things)."""

    GROUP = "runtime"
    device: str = option("auto", "auto, cpu, cuda or cuda:N", metavar="DEVICE", execution_only=True)
    workers: int = option(2, "worker processes that decode the inputs (0: in the main process)",
                          execution_only=True)


@dataclass
class RuntimeSettings(DeviceSettings):
    """Device and workers plus the inference precision, which changes the numbers (not execution-only)."""

    GROUP = "runtime"
    precision: str = option("auto", "dtype of weights and inputs: auto (CUDA: bf16 where supported, else fp16; "
                                    "CPU: bf16 only where measured faster, else fp32), fp32, fp16, bf16",
                            choices=PRECISIONS)


def _names_with(cls: type, flag: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(flag))


def identity_fields(cls: type) -> tuple[str, ...]:
    """Names of the fields flagged `identity=True`."""
    return _names_with(cls, "identity")


def execution_only_fields(cls: type) -> tuple[str, ...]:
    """Names of the fields flagged `execution_only=True`."""
    return _names_with(cls, "execution_only")


def identity_keys(obj: Any) -> dict[str, str]:
    """Field name -> recorded key of the identity fields that matter for `obj` (an `identity_if` field only
    where the field it depends on is set)."""
    return {f.name: f.name if f.metadata["identity"] is True else str(f.metadata["identity"])
            for f in dataclasses.fields(obj) if f.metadata.get("identity")
            and (not f.metadata.get("identity_if") or getattr(obj, f.metadata["identity_if"]))}


def identity_values(obj: Any) -> dict[str, Any]:
    """JSON-ready values of the identity fields: what an output must have been made with to be reused."""
    values = to_dict(obj)
    return {key: values[name] for name, key in identity_keys(obj).items()}


def flag_of(cls: type, name: str) -> str:
    """The command-line option of field `name` (its own `flag`, else --NAME-WITH-DASHES)."""
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
    return meta.get("flag") or "--" + name.replace("_", "-")


def without_execution_only(obj: Any) -> dict[str, Any]:
    """JSON-ready values of every field that can change a result (all but the execution-only ones)."""
    names = set(execution_only_fields(type(obj)))
    return {k: v for k, v in to_dict(obj).items() if k not in names}


def split_csv(text: str) -> tuple[str, ...]:
    """A comma list as a tuple, blanks dropped: the form of every comma-list option."""
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


def _declared_in(cls: type, name: str) -> type:
    """The class of `cls`'s hierarchy whose body declares field `name` (a shared group or the stage)."""
    return next(k for k in cls.__mro__ if name in vars(k).get("__annotations__", {}))


def _group(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The parser's argument group of that title, made on first use so shared groups appear once."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """Add one option per field of dataclass `cls`: inherited group fields under the group's title
    (its class attribute GROUP), the stage's own fields under `title` (or ungrouped)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("help"):
            continue
        group_title = vars(_declared_in(cls, f.name)).get("GROUP", title)
        group = _group(parser, group_title) if group_title else parser
        flag = flag_of(cls, f.name)
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
            kwargs["type"] = split_csv if is_tuple else typ
            if is_tuple:
                kwargs["action"] = CommaList
                if f.metadata.get("spaced"):
                    kwargs.update(type=str, nargs="+")
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            if f.metadata.get("metavar"):
                kwargs["metavar"] = f.metadata["metavar"]
        group.add_argument(flag, **kwargs)
        if f.metadata.get("formerly") and isinstance(parser, SuggestingParser):
            parser.renamed[f.metadata["formerly"]] = flag


def settings_parser(description: str, *groups: tuple[type, str]) -> argparse.ArgumentParser:
    """A script's parser: its docstring as the description (examples keep their layout) and one option
    group per (settings dataclass, title), in order."""
    parser = SuggestingParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for cls, title in groups:
        add_arguments(parser, cls, title)
    return parser


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


def former_key(field: dataclasses.Field) -> str | None:
    """The key records made before a field's rename hold it under: its old option's name (--limit -> limit)."""
    formerly = field.metadata.get("formerly")
    return formerly.lstrip("-").replace("-", "_") if formerly else None


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Inverse of `to_dict`: rebuild settings saved as JSON (unknown keys are ignored). A field renamed since the
    record was written (`formerly=`) is read from its old key where the record has no new one, so an old record
    means what it meant then (`--amp fp16` is not read back as the default `auto`)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        key = f.name if f.name in data else former_key(f)
        if key in data:
            _, is_tuple = _base_type(hints[f.name])
            values[f.name] = tuple(data[key]) if is_tuple and data[key] is not None else data[key]
    return cls(**values)
