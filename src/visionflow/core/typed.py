"""Typed configuration from JSON: dataclasses rebuilt field by field, every value's type checked.

`config.json`, `signature.json` and a server's metadata are JSON written by visionflow, but a
file on disk can be edited or damaged: `from_dict` turns any mismatch into an `InputError`
naming the file and the field, never a half-built object or a traceback.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ..errors import InputError


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from JSON data, checking every field's type.

    Missing fields take their defaults; unknown fields are an error (a file of a newer format,
    or a typo).  `where` names the source in messages ("runs/x/config.json").
    """
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected an object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} in {cls.__name__}")
    values = {name: _convert(hints[name], raw[name], f"{where}: field {name!r}") for name in names if name in raw}
    try:
        return cls(**values)
    except TypeError as e:
        raise InputError(f"{where}: {e}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise InputError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise InputError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, where) for a, v in zip(args, value))
        return tuple(_convert(item, v, where) for v in value)
    if origin is dict or hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise InputError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    return value
