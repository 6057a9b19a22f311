"""Backfill planning, sans I/O: which Stripe lists to walk, and when a walk splits into several.

A Stripe list is a cursor walk, one page at a time, and one call takes a few hundred milliseconds,
so a single walk uses a small part of an account's rate limit: several walks must run side by side
(a Map state), each a plain cursor walk over a range of ``created`` time. Every walk ends on a part
page, half a page beyond the minimum on average, so walks are kept long (``PAGES_PER_WALK``).

How far back an account's data goes is unknown until a walk reaches its end: Stripe lists newest
first and tells no count. So each list starts as one walk from now to the past; after its first
page (which tells how many seconds a page of it spans) it becomes up to its share of the walks:
slices of ``PAGES_PER_WALK`` pages at that density and a last walk open to the past. Nothing in an
account predates the account itself (its ``created``, read once when the run starts): no slice is
cut wholly before it, so a small account's walks stop where its data can begin instead of slicing
years of nothing, one empty page each. The last walk still asks from ``EARLIEST``, which costs no
request (a walk ends where the list does) and loses nothing if an account's ``created`` is later
than its oldest object (Stripe documents it as when the account was connected). Between rounds
(``collect``), the room walks that finished leave is filled by splitting the others the same way, at
the density their last page showed: bounded walks with many pages left first, then the open ones.

How many walks: enough to keep each list's endpoint at its rate limit while staying inside the
account's (``allowance``): a walk takes a page every ``page_seconds`` (Stripe's answer plus the
page's writes, measured by the steps), so an endpoint allowed r requests/s needs r x page_seconds
walks, and the account's limit R caps them all at R x page_seconds.

A standard Step Functions execution holds at most 25,000 history events, and a failure from that
limit skips the state machine's Catch. Each round adds ``round_events(walks)``; before a round that
would pass ``HISTORY_BUDGET`` the run continues in a new execution with its walks and totals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

Kind = Literal["customers", "subscriptions", "invoices", "credit_notes", "refunds"]
KINDS: tuple[Kind, ...] = ("customers", "subscriptions", "invoices", "credit_notes", "refunds")
PAGE_SIZE = 100
# Nothing in Stripe predates this (2010-01-01): a walk from here is open to the past.
EARLIEST = 1_262_304_000
# A walk of at least this many pages wastes (on its last, part page) under 2% of its requests.
PAGES_PER_WALK = 25
# Seconds a walk takes per page before any is measured: Stripe's ~0.3-0.5 s plus the page's writes.
DEFAULT_PAGE_SECONDS = 1.0
# Twice the bare need (rate x page time): a round ends with its slowest step, and walks that end or
# split mid-round leave their share idle until then (bench/backfill.py, 1M customers: 1.28x Stripe's
# floor with 1.25 times the need, 1.16x with twice).
WALK_HEADROOM = 2.0
# Step Functions' limit of a standard execution, and what a run uses of it before it continues in a
# new execution: the rest is for retried steps (each retry adds three events) and the way out.
HISTORY_LIMIT = 25_000
HISTORY_BUDGET = 20_000
START_EVENTS = 6  # ExecutionStarted and the Start task's 5


class Segment(TypedDict):
    kind: Kind
    gte: int  # EARLIEST: open to the past (how far back the data goes is not known yet)
    lt: int | None  # None: up to now and beyond (objects created during the backfill too)
    cursor: str | None  # Stripe's ``starting_after``: the last object already imported
    done: bool
    imported: int
    requests: int
    walks: int  # how many walks this one may become after its next page (1: it stays one)
    oldest: int | None  # ``created`` of the last object imported (where what is left begins)
    span: int  # seconds one page of this walk spanned last (0: no page yet)
    config_version: int  # the tenant config the run started with: steps never use an older one
    busy: float  # seconds this walk spent on its pages (Stripe's answers and the writes), not waiting
    account_created: int  # the account's ``created`` (EARLIEST: not known): no slice is cut before it


class Totals(TypedDict):
    customers: int
    subscriptions: int
    invoices: int
    credit_notes: int
    refunds: int
    requests: int  # list requests made
    walks: int  # cursor walks finished: the requests are at most the minimum plus one per walk


def _segment(
    kind: Kind, gte: int, lt: int | None, config_version: int, account_created: int, walks: int = 1
) -> Segment:
    return Segment(
        kind=kind,
        gte=gte,
        lt=lt,
        cursor=None,
        done=False,
        imported=0,
        requests=0,
        walks=walks,
        oldest=None,
        span=0,
        config_version=config_version,
        busy=0.0,
        account_created=account_created,
    )


class Allowance(TypedDict):
    walks: int  # walks going at once in all (the account's limit)
    kinds: dict[str, int]  # at most this many of each list (its endpoint's limit)
    page_seconds: float  # what the allowance was sized for


def allowance(
    global_rate: float, endpoint_rates: Mapping[str, float], page_seconds: float, max_walks: int
) -> Allowance:
    """Enough walks to keep each list's endpoint at its limit, all within the account's limit."""

    def need(rate: float) -> int:
        return max(1, min(max_walks, math.ceil(rate * page_seconds * WALK_HEADROOM)))

    total = need(global_rate)
    kinds: dict[str, int] = {kind: min(total, need(endpoint_rates.get(kind, global_rate))) for kind in KINDS}
    return Allowance(walks=max(total, len(KINDS)), kinds=kinds, page_seconds=page_seconds)


def plan(
    walks: int | Allowance, config_version: int = 0, account_created: int | None = None
) -> list[Segment]:
    """One walk per list, from now to the past, each allowed its share of the walks.
    ``account_created``: the account's ``created`` (None: Stripe did not say)."""
    if isinstance(walks, int):
        walks = Allowance(walks=walks, kinds={}, page_seconds=DEFAULT_PAGE_SECONDS)
    share = max(1, walks["walks"] // len(KINDS))
    start = max(EARLIEST, account_created or EARLIEST)
    return [
        _segment(kind, EARLIEST, None, config_version, start, min(share, walks["kinds"].get(kind, share)))
        for kind in KINDS
    ]


def round_events(walks: int) -> int:
    """History events one round adds: the Map's 4, 7 per walk, Collect's 5 and the Choice's 2
    (a retried step adds 3 per retry: ``HISTORY_BUDGET`` leaves room for them)."""
    return 11 + 7 * walks


def page_seconds(segments: list[Segment], default: float = DEFAULT_PAGE_SECONDS) -> float:
    """A walk's time per page as the steps measured it (their own work: waiting for slots excluded)."""
    busy = sum(s.get("busy", 0.0) for s in segments)
    pages = sum(s["requests"] for s in segments if s.get("busy", 0.0) > 0)
    return busy / pages if pages else default


def list_params(segment: Segment) -> dict[str, Any]:
    """The list call for the segment's next page."""
    created: dict[str, int] = {"gte": segment["gte"]}
    if segment["lt"] is not None:
        created["lt"] = segment["lt"]
    params: dict[str, Any] = {"limit": PAGE_SIZE, "created": created}
    if segment["kind"] == "customers":
        # Its default payment method comes with each customer: the card whose expiry risk reads.
        params["expand"] = ["data.invoice_settings.default_payment_method"]
    elif segment["kind"] == "subscriptions":
        params["status"] = "all"  # canceled ones too: a churned customer is still a customer
        # The customer comes with each subscription: a deleted customer (absent from the customers
        # list) is seen as deleted, with no request of its own. So does the schedule managing it (what
        # it has coming), with no list of its own: only a live schedule manages a subscription.
        params["expand"] = ["data.discounts", "data.customer", "data.schedule"]
    elif segment["kind"] == "refunds":
        params["expand"] = ["data.charge"]  # a refund names no customer: its charge does
    if segment["cursor"]:
        params["starting_after"] = segment["cursor"]
    return params


def split(segment: Segment, oldest_seen: int, page_span: int) -> list[Segment]:
    """After a page: the walk, and the new walks it hands the older part of its range to.

    What is left is ``[gte, oldest_seen]``. Open to the past, it is cut into slices of
    ``PAGES_PER_WALK`` pages at this page's density (``page_span`` seconds per page), down to the
    account's start at most (none wholly before it), the last one still open; bounded, into equal
    slices of at least ``PAGES_PER_WALK`` pages. This walk keeps the newest slice with its cursor
    (same order, so the cursor stays valid), new walks take the others: no object is in two slices,
    none in none. Up to ``segment["walks"]`` walks in all.
    """
    segment = Segment(**{**segment, "oldest": oldest_seen, "span": max(1, page_span)})
    if segment["done"] or segment["walks"] <= 1:
        return [segment]
    span, kind, version = segment["span"], segment["kind"], segment["config_version"]
    start = segment.get("account_created", EARLIEST)
    slice_seconds = PAGES_PER_WALK * span
    if segment["gte"] <= EARLIEST:
        bottom = _data_start(segment, oldest_seen)
        bounds = [oldest_seen - i * slice_seconds for i in range(1, segment["walks"])]
        bounds = [bound for bound in bounds if bound > bottom]
        lower = [*bounds[1:], EARLIEST]
    else:
        remaining = oldest_seen - segment["gte"]
        parts = min(segment["walks"], remaining // slice_seconds)
        bounds = (
            [segment["gte"] + remaining * i // parts for i in range(parts - 1, 0, -1)] if parts > 1 else []
        )
        lower = [*bounds[1:], segment["gte"]]
    if not bounds:
        return [Segment(**{**segment, "walks": 1})]
    kept = Segment(**{**segment, "gte": bounds[0], "walks": 1})
    return [
        kept,
        *(_segment(kind, low, high, version, start) for high, low in zip(bounds, lower, strict=True)),
    ]


def _data_start(segment: Segment, oldest_seen: int) -> int:
    """Where an open walk's data can begin: the account's start, unless a page already went past it
    (an account connected after its first objects): then, as when it is unknown, Stripe's."""
    start = segment.get("account_created", EARLIEST)
    return start if oldest_seen >= start else EARLIEST


def _slices_above_start(segment: Segment) -> float:
    """How many walks an open walk can become: its slices of ``PAGES_PER_WALK`` pages that are not
    wholly before the account's start."""
    oldest = segment["oldest"]
    if oldest is None or segment["span"] <= 0:
        return 1.0
    bottom = _data_start(segment, oldest)
    if bottom <= EARLIEST:
        return float("inf")
    return float(math.ceil((oldest - bottom) / (PAGES_PER_WALK * segment["span"])))


def _pages_left(segment: Segment) -> float:
    """Estimated pages still to walk (infinite when open to the past: the data's start is unknown)."""
    if segment["oldest"] is None or segment["span"] <= 0:
        return 0.0
    if segment["gte"] <= EARLIEST:
        return float("inf")
    return (segment["oldest"] - segment["gte"]) / segment["span"]


def share_out(active: list[Segment], walks: int, kinds: Mapping[str, int] | None = None) -> list[Segment]:
    """Split the walks still going into the room finished walks left (up to ``walks`` at once, and
    up to ``kinds[kind]`` of one list).

    Each splits at the density its last page showed, as ``split`` does after a page. Bounded walks
    with many pages left come first (known work, slices of ``PAGES_PER_WALK`` pages at least), then
    walks open to the past share the rest (their data may go back far).
    """
    free = walks - len(active)
    room = {kind: (kinds or {}).get(kind, walks) - sum(s["kind"] == kind for s in active) for kind in KINDS}
    allowed = [1] * len(active)

    def give(i: int, extra: int) -> None:
        nonlocal free
        extra = min(extra, free, room[active[i]["kind"]])
        if extra > 0:
            allowed[i] += extra
            free -= extra
            room[active[i]["kind"]] -= extra

    waiting = [i for i, s in enumerate(active) if s["walks"] <= 1 and s["span"] > 0]
    for i in sorted(waiting, key=lambda i: _pages_left(active[i]), reverse=True):
        pages = _pages_left(active[i])
        if pages < float("inf"):
            give(i, int(pages // PAGES_PER_WALK) - 1)
    open_walks = [i for i in waiting if _pages_left(active[i]) == float("inf")]
    for n, i in enumerate(open_walks):
        same_kind_left = sum(active[j]["kind"] == active[i]["kind"] for j in open_walks[n:])
        fair = min(free // (len(open_walks) - n), room[active[i]["kind"]] // same_kind_left)
        give(i, int(min(fair, _slices_above_start(active[i]) - 1)))
    shared: list[Segment] = []
    for segment, walks_allowed in zip(active, allowed, strict=True):
        oldest = segment["oldest"]
        if walks_allowed > 1 and oldest is not None:
            shared += split(Segment(**{**segment, "walks": walks_allowed}), oldest, segment["span"])
        else:
            shared.append(segment)
    return shared


class Run(TypedDict):
    """What carries a run from round to round, and from one execution to the next."""

    totals: Totals
    allowance: Allowance
    history: int  # events this execution's history holds so far
    generation: int  # executions the run has had (1: the first)
    started_at: int
    config_version: int


def new_totals() -> Totals:
    return Totals(customers=0, subscriptions=0, invoices=0, credit_notes=0, refunds=0, requests=0, walks=0)


def collect(
    totals: Totals, rounds: list[list[Segment]], walks: int, kinds: Mapping[str, int] | None = None
) -> tuple[Totals, list[Segment]]:
    """After a round: add up what finished walks imported; the walks still going share ``walks``."""
    # A run started before a list was added has no total for it yet.
    totals = Totals(**{**new_totals(), **totals})
    active: list[Segment] = []
    for segment in (s for produced in rounds for s in produced):
        if segment["done"]:
            totals[segment["kind"]] += segment["imported"]
            totals["requests"] += segment["requests"]
            totals["walks"] += 1
        else:
            active.append(segment)
    return totals, share_out(active, walks, kinds)
