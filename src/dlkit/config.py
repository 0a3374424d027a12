"""A dataclass per script becomes its command line; the resolved config is saved as plain JSON.

@dataclass
class Config:
    lr: float = 1e-3          # flag --lr
    num_epochs: int = 10      # flag --num-epochs
    amp: bool = False         # flags --amp / --no-amp

cfg = parse_config(Config, quick={"num_epochs": 1})   # --quick applies these unless given
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["build_parser", "config_to_dict", "load_config", "parse_config", "save_config"]

C = TypeVar("C")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _none_or(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names the type in its errors
    return parse


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with one kebab-case flag per field of the dataclass ``cls``.

    Every flag defaults to ``argparse.SUPPRESS`` so that :func:`parse_config` can tell a value the
    user typed from the dataclass default (``--quick`` overrides only the latter).
    """
    parser = argparse.ArgumentParser(description=description or (cls.__doc__ or "").strip() or None)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else None
        if default is None and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        help_text = field.metadata.get("help", "") + f" (default: {default!r})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": field.name}
        if tp is bool:
            parser.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            parser.add_argument(_flag(field.name), type=type(choices[0]), choices=choices, **kwargs)
        elif typing.get_origin(tp) in (list, tuple, Sequence):
            (item,) = typing.get_args(tp)[:1]
            parser.add_argument(_flag(field.name), type=item, nargs="*", **kwargs)
        elif tp in (int, float, str):
            parser.add_argument(_flag(field.name), type=_none_or(tp) if optional else tp, **kwargs)
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: unsupported config type {tp!r}")
    return parser


def parse_config(
    cls: type[C],
    argv: Sequence[str] | None = None,
    *,
    quick: Mapping[str, Any] | None = None,
    description: str | None = None,
    ignore_unknown: bool = False,
) -> C:
    """Parse ``argv`` into an instance of the dataclass ``cls``.

    If ``cls`` has a boolean field ``quick`` and it ends up True, the values in ``quick`` replace the
    dataclass defaults, but never a value given on the command line. ``ignore_unknown`` lets a
    script run inside Jupyter, whose kernel passes arguments of its own.
    """
    parser = build_parser(cls, description)
    if ignore_unknown:
        namespace, _ = parser.parse_known_args(argv)
    else:
        namespace = parser.parse_args(argv)
    given = vars(namespace)
    values = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}  # type: ignore[call-arg]
    if given.get("quick", values.get("quick", False)) and quick:
        unknown = set(quick) - set(values)
        if unknown:
            raise KeyError(
                f"quick overrides name fields that {cls.__name__} does not have: {sorted(unknown)}"
            )
        values.update(quick)
    values.update(given)
    return cls(**_tuples(cls, values))


def _tuples(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """argparse and JSON give lists; fields declared as tuples get tuples back."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if isinstance(value, list) and typing.get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return values


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-able types (tuples become lists, Paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON, creating parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")
    return path


def load_config(cls: type[C], path: str | Path) -> C:
    """Read a config saved by :func:`save_config` back into ``cls``; unknown keys are an error."""
    data = json.loads(Path(path).read_text())
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    extra = set(data) - names
    if extra:
        raise ValueError(f"{path}: keys {sorted(extra)} are not fields of {cls.__name__}")
    return cls(**_tuples(cls, data))
