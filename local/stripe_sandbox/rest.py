"""Stripe's REST conventions, shared by every resource: lists (newest first, ``created`` ranges,
``limit`` at most 100, ``starting_after`` / ``ending_before`` / ``has_more``), retrieval by id, and
``expand[]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.forms import as_int

# A route's handler: (sandbox, account, parameters, *path ids) -> an object, or the list to page.
Handler = Callable[..., Obj | list[Obj]]
Matcher = Callable[[Obj, Obj], bool]  # (object, list parameters) -> listed or not


def collection(
    kind: str,
    matches: Matcher | None = None,
    source: Callable[[Sandbox, Account], list[Obj]] | None = None,
) -> Handler:
    """A list route: the account's objects of ``kind`` (or ``source``'s), filtered by ``created`` and
    ``matches``, newest first (within one second, the later created first, as Stripe's ids sort)."""

    def handler(sb: Sandbox, account: Account, params: Obj) -> list[Obj]:
        items = (
            source(sb, account)
            if source
            else [o for o in account.table(kind).values() if not o.get("deleted")]
        )
        low, high = created_range(params.get("created"))
        items = [
            o for o in items if low <= o.get("created", 0) <= high and (matches is None or matches(o, params))
        ]
        ordered = sorted(enumerate(items), key=lambda p: (p[1].get("created", 0), p[0]), reverse=True)
        return [o for _, o in ordered]

    return handler


def retrieve(kind: str) -> Handler:
    def handler(sb: Sandbox, account: Account, params: Obj, object_id: str) -> Obj:
        return sb.get(account, kind, object_id)

    return handler


def page(items: list[Obj], params: Obj, url: str) -> Obj:
    """One page of ``items`` (in list order), paged as Stripe pages (limit, starting_after, ending_before)."""
    limit = as_int(params.get("limit"), 10) or 10
    if limit < 1 or limit > 100:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    if params.get("starting_after"):
        ids = [o["id"] for o in items]
        if params["starting_after"] not in ids:
            raise StripeError(400, f"No such object: '{params['starting_after']}'", param="starting_after")
        items = items[ids.index(params["starting_after"]) + 1 :]
    elif params.get("ending_before"):
        ids = [o["id"] for o in items]
        if params["ending_before"] not in ids:
            raise StripeError(400, f"No such object: '{params['ending_before']}'", param="ending_before")
        items = items[: ids.index(params["ending_before"])][-limit:]
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def created_range(created: Any) -> tuple[float, float]:
    """``created`` (an exact value or gt/gte/lt/lte) as an inclusive [low, high] range."""
    if created in (None, ""):
        return float("-inf"), float("inf")
    if not isinstance(created, dict):
        return int(created), int(created)
    low, high = float("-inf"), float("inf")
    if "gte" in created:
        low = int(created["gte"])
    if "gt" in created:
        low = max(low, int(created["gt"]) + 1)
    if "lte" in created:
        high = int(created["lte"])
    if "lt" in created:
        high = min(high, int(created["lt"]) - 1)
    return low, high


# --- expand[] --------------------------------------------------------------------------------------


def expand(account: Account, obj: Any, paths: list[str]) -> Any:
    """``obj`` (a copy: expanding writes into it) with the ids at ``paths`` replaced by their objects."""
    for path in paths:
        _expand_path(account, obj, path.split("."))
    return obj


def _expand_path(account: Account, node: Any, parts: list[str]) -> None:
    if not parts or node is None:
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        for element in node:
            _expand_path(account, element, parts)
        return
    if not isinstance(node, dict) or head not in node:
        return
    value = node[head]
    if not rest:
        node[head] = _resolve_ids(account, value)
        return
    _expand_path(account, value, rest)


def _resolve_ids(account: Account, value: Any) -> Any:
    if isinstance(value, str):
        found = account.find(value)
        return {k: v for k, v in found.items() if k != "expired"} if found else value
    if isinstance(value, list):
        return [_resolve_ids(account, v) for v in value]
    return value
