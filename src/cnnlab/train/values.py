"""Typed values from text: the one parser of config keys (``--set``, YAML, flags) and lab settings.

:func:`coerce` turns a string into the declared type — ``"0.05"``, ``"true"``/``"false"``,
``"none"``, ``"30,60"`` or ``"[30, 60]"``, ``'{"a": 1}'`` — and checks that any other value already
has it (an int is a float; a bool is not an int). :class:`Range` says which numbers a key allows.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """An interval of allowed values: ``low`` to ``high`` (None: unbounded), ends excluded when
    ``low_open`` / ``high_open``. Lists are checked element by element."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        if self.high is None:
            return f"{'greater than' if self.low_open else 'at least'} {_num(self.low)}"
        return (f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}"
                f"{')' if self.high_open else ']'}")

    def contains(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return low_ok and high_ok


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def type_name(kind: Any) -> str:
    """``int``, ``float or none``, ``list of float``, ``bool (true or false)``."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(type_name(a) if a is not type(None) else "none" for a in args)
    if typing.get_origin(kind) is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if kind is bool:
        return "bool (true or false)"
    return getattr(kind, "__name__", str(kind))


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def coerce(key: str, value: Any, kind: Any) -> Any:
    """``value`` as type ``kind``: a string is parsed (``"0.05"``, ``"true"``, ``"none"``,
    ``"30,60"`` or ``"[30, 60]"``, ``'{"a": 1}'``), any other value must already be of the type
    (an int is a float). Non-finite floats are refused. Raises :class:`ConfigError` naming the
    key, the value and the type."""
    def bad() -> ConfigError:
        return ConfigError(f"{key}={value!r} is not a valid {type_name(kind)}")

    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        none = value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))
        if none and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(key, value, option)
            except ConfigError:
                pass
        raise bad()
    text = value.strip() if isinstance(value, str) else None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise bad()
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(text)
        except (TypeError, ValueError):
            raise bad() from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad()
        try:
            number = float(text if text is not None else value)
        except ValueError:
            raise bad() from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}={value!r} is not a finite number")
        return number
    if kind is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if typing.get_origin(kind) is list or kind is list:
        item = args[0] if args else str
        if text is not None:
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise bad() from None
            else:
                value = [part for part in text.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad()
        return [coerce(key, v, item) for v in value]
    if kind is dict or typing.get_origin(kind) is dict:
        if text is not None:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise bad() from None
        if not isinstance(value, dict):
            raise bad()
        return dict(value)
    return value
