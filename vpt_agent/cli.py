"""Command lines generated from dataclasses (CleanRL style), shared by every ``python -m vpt_agent.<job>``.

Each option is written once, as a dataclass field made with :func:`option`: its name (``max_steps`` ->
``--max-steps``), type, default and help text. :func:`build_parser` turns the fields into argparse options:

    field type             -> option
    bool                   -> --flag (store_true), or --no-flag (store_false) with negate=True
    int / str / Optional[] -> --flag VALUE (Optional[X] takes an X)
    float                  -> --flag VALUE, finite numbers only (nan/inf are refused)
    dict                   -> --flag JSON, a JSON object
    list                   -> --flag VALUE [VALUE ...] (nargs="+", or the field's nargs)

Parse errors are one line on stderr and exit code 2. Options not given on the command line are left out of the
parsed namespace, so the dataclass's own defaults apply (also ``default_factory`` ones).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import typing
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Type, TypeVar

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: Optional[Sequence[Any]] = None,
           metavar: Optional[str] = None, short: Optional[str] = None, negate: bool = False,
           nargs: Optional[str] = None, cli: bool = True, minimum: Optional[float] = None,
           exclusive_minimum: Optional[float] = None, maximum: Optional[float] = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is also a command-line option (``cli=False``: a field only, no option).

    ``minimum``/``exclusive_minimum``/``maximum`` bound a number; :func:`check_fields` enforces them and
    ``choices``.
    """
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "metavar": metavar,
            "short": short, "negate": negate, "nargs": nargs, "cli": cli, "minimum": minimum,
            "exclusive_minimum": exclusive_minimum, "maximum": maximum}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def flag(name: str) -> str:
    """The option of a field: ``max_steps`` -> ``--max-steps``."""
    return "--" + name.replace("_", "-")


def finite_float(text: str) -> float:
    """argparse type: a finite float (``nan``/``inf`` would slip through ``float``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(text: str) -> Dict[str, Any]:
    """argparse type: a JSON object (NaN/Infinity are not JSON and are refused)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"log_goal\": 5}'")
    return value


def base_type(annotation: Any) -> Any:
    """``Optional[int]`` -> ``int``; other annotations unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None if f.default is dataclasses.MISSING else f.default


def _help(f: dataclasses.Field) -> str:
    default = _default(f)
    shown = default not in (None, "", [], (), {}) and not isinstance(default, bool)
    return f.metadata.get("help", "") + (f" (default {default})" if shown else "")


def build_parser(config_cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """One option per field of the dataclass ``config_cls`` (fields made with ``cli=False`` are skipped)."""
    parser = OneLineErrorParser(prog=prog, description=description)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        kind = base_type(hints[f.name])
        names = [flag(f.name)] + ([meta["short"]] if meta.get("short") else [])
        common: Dict[str, Any] = {"dest": f.name, "help": _help(f), "default": argparse.SUPPRESS}
        if kind is bool:
            if meta.get("negate"):
                parser.add_argument(f"--no-{f.name.replace('_', '-')}", action="store_false", **common)
            else:
                parser.add_argument(*names, action="store_true", **common)
            continue
        origin = typing.get_origin(kind)
        if origin in (list, tuple):
            item = typing.get_args(kind)[0] if typing.get_args(kind) else str
            common.update(type=finite_float if item is float else item, nargs=meta.get("nargs") or "+")
        elif kind is dict or origin is dict:
            common["type"] = json_object
        else:
            common["type"] = finite_float if kind is float else kind
            if meta.get("nargs"):
                common["nargs"] = meta["nargs"]
        for key in ("choices", "metavar"):
            if meta.get(key) is not None:
                common[key] = meta[key]
        parser.add_argument(*names, **common)
    return parser


def type_problem(value: Any, kind: Any) -> Optional[str]:
    """Why ``value`` does not fit the field type ``kind`` (Optional already stripped), or ``None``."""
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "must be a finite number"
        return None
    if kind is str:
        return None if isinstance(value, str) else "must be a string"
    if typing.get_origin(kind) in (dict, Dict):
        return None if isinstance(value, dict) else "must be a JSON object"
    return None


def check_fields(config: Any, error: Callable[[str], Exception]) -> None:
    """Check a config dataclass against its fields: types (finite numbers, integers that are not bools), then the
    ``choices``, ``minimum``, ``exclusive_minimum`` and ``maximum`` of each field's metadata. ``None`` values (an
    optional option not given) pass. Raises ``error(message)`` with a one-line message naming the flag."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if value is None:
            continue
        problem = type_problem(value, base_type(hints[f.name]))
        if problem:
            raise error(f"{flag(f.name)} {problem}, got {value!r}")
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise error(f"{flag(f.name)} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
        if meta.get("minimum") is not None and value < meta["minimum"]:
            raise error(f"{flag(f.name)} must be >= {meta['minimum']}, got {value}")
        if meta.get("exclusive_minimum") is not None and value <= meta["exclusive_minimum"]:
            raise error(f"{flag(f.name)} must be > {meta['exclusive_minimum']}, got {value}")
        if meta.get("maximum") is not None and value > meta["maximum"]:
            raise error(f"{flag(f.name)} must be <= {meta['maximum']:,}, got {value}")


def as_config(config_cls: Type[T], value: Any, error: Callable[[str], Exception]) -> T:
    """``value`` as a ``config_cls`` (for the Python API): an instance, or a dict of its fields (an unknown key is
    ``error`` naming it). Path-like values of string fields become strings, so a config holds plain data."""
    if isinstance(value, Mapping):
        unknown = sorted(map(str, set(value) - {f.name for f in dataclasses.fields(config_cls)}))
        if unknown:
            raise error(f"unknown setting(s): {', '.join(unknown)}")
        value = config_cls(**dict(value))
    elif not isinstance(value, config_cls):
        raise error(f"expected a config of type {config_cls.__name__} or a dict of its settings, got "
                    f"{type(value).__name__}")
    hints = typing.get_type_hints(config_cls)
    paths = {f.name: os.fspath(getattr(value, f.name)) for f in dataclasses.fields(value)
             if base_type(hints[f.name]) is str and isinstance(getattr(value, f.name), os.PathLike)}
    return dataclasses.replace(value, **paths) if paths else value


def parse_config(config_cls: Type[T], argv: Optional[Sequence[str]], prog: str, description: str,
                 parser: Optional[argparse.ArgumentParser] = None) -> T:
    """Parse ``argv`` into a ``config_cls`` instance; options not given keep the dataclass defaults."""
    parser = parser or build_parser(config_cls, prog, description)
    return config_cls(**vars(parser.parse_args(argv)))
