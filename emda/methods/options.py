"""Method options: a dataclass per method, set from ``--opt name=value`` strings."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from emda.errors import EmdaError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() in {"none", "null", ""}:
            return None
        return _convert(text, args[0])
    if origin in (tuple, list):
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis} or {str}
        items = [t.strip() for t in text.strip("[]()").split(",") if t.strip()]
        return origin(_convert(t, item) for t in items)
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if kind in (int, float, str):
        return kind(text)
    raise TypeError(f"unsupported option type {kind!r}")


def option_fields(options_cls: type) -> dict[str, tuple[Any, Any]]:
    """name -> (type, default) for an options dataclass."""
    hints = typing.get_type_hints(options_cls)
    out = {}
    for f in dataclasses.fields(options_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = (hints[f.name], default)
    return out


def parse_options(options_cls: type, assignments: list[str] | dict[str, Any], method: str) -> Any:
    """Build ``options_cls`` from ``["name=value", ...]`` (CLI) or a dict (TOML).

    Unknown names and values that do not convert raise :class:`EmdaError`
    naming the option, the method and what is accepted.
    """
    fields = option_fields(options_cls)
    pairs: list[tuple[str, Any]]
    if isinstance(assignments, dict):
        pairs = list(assignments.items())
    else:
        pairs = []
        for item in assignments:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise EmdaError(f"--opt {item!r}: expected NAME=VALUE")
            pairs.append((name.strip().replace("-", "_"), value.strip()))
    values: dict[str, Any] = {}
    for name, value in pairs:
        if name not in fields:
            known = ", ".join(fields) or "none"
            raise EmdaError(
                f"--opt {name}: unknown option for method '{method}' (its options: {known})"
            )
        kind = fields[name][0]
        try:
            values[name] = _convert(value, kind) if isinstance(value, str) else value
        except (ValueError, TypeError) as exc:
            kind_name = _type_name(kind)
            raise EmdaError(
                f"--opt {name}={value}: not a valid {kind_name} for method '{method}' ({exc})"
            ) from None
    try:
        return options_cls(**values)
    except (ValueError, TypeError) as exc:  # __post_init__ validation in the dataclass
        raise EmdaError(f"--opt for method '{method}': {exc}") from None


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is not None:  # tuple[float, ...], int | None
        return str(kind).replace("typing.", "")
    return getattr(kind, "__name__", str(kind))


def describe_options(options_cls: type, as_text: bool = True) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) rows for ``emda methods``; the default as its repr, or
    the value itself with ``as_text=False``."""
    rows = []
    for f in dataclasses.fields(options_cls):
        kind, default = option_fields(options_cls)[f.name]
        shown = repr(default) if as_text else default
        rows.append((f.name, _type_name(kind), shown, f.metadata.get("help", "")))
    return rows


def options_to_dict(options: Any) -> dict[str, Any]:
    """Plain types only, so the options can live in a weights-only checkpoint and TOML."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    }
