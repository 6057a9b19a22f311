"""Stripe's form encoding: ``items[0][price]=…&expand[]=…&metadata[k]=…`` into nested values."""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def _set(target: dict[str, Any], parts: list[str], value: str) -> None:
    node: Any = target
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        nxt = None if last else parts[index + 1]
        container: Any = [] if nxt == "" else {}
        if isinstance(node, list):
            if part == "":
                if last:
                    node.append(value)
                    return
                node.append(container)
                node = node[-1]
                continue
            raise ValueError(f"bad form key part {part!r}")
        if last:
            node[part] = value
            return
        node = node.setdefault(part, container)


def _listify(value: Any) -> Any:
    """Dicts keyed 0..n (``items[0][…]``) become lists, as Stripe reads them."""
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(value, list):
        return [_listify(v) for v in value]
    return value


def decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        parts = [m.group(1) if m.group(1) is not None else m.group(2) for m in _KEY.finditer(key)]
        _set(result, parts, value)
    decoded: dict[str, Any] = _listify(result)
    return decoded


def as_bool(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def as_int(value: Any, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    return int(value)
