"""Check a dataclass read back from JSON against its annotations, so a hand-edited value of the
wrong type is refused where it is read rather than failing deep inside scoring.

Covers what configs here use: bool, int, float, str, None-unions and homogeneous tuples/lists.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from core.errors import UserError


def check_field_types(obj: Any, where: str) -> None:
    """Raise UserError naming `where.field` for the first field whose value does not fit its type;
    nested dataclasses are checked too."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_field_types(value, name)
            continue
        hint = hints.get(f.name, Any)
        if not _fits(value, hint):
            raise UserError(f"{name} is {value!r}, not {_describe(hint)}")


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        if origin is list and len(args) == 1:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # annotations this checker does not model are left to the owner's validate()


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0])}" if args else "a list"
    return {bool: "true/false", int: "an integer", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))
