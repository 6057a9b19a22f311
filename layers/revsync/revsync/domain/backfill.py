"""Backfill planning, sans I/O: which Stripe lists to walk, split into ``created`` windows.

A Stripe list is a cursor walk, one page at a time, and one call takes a few hundred milliseconds,
so a single walk uses a small part of an account's rate limit. Splitting each list into windows of
``created`` time lets several walks run side by side (a Map state), each still a plain cursor walk:
the requests are the minimum for pages of 100 plus at most one per window.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Kind = Literal["customers", "subscriptions", "invoices"]
KINDS: tuple[Kind, ...] = ("customers", "subscriptions", "invoices")
PAGE_SIZE = 100
# Nothing in Stripe predates this (2010-01-01); the last window is open-ended.
EARLIEST = 1_262_304_000


class Segment(TypedDict):
    kind: Kind
    gte: int
    lt: int | None  # None: up to now and beyond (objects created during the backfill too)
    cursor: str | None  # Stripe's ``starting_after``: the last object already imported
    done: bool
    imported: int
    requests: int
    splittable: bool  # a planned window may fan out once; the walks it makes do not split again
    config_version: int  # the tenant config the run started with: steps never use an older one


class Totals(TypedDict):
    customers: int
    subscriptions: int
    invoices: int
    requests: int  # list requests made
    walks: int  # cursor walks finished: the requests are at most the minimum plus one per walk


def plan(now: int, windows: int, config_version: int = 0, earliest: int = EARLIEST) -> list[Segment]:
    """``windows`` equal slices of [earliest, now) for each list; the newest is open-ended."""
    windows = max(1, windows)
    step = max(1, (now - earliest) // windows)
    bounds = [earliest + i * step for i in range(windows)]
    segments: list[Segment] = []
    for kind in KINDS:
        for index, start in enumerate(bounds):
            end = bounds[index + 1] if index + 1 < windows else None
            segments.append(
                Segment(
                    kind=kind,
                    gte=start,
                    lt=end,
                    cursor=None,
                    done=False,
                    imported=0,
                    requests=0,
                    splittable=True,
                    config_version=config_version,
                )
            )
    return segments


def list_params(segment: Segment) -> dict[str, Any]:
    """The list call for the segment's next page."""
    created: dict[str, int] = {"gte": segment["gte"]}
    if segment["lt"] is not None:
        created["lt"] = segment["lt"]
    params: dict[str, Any] = {"limit": PAGE_SIZE, "created": created}
    if segment["kind"] == "subscriptions":
        params["status"] = "all"  # canceled ones too: a churned customer is still a customer
        # The customer comes with each subscription: a deleted customer (absent from the customers
        # list) is seen as deleted, with no request of its own.
        params["expand"] = ["data.discounts", "data.customer"]
    elif segment["kind"] == "invoices":
        params["status"] = "paid"
    if segment["cursor"]:
        params["starting_after"] = segment["cursor"]
    return params


def split(
    segment: Segment, oldest_seen: int, page_span: int, max_walks: int, pages_ahead: int = 2
) -> list[Segment]:
    """Cut what is left of a walk into up to ``max_walks`` walks when it will not end soon.

    The walk goes newest first, so after a page what is left is ``[gte, oldest_seen]``; at the page's
    density (``page_span`` seconds per page) that is about ``(oldest_seen - gte) / page_span`` pages.
    If that is more than ``pages_ahead``, the range is cut into equal slices: this walk keeps the
    newest with its cursor (same order, so the cursor stays valid) and new walks take the others. No
    object is in two slices, none in no slice; each walk costs at most one page beyond the minimum.
    """
    remaining = oldest_seen - segment["gte"]
    if segment["done"] or not segment["splittable"] or page_span <= 0 or remaining < 2:
        return [segment]
    parts = min(max_walks, remaining // page_span // pages_ahead, remaining)
    if parts < 2:
        return [segment]
    bounds = [segment["gte"] + remaining * i // parts for i in range(parts)]
    kept = Segment(**{**segment, "gte": bounds[-1], "splittable": False})
    older = [
        Segment(
            kind=segment["kind"],
            gte=start,
            lt=bounds[i + 1],
            cursor=None,
            done=False,
            imported=0,
            requests=0,
            splittable=False,
            config_version=segment["config_version"],
        )
        for i, start in enumerate(bounds[:-1])
    ]
    return [kept, *older]


def new_totals() -> Totals:
    return Totals(customers=0, subscriptions=0, invoices=0, requests=0, walks=0)


def collect(totals: Totals, rounds: list[list[Segment]]) -> tuple[Totals, list[Segment]]:
    """After a round: add up what finished walks imported, and keep the walks still going."""
    totals = Totals(**totals)
    active: list[Segment] = []
    for segment in (s for produced in rounds for s in produced):
        if segment["done"]:
            totals[segment["kind"]] += segment["imported"]
            totals["requests"] += segment["requests"]
            totals["walks"] += 1
        else:
            active.append(segment)
    return totals, active
