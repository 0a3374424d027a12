"""A dataclass per script becomes its command line; the resolved config is saved as plain JSON.

@dataclass
class Config:  # its docstring, when it has one, is the command's --help description
    lr: float = 1e-3                                        # flag --lr (> 0: a known name)
    num_epochs: int = 10                                    # flag --num-epochs (>= 1: a known name)
    amp: bool = False                                       # flags --amp / --no-amp
    hidden: int = flag(64, help="units per layer", min=1)   # a range and help of its own
    mode: str = flag("fast", help="how to run", choices=("fast", "exact"))

cfg = parse_config(Config, quick={"num_epochs": 1})   # --quick applies these unless given

Every value is checked against its range once, here, for every lesson and command: a number is
never negative unless its field says so (``min=-math.inf``), the common names (:data:`KNOWN`) carry
their own ranges (``--batch-size 0`` is refused), and ``flag(..., min=, max=, choices=)`` states the
rest. A value out of range stops the command with one line naming the flag, its range and the value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from dlkit.errors import UserError

__all__ = [
    "KNOWN",
    "ConfigError",
    "Range",
    "build_parser",
    "check_config",
    "config_to_dict",
    "flag",
    "load_config",
    "parse_config",
    "save_config",
]

C = TypeVar("C")


class ConfigError(UserError):
    """A config value out of its range, or of the wrong kind; exits 2, like a bad command line."""

    exit_code = 2


class Range(NamedTuple):
    """Where a numeric flag's value may lie; ``above`` is a strict lower bound (``lr > 0``)."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    help: str = ""


# Ranges and help of the names every script uses the same way (d2l's vocabulary). A field's own
# ``flag(min=..., max=..., help=...)`` wins over these.
KNOWN: dict[str, Range] = {
    "lr": Range(above=0, help="learning rate"),
    "num_epochs": Range(min=1, help="passes over the training data"),
    "batch_size": Range(min=1, help="examples per optimizer step"),
    "seed": Range(min=0, help="seed of every random number generator"),
    "weight_decay": Range(min=0, help="L2 penalty (decoupled in AdamW)"),
    "momentum": Range(min=0, max=0.999, help="momentum of SGD"),
    "dropout": Range(min=0, max=0.95, help="probability of zeroing an activation in training"),
    "label_smoothing": Range(min=0, max=0.99, help="share of the target spread over all classes"),
    "num_workers": Range(min=0, help="DataLoader worker processes (0: load in this process)"),
    "train_subset": Range(min=1, help="train on this many examples (default: all)"),
    "val_subset": Range(min=1, help="validate on this many examples (default: all)"),
    "test_subset": Range(min=1, help="test on this many examples (default: all)"),
    "threads": Range(min=0, help="CPU threads for torch (0: torch's default)"),
    "max_chars": Range(min=1, help="read at most this many characters"),
    "top_k": Range(min=1, help="keep the k most likely"),
    "k": Range(min=1, help="how many to return"),
    "temperature": Range(above=0, help="softmax temperature (< 1 sharper, > 1 flatter)"),
    "port": Range(min=1, max=65535, help="TCP port"),
    "workers": Range(min=1, help="server processes"),
    "max_batch": Range(min=1, help="largest batch the model runs at once"),
    "val_fraction": Range(above=0, max=0.5, help="share of the training data held out for validation"),
    "time_budget": Range(min=0, help="seconds of training"),
    "max_iters": Range(min=1, help="optimizer steps"),
}


def flag(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",  # noqa: A002 - argparse's word
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    above: float | None = None,
    choices: Sequence[Any] | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its flag's help, range (``min <= v <= max``, ``v > above``) and choices."""
    metadata: dict[str, Any] = {"help": help}
    for key, value in (("min", min), ("max", max), ("above", above)):
        if value is not None:
            metadata[key] = value
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


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
    parser = argparse.ArgumentParser(description=description or _docstring(cls))
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else None
        if default is None and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        kwargs: dict[str, Any] = {
            "default": argparse.SUPPRESS,
            "help": _help_text(field, tp, default),
            "dest": field.name,
        }
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


def _docstring(cls: type) -> str | None:
    """The class's own docstring; not the signature that @dataclass writes when there is none."""
    doc = (cls.__doc__ or "").strip()
    return None if not doc or doc.startswith(f"{cls.__name__}(") else doc


def _range_of(field: dataclasses.Field[Any]) -> Range:
    known = KNOWN.get(field.name, Range())
    meta = field.metadata
    if any(key in meta for key in ("min", "max", "above")):
        return Range(meta.get("min"), meta.get("max"), meta.get("above"), meta.get("help") or known.help)
    return known._replace(help=meta.get("help") or known.help)


def _range_text(r: Range) -> str:
    parts = []
    if r.above is not None:
        parts.append(f"> {r.above:g}")
    if r.min is not None and r.min != -math.inf:
        parts.append(f">= {r.min:g}")
    if r.max is not None:
        parts.append(f"<= {r.max:g}")
    return " and ".join(parts)


def _help_text(field: dataclasses.Field[Any], tp: Any, default: Any) -> str:
    r = _range_of(field)
    extra = []
    if tp in (int, float):
        extra.append(_range_text(_effective(r)))
    if field.metadata.get("choices"):
        extra.append("one of " + ", ".join(map(str, field.metadata["choices"])))
    if tp is not bool or default is not None:
        extra.append(f"default: {default}" if not isinstance(default, str) else f"default: {default or '-'}")
    text = (r.help + (f" ({'; '.join(e for e in extra if e)})" if extra else "")).strip()
    return text.replace("%", "%%")  # argparse formats help with %: "10%" would crash --help


def _effective(r: Range) -> Range:
    """A number without a stated lower bound may not be negative (``min=-inf`` allows it)."""
    if r.min is None and r.above is None:
        return r._replace(min=0)
    return r


def check_config(cfg: Any) -> None:
    """Raise :class:`ConfigError` for the first value out of its range or choices (None always passes)."""
    hints = typing.get_type_hints(type(cfg))
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if value is None:
            continue
        name = "--" + field.name.replace("_", "-")
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}")
        tp, _ = _unwrap_optional(hints[field.name])
        items = value if isinstance(value, list | tuple) else [value]
        if tp is bool or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
            continue
        r = _effective(_range_of(field))
        for v in items:
            bad = (
                not math.isfinite(v)
                or (r.min is not None and v < r.min)
                or (r.max is not None and v > r.max)
                or (r.above is not None and v <= r.above)
            )
            if bad:
                raise ConfigError(f"{name} must be {_range_text(r)}, not {v:g}")


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
    defaults = cls()  # type: ignore[call-arg]
    values = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}  # type: ignore[arg-type]
    if given.get("quick", values.get("quick", False)) and quick:
        unknown = set(quick) - set(values)
        if unknown:
            raise KeyError(
                f"quick overrides name fields that {cls.__name__} does not have: {sorted(unknown)}"
            )
        values.update(quick)
    values.update(given)
    cfg = cls(**_tuples(cls, values))
    try:
        check_config(cfg)
    except ConfigError as e:
        parser.error(str(e))  # usage, then "error: --batch-size must be >= 1, not 0"; exit status 2
    return cfg


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
