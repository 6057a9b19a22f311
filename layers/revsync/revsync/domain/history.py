"""MRR history and movements (DESIGN.md "MRR history and movements"), as pure functions.

A customer's MRR timeline is a function of the *set* of its observations: MRR(t) is what the revenue
rules give for the latest observation of each object observed at or before t. The write path keeps
that set small: each customer or subscription observation is kept as its *revenue view* (the
snapshot without what cannot move MRR: period dates, names, metadata), and equal views are stored
once (``HistoryLog``). Each change of MRR(t) is a movement; a customer's movements give its
contribution to each month (``Contribution``), and a tenant's months are sums of those over its
customers' timelines (the write path keeps each customer's timeline with its state, in one write).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Literal, NamedTuple

from revsync.domain.events import Observation
from revsync.domain.record import derive_record
from revsync.domain.snapshots import CustomerSnapshot, Snapshot, SubscriptionSnapshot
from revsync.domain.state import CustomerObjects, apply

Movement = Literal["new", "reactivation", "expansion", "contraction", "churn"]
MOVEMENTS: tuple[Movement, ...] = ("new", "expansion", "reactivation", "contraction", "churn")
# Within one second: an import's reconstructed entry first (any real observation that second
# wins), then the lifecycle order.
_RANK = {"imported": -1, "created": 0, "updated": 1, "fetched": 1, "deleted": 2}
_REVENUE_STATUSES = ("active", "past_due")


# --- the stored set -------------------------------------------------------------------------------


def revenue_view(snapshot: Snapshot) -> Snapshot | None:
    """What of a snapshot can move MRR (None: nothing, e.g. an invoice). Equal views are one entry."""
    if snapshot["object"] == "customer":
        customer: CustomerSnapshot = {
            **snapshot,
            "email": None,
            "name": None,
            "created": None,
            "balance": None,
            "delinquent": None,
            "metadata": {},
        }
        return customer
    if snapshot["object"] == "subscription":
        items = [
            {
                **item,
                "id": None,
                "current_period_end": None,
                "price": None
                if item["price"] is None
                else {**item["price"], "id": None, "nickname": None, "product": None},
            }
            for item in snapshot["items"]
        ]
        subscription: SubscriptionSnapshot = {
            **snapshot,
            "created": None,
            "current_period_end": None,
            "trial_end": None,
            "cancel_at_period_end": False,
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "items": items,  # type: ignore[typeddict-item]
        }
        subscription.pop("items_complete", None)
        return subscription
    return None


def _canonical(view: Any) -> str:
    return json.dumps(view, sort_keys=True, separators=(",", ":"))


class Entry(NamedTuple):
    """One kept observation: when, how (its lifecycle step, or ``imported``), and its view's index."""

    at: int
    source: str
    view: int


class HistoryLog(NamedTuple):
    """A customer's kept observations: distinct revenue views, and the entries that point at them."""

    views: tuple[str, ...] = ()  # canonical JSON of each view
    entries: frozenset[Entry] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "views": [json.loads(v) for v in self.views],
            "entries": sorted([list(e) for e in self.entries]),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> HistoryLog:
        if not document:
            return cls()
        return cls(
            tuple(_canonical(view) for view in document["views"]),
            frozenset(Entry(int(at), str(source), int(view)) for at, source, view in document["entries"]),
        )

    def with_entries(self, additions: Iterable[tuple[int, str, Snapshot]]) -> HistoryLog:
        views, index = list(self.views), {view: i for i, view in enumerate(self.views)}
        entries = set(self.entries)
        for at, source, snapshot in additions:
            text = _canonical(snapshot)
            if text not in index:
                index[text] = len(views)
                views.append(text)
            entries.add(Entry(at, source, index[text]))
        return HistoryLog(tuple(views), frozenset(entries))

    def observations(self) -> list[Observation]:
        parsed = [json.loads(view) for view in self.views]
        return [
            Observation(snapshot=parsed[e.view], observed_at=e.at, source=e.source, event_id=None)  # type: ignore[typeddict-item]
            for e in self.entries
        ]


def history_entries(observation: Observation, *, imported: bool = False) -> list[tuple[int, str, Snapshot]]:
    """What one observation adds to the set. An imported subscription (a backfill page) also enters at
    its start (or the end of its trial) and, if it ended, leaves at ``ended_at``: changes before the
    import that Stripe no longer reports are not reconstructed."""
    snapshot = observation["snapshot"]
    view = revenue_view(snapshot)
    if view is None:
        return []
    entries: list[tuple[int, str, Snapshot]] = [(observation["observed_at"], observation["source"], view)]
    if imported and snapshot["object"] == "subscription" and view["object"] == "subscription":
        now = observation["observed_at"]
        start = snapshot["created"]
        trial_end = snapshot["trial_end"]
        if start is not None and trial_end is not None and start < trial_end <= now:
            start = trial_end
        ended_at = snapshot["ended_at"]
        if snapshot["status"] in _REVENUE_STATUSES and start is not None and start < now:
            entries.append((start, "imported", view))
        elif ended_at is not None and start is not None and start < ended_at <= now:
            entries.append((start, "imported", {**view, "status": "active"}))
            entries.append((ended_at, "imported", view))
    return entries


# --- the timeline and its movements ---------------------------------------------------------------


# (time, currency, MRR from then on) at each change: what ``mrr_timeline`` gives.
Timeline = tuple[tuple[int, str | None, int], ...]


class MrrPoint(NamedTuple):
    at: int
    currency: str | None
    mrr: int  # after the change, in ``currency``
    movement: Movement
    amount: int


def mrr_timeline(customer_id: str, observations: Iterable[Observation]) -> list[tuple[int, str | None, int]]:
    """(time, currency, MRR from then on) at each time the customer's MRR or currency changed.

    Observations are applied in time order (within a second by lifecycle step, then by content, so
    the result depends only on the set); duplicates change nothing, as in the write path.
    """
    ordered = sorted(
        observations,
        key=lambda o: (o["observed_at"], _RANK[o["source"]], json.dumps(o["snapshot"], sort_keys=True)),
    )
    objects = CustomerObjects(customer_id=customer_id)
    points: list[tuple[int, str | None, int]] = []
    current: tuple[str | None, int] = (None, 0)
    provisional: set[str] = set()  # objects whose state is an import's reconstruction of their start
    for at, group in groupby(ordered, key=lambda o: o["observed_at"]):
        for kept in group:
            snapshot = kept["snapshot"]
            key = f"{snapshot['object']}:{snapshot.get('id')}"
            observation: Observation = kept
            if str(kept["source"]) == "imported":
                observation = {**kept, "source": "updated"}
                if snapshot.get("status") in _REVENUE_STATUSES:
                    # "It ran from its start": only while nothing else is known of it.
                    if objects.current(observation) is not None:
                        continue
                    objects = objects.with_observation(observation)
                    provisional.add(key)
                    continue
            if key in provisional:
                # Anything actually observed replaces the reconstruction.
                provisional.discard(key)
                objects = objects.with_observation(observation)
                continue
            outcome = apply(objects, observation)
            if outcome.changed:
                objects = outcome.objects
        record = derive_record("", objects, None)
        now = (record["currency"], record["mrr"])
        if now != current and (now[1] or current[1]):
            points.append((at, now[0], now[1]))
        current = now
    return points


def _classify(before: int, after: int, ever_paid: bool) -> tuple[Movement, int]:
    if before == 0:
        return ("reactivation" if ever_paid else "new"), after
    if after == 0:
        return "churn", before
    if after > before:
        return "expansion", after - before
    return "contraction", before - after


class TimelineStart(NamedTuple):
    """Where a piece of a customer's timeline starts from: the currency and MRR just before its first
    point, and whether the customer had MRR > 0 at any earlier time. A whole timeline starts from
    nothing; a later piece (history kept in parts) carries what came before it, so its movements, and
    its contributions to months, are a function of the piece alone and pieces add up."""

    currency: str | None = None
    mrr: int = 0
    ever_paid: bool = False


FROM_NOTHING = TimelineStart()


def movements(
    timeline: Sequence[tuple[int, str | None, int]], start: TimelineStart = FROM_NOTHING
) -> list[MrrPoint]:
    """Each change classified by the MRR just before (b) and after (a) it, per currency (a change of
    currency is a churn in the old one and a new or reactivated customer in the new one), from
    ``start`` (what came before the timeline's first point)."""
    classified: list[MrrPoint] = []
    currency: str | None = start.currency
    before, ever_paid = start.mrr, start.ever_paid or start.mrr > 0
    for at, now_currency, after in timeline:
        if now_currency != currency and before > 0:
            classified.append(MrrPoint(at, currency, 0, "churn", before))
            before = 0
        currency = now_currency
        if after == before:
            continue
        kind, amount = _classify(before, after, ever_paid)
        classified.append(MrrPoint(at, currency, after, kind, amount))
        ever_paid = ever_paid or after > 0
        before = after
    return classified


def movement_of(before: int, after: int, ever_paid: bool) -> Movement | None:
    """The movement a record change from ``before`` to ``after`` MRR makes (None: no MRR change)."""
    return None if before == after else _classify(before, after, ever_paid)[0]


# --- months ---------------------------------------------------------------------------------------


def month_of(at: int) -> str:
    moment = datetime.fromtimestamp(at, tz=UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


class Contribution(NamedTuple):
    """A customer's (or, summed, a tenant's) movements within one month, in one currency."""

    new: int = 0
    expansion: int = 0
    reactivation: int = 0
    contraction: int = 0
    churn: int = 0
    new_customers: int = 0
    reactivated_customers: int = 0
    churned_customers: int = 0

    def __add__(self, other: object) -> Contribution:
        assert isinstance(other, Contribution)
        return Contribution(*(a + b for a, b in zip(self, other, strict=True)))

    @property
    def net_mrr(self) -> int:
        return self.new + self.expansion + self.reactivation - self.contraction - self.churn

    @property
    def net_customers(self) -> int:
        return self.new_customers + self.reactivated_customers - self.churned_customers


_SLOT = {name: index for index, name in enumerate(Contribution._fields)}
# A movement's amount goes to its own field; these also count a customer.
_COUNTED = {
    "new": _SLOT["new_customers"],
    "reactivation": _SLOT["reactivated_customers"],
    "churn": _SLOT["churned_customers"],
}


def contributions(points: Iterable[MrrPoint]) -> dict[tuple[str, str], Contribution]:
    """(currency, YYYY-MM) -> the points' movements in that month, summed: one customer's
    contribution to its months, or a tenant's months from all its customers' points (plain lists
    while adding: ``/revenue`` adds up every paying customer's points on each request)."""
    sums: dict[tuple[str, str], list[int]] = {}
    for point in points:
        key = (point.currency or "", month_of(point.at))
        fields = sums.get(key)
        if fields is None:
            fields = sums[key] = [0] * len(_SLOT)
        fields[_SLOT[point.movement]] += point.amount
        if point.movement in _COUNTED:
            fields[_COUNTED[point.movement]] += 1
    return {key: Contribution(*fields) for key, fields in sums.items()}


def revenue_totals(
    timelines: Iterable[Sequence[tuple[int, str | None, int]]],
) -> dict[str, dict[str, Contribution]]:
    """currency -> YYYY-MM -> the customers' contributions to that month, summed (one timeline, as
    ``mrr_timeline`` gives it, per customer)."""
    totals: dict[str, dict[str, Contribution]] = {}
    points = (point for timeline in timelines for point in movements(timeline))
    for (currency, month), total in contributions(points).items():
        totals.setdefault(currency, {})[month] = total
    return totals


class Month(NamedTuple):
    month: str  # YYYY-MM
    start: int  # first instant (Unix seconds, UTC)
    end: int  # first instant of the next month


def months(first: str, last: str) -> list[Month]:
    """Every UTC calendar month from ``first`` to ``last`` (``YYYY-MM``), inclusive."""
    year, month = (int(p) for p in first.split("-"))
    last_year, last_month = (int(p) for p in last.split("-"))
    found: list[Month] = []
    while (year, month) <= (last_year, last_month):
        next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
        found.append(Month(f"{year:04d}-{month:02d}", _epoch(year, month), _epoch(next_year, next_month)))
        year, month = next_year, next_month
    return found


def _epoch(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def revenue_months(totals: Mapping[str, Contribution], first: str, last: str) -> list[dict[str, Any]]:
    """One entry per month from ``first`` to ``last``, from a currency's monthly totals (every month
    before ``first`` included): MRR and paying customers at its start and end, and the movements.
    ``mrr_start + new + expansion + reactivation - contraction - churn == mrr_end`` by construction."""
    mrr = customers = 0
    for name, total in sorted(totals.items()):
        if name < first:
            mrr += total.net_mrr
            customers += total.net_customers
    report = []
    for month in months(first, last):
        total = totals.get(month.month, Contribution())
        entry: dict[str, Any] = {"month": month.month, "mrr_start": mrr}
        entry.update({name: getattr(total, name) for name in MOVEMENTS})
        entry["customers_start"] = customers
        mrr += total.net_mrr
        customers += total.net_customers
        entry["mrr_end"] = mrr
        entry["customers_end"] = customers
        report.append(entry)
    return report


def history_document(points: Sequence[MrrPoint]) -> dict[str, Any]:
    """``GET .../customers/{id}/history``: the timeline in time order, in the customer's currency now."""
    currency = points[-1].currency if points else None
    return {
        "currency": currency,
        "points": [
            {"at": p.at, "mrr": p.mrr, "movement": p.movement, "amount": p.amount}
            | ({} if p.currency == currency else {"currency": p.currency})
            for p in points
        ],
    }
