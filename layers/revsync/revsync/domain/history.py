"""MRR history and movements (docs/contracts.md "MRR history and movements"), as pure functions.

A customer's MRR timeline is a function of the *set* of its observations: MRR(t) is what the revenue
rules give for the latest observation of each object observed at or before t. The write path keeps
that set small: each customer or subscription observation is kept as its *revenue view* (the
snapshot without what cannot move MRR: period dates, names, metadata), and equal views are stored
once (``HistoryLog``). The timeline is replayed from that set (``replay``), keeping each
subscription's value, linear in subscriptions and changes, and resumable from a ``Checkpoint`` (how
revsync.domain.history_archive keeps a long history in pieces). Each change of MRR(t) is a movement;
a customer's movements give its contribution to each month (``Contribution``), and a tenant's months
are sums of those over its customers' timelines (the write path keeps each customer's timeline, in
pieces, with its state).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any, Literal, NamedTuple

from revsync.domain.events import Observation
from revsync.domain.mrr import EXACT, exact_sum, round_minor_units, subscription_mrr
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.snapshots import (
    CustomerSnapshot,
    Discount,
    Price,
    Snapshot,
    SubscriptionSnapshot,
    customer_id_of,
    discounts_of,
)
from revsync.domain.state import Usage, counted_usage, decide, usage_after, usage_invoices

Movement = Literal["new", "reactivation", "expansion", "contraction", "churn"]
MOVEMENTS: tuple[Movement, ...] = ("new", "expansion", "reactivation", "contraction", "churn")
# Within one second: an import's reconstructed entry first (any real observation that second
# wins), then the lifecycle order.
_RANK = {"imported": -1, "created": 0, "updated": 1, "fetched": 1, "deleted": 2}
_REVENUE_STATUSES = ("active", "past_due")
_ZERO = Decimal(0)


# --- the stored set -------------------------------------------------------------------------------


def revenue_view(snapshot: Snapshot) -> Snapshot | None:
    """What of a snapshot can move MRR (None: nothing, e.g. a refund). Equal views are one entry.
    A subscription's cancellation schedule (``cancel_at``, ``cancel_at_period_end``, and
    ``canceled_at``, the time it was asked for) stays: a policy may churn it when it is scheduled. A
    finalized invoice's usage lines stay (what ``metered: last_invoice`` counts; under ``excluded``
    they move nothing), and nothing else of it."""
    if snapshot["object"] == "invoice":
        if "usage_lines" not in snapshot:
            return None
        return {
            "object": "invoice",
            "id": snapshot["id"],
            "customer": snapshot["customer"],
            "status": snapshot["status"],
            "amount_paid": 0,
            "currency": snapshot["currency"],
            "paid_at": None,
            "subscription": None,
            "lines": [],
            "usage_lines": snapshot["usage_lines"],
            "finalized_at": snapshot["finalized_at"],
        }
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
        # Its payment method moves no MRR (risk signals read it from the state).
        customer.pop("default_payment_method", None)
        customer.pop("default_payment_method_object", None)
        return customer
    if snapshot["object"] == "subscription":
        items = [
            {
                **item,
                "id": None,
                "current_period_end": None,
                "price": None
                if item["price"] is None
                else {
                    **item["price"],
                    "id": _metered_price_id(item["price"]),
                    "nickname": None,
                    "product": None,
                },
            }
            for item in snapshot["items"]
        ]
        subscription: SubscriptionSnapshot = {
            **snapshot,
            "created": None,
            "current_period_end": None,
            "trial_end": None,
            "ended_at": None,
            "items": items,  # type: ignore[typeddict-item]
        }
        subscription.pop("items_complete", None)
        subscription.pop("schedule", None)  # (what it has coming: risk signals read it)
        return subscription
    return None


def _metered_price_id(price: Price) -> str | None:
    """A metered price keeps its id in the view: usage lines name the price they bill (a licensed
    one's id moves no MRR, and views without it stay one entry across price changes)."""
    return price["id"] if price["usage_type"] == "metered" else None


def canonical_view(view: Any) -> str:
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
            tuple(canonical_view(view) for view in document["views"]),
            frozenset(Entry(int(at), str(source), int(view)) for at, source, view in document["entries"]),
        )

    def with_entries(self, additions: Iterable[tuple[int, str, Snapshot]]) -> HistoryLog:
        views, index = list(self.views), {view: i for i, view in enumerate(self.views)}
        entries = set(self.entries)
        for at, source, snapshot in additions:
            text = canonical_view(snapshot)
            if text not in index:
                index[text] = len(views)
                views.append(text)
            entries.add(Entry(at, source, index[text]))
        return HistoryLog(tuple(views), frozenset(entries))

    def between(self, low: int | None, high: int | None) -> HistoryLog:
        """The entries observed from ``low`` to before ``high`` (None: no bound), with their views only."""
        kept = sorted(
            e for e in self.entries if (low is None or e.at >= low) and (high is None or e.at < high)
        )
        numbers: dict[int, int] = {}  # old view index -> new, in the order of first use
        for entry in kept:
            numbers.setdefault(entry.view, len(numbers))
        return HistoryLog(
            tuple(self.views[old] for old in numbers),
            frozenset(Entry(e.at, e.source, numbers[e.view]) for e in kept),
        )

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


class TimelineStart(NamedTuple):
    """Where a piece of a customer's timeline starts from: the currency and MRR just before its first
    point, and whether the customer had MRR > 0 at any earlier time. A whole timeline starts from
    nothing; a later piece (history kept in parts) carries what came before it, so its movements, and
    its contributions to months, are a function of the piece alone and pieces add up."""

    currency: str | None = None
    mrr: int = 0
    ever_paid: bool = False


FROM_NOTHING = TimelineStart()


def piece_end(timeline: Sequence[tuple[int, str | None, int]], start: TimelineStart) -> TimelineStart:
    """Where the piece after ``timeline`` (which starts from ``start``) starts: its last point."""
    if not timeline:
        return start
    _, currency, mrr = timeline[-1]
    ever_paid = start.ever_paid or start.mrr > 0 or any(point[2] > 0 for point in timeline)
    return TimelineStart(currency, mrr, ever_paid)


class Checkpoint(NamedTuple):
    """Where a replay of a customer's kept observations stands at some time: the observation held for
    each object (customer first, then subscriptions in the order first seen: the record's currency
    falls back to the first subscription's), the subscriptions whose held observation is an import's
    reconstruction of their start, and the timeline's value there. Replaying the later observations
    from it gives what replaying all of them gives."""

    held: tuple[Observation, ...] = ()
    provisional: frozenset[str] = frozenset()  # subscription ids
    start: TimelineStart = FROM_NOTHING
    # (subscription id, when its current run of past_due observations began), by id
    past_due_since: tuple[tuple[str, int], ...] = ()


def _repeating_ends(snapshot: Snapshot, after: int) -> list[int]:
    """When the snapshot's repeating discounts still running after ``after`` end (its MRR changes then)."""
    return [
        discount["end"]
        for discount in discounts_of(snapshot)
        if discount["coupon"] is not None
        and discount["coupon"]["duration"] == "repeating"
        and discount["end"] is not None
        and discount["end"] > after
    ]


_CUSTOMER_WIDE = ""  # a pending re-derivation of every subscription (the customer's discount ended)


class _RunningMrr:
    """The record's currency and MRR (``derive_record``'s rules) for the observations held, kept up to
    date as they change: each subscription's exact value is derived again only when its observation,
    the customer's discounts, or a repeating discount's end passed by the time it is derived as of
    (the newest observation held) can change it, and the total is adjusted exactly. Replaying a
    customer's history is then linear in its subscriptions and changes."""

    def __init__(self, policy: RevenuePolicy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self.customer: Observation | None = None
        self.subscriptions: dict[str, Observation] = {}  # in the order first seen
        self.as_of = 0  # the newest observation held: the time discounts are judged at
        self._discounts: list[Discount] = []  # the customer's
        self._values: dict[str, tuple[str | None, Decimal]] = {}  # subscription -> (currency, value)
        self._sums: dict[str | None, Decimal] = {}  # by subscription currency
        self._order: list[str] = []  # subscription ids in the order first seen
        self._position: dict[str, int] = {}
        self._first_priced: int | None = None  # position of the first subscription with a currency
        self._ends: list[tuple[int, str]] = []  # (when, subscription or _CUSTOMER_WIDE): a heap
        self._pending: set[str] = set()
        # subscription -> when its held run of past_due observations began (policy's churn_after_days)
        self.past_due_since: dict[str, int] = {}
        self.usage: Usage = {}  # finalized invoices' usage lines (state.usage_after)

    def hold(self, observation: Observation, *, reconstructed: bool = False) -> None:
        """Hold ``observation`` (``reconstructed``: an import's entry at the subscription's start, which
        dates no past-due run: the run starts at the first real observation of it)."""
        snapshot = observation["snapshot"]
        if snapshot["object"] == "invoice":
            # (Not the time MRR is judged at: the record's MRR was so before invoices moved any.)
            usage = usage_after(self.usage, snapshot)
            if usage != self.usage and self.policy.metered == "last_invoice":
                changed = {s for s in (*usage, *self.usage) if usage.get(s) != self.usage.get(s)}
                self._pending.update(changed & set(self.subscriptions))
            self.usage = usage
            return
        self.as_of = max(self.as_of, observation["observed_at"])
        if snapshot["object"] == "customer":
            self.customer = observation
            discounts = [snapshot["discount"]] if snapshot["discount"] else []
            if discounts != self._discounts:
                self._discounts = discounts
                self._pending.add(_CUSTOMER_WIDE)
                for end in _repeating_ends(snapshot, self.as_of):
                    heapq.heappush(self._ends, (end, _CUSTOMER_WIDE))
        elif snapshot["object"] == "subscription":
            sub_id = snapshot["id"]
            if sub_id not in self._position:
                self._position[sub_id] = len(self._order)
                self._order.append(sub_id)
            if snapshot["status"] != "past_due" or reconstructed:
                self.past_due_since.pop(sub_id, None)
            elif sub_id not in self.past_due_since:
                self.past_due_from(sub_id, observation["observed_at"])
            self.subscriptions[sub_id] = observation
            self._pending.add(sub_id)

    def past_due_from(self, sub_id: str, since: int) -> None:
        """The subscription's run of past_due began at ``since``: derive it again when the policy's
        limit on it passes."""
        self.past_due_since[sub_id] = since
        grace = self.policy.past_due_grace
        if grace is not None:
            heapq.heappush(self._ends, (since + grace, sub_id))

    def now(self) -> tuple[str | None, int]:
        """(currency, MRR) as ``derive_record`` gives them for what is held."""
        while self._ends and self._ends[0][0] <= self.as_of:
            self._pending.add(heapq.heappop(self._ends)[1])
        for sub_id in self.subscriptions if _CUSTOMER_WIDE in self._pending else self._pending:
            self._derive(sub_id)
        self._pending.clear()
        customer = self.customer["snapshot"] if self.customer is not None else None
        assert customer is None or customer["object"] == "customer"
        currency = (customer["currency"] if customer else None) or self._fallback_currency()
        if customer is not None and customer["deleted"]:
            return currency, 0
        if currency is None:  # then no subscription has one: all count
            total = exact_sum(self._sums.values())
        else:
            total = exact_sum((self._sums.get(None, _ZERO), self._sums.get(currency, _ZERO)))
        return currency, round_minor_units(total)

    def _derive(self, sub_id: str) -> None:
        snapshot = self.subscriptions[sub_id]["snapshot"]
        assert snapshot["object"] == "subscription"
        currency = snapshot["currency"]
        value = subscription_mrr(
            snapshot,
            self._discounts,
            self.as_of,
            self.policy,
            self.past_due_since.get(sub_id),
            counted_usage(self.usage, snapshot),
        )
        if sub_id in self._values:
            old_currency, old_value = self._values[sub_id]
            self._sums[old_currency] = EXACT.subtract(self._sums[old_currency], old_value)
        self._values[sub_id] = (currency, value)
        self._sums[currency] = EXACT.add(self._sums.get(currency, _ZERO), value)
        for end in _repeating_ends(snapshot, self.as_of):
            heapq.heappush(self._ends, (end, sub_id))
        position = self._position[sub_id]
        if currency and (self._first_priced is None or position < self._first_priced):
            self._first_priced = position
        elif not currency and position == self._first_priced:  # lost it (Stripe never does this)
            priced = [self._position[s] for s, (c, _) in self._values.items() if c]
            self._first_priced = min(priced, default=None)

    def _fallback_currency(self) -> str | None:
        if self._first_priced is None:
            return None
        return self._values[self._order[self._first_priced]][0]


class _Replay:
    """``mrr_timeline``'s walk through a customer's observations in time order, from a checkpoint."""

    def __init__(self, checkpoint: Checkpoint, policy: RevenuePolicy) -> None:
        self.running = _RunningMrr(policy)
        for observation in checkpoint.held:
            self.running.hold(observation, reconstructed=True)
        for sub_id, since in checkpoint.past_due_since:
            self.running.past_due_from(sub_id, since)
        self.provisional = set(checkpoint.provisional)
        self.start = checkpoint.start
        self.current: tuple[str | None, int] = (checkpoint.start.currency, checkpoint.start.mrr)
        self.points: list[tuple[int, str | None, int]] = []

    def _held(self, snapshot: Snapshot) -> Observation | None:
        if snapshot["object"] == "customer":
            return self.running.customer
        return self.running.subscriptions.get(str(snapshot.get("id")))

    def second(self, at: int, observations: Iterable[Observation]) -> None:
        """Apply the observations of second ``at`` (in replay order), then note any change of MRR."""
        for kept in observations:
            snapshot = kept["snapshot"]
            observation: Observation = kept
            if str(kept["source"]) == "imported":
                observation = {**kept, "source": "updated"}
                if snapshot.get("status") in _REVENUE_STATUSES:
                    # "It ran from its start": only while nothing else is known of it.
                    if self._held(snapshot) is None:
                        self.running.hold(observation, reconstructed=True)
                        self.provisional.add(str(snapshot.get("id")))
                    continue
            if snapshot["object"] == "subscription" and snapshot["id"] in self.provisional:
                # Anything actually observed replaces the reconstruction.
                self.provisional.discard(snapshot["id"])
                self.running.hold(observation)
                continue
            # The write path's rule for which observation of an object stands (state.apply); an
            # invoice's usage lines are a join of their own.
            if snapshot["object"] == "invoice" or decide(self._held(snapshot), observation).action == "apply":
                self.running.hold(observation)
        now = self.running.now()
        if now != self.current and (now[1] or self.current[1]):
            self.points.append((at, now[0], now[1]))
            self.start = piece_end(((at, now[0], now[1]),), self.start)
        self.current = now

    def checkpoint(self) -> Checkpoint:
        customer = self.running.customer
        held = ((customer,) if customer is not None else ()) + tuple(self.running.subscriptions.values())
        if self.running.usage:
            # The usage kept so far, as invoice views that give it again.
            owner = held[0]["snapshot"] if held else None
            customer_id = "" if owner is None else customer_id_of(owner)
            held += tuple(
                Observation(snapshot=view, observed_at=view["finalized_at"], source="updated", event_id=None)
                for view in usage_invoices(self.running.usage, customer_id)
            )
        since = tuple(sorted(self.running.past_due_since.items()))
        return Checkpoint(held, frozenset(self.provisional), self.start, since)


FROM_THE_START = Checkpoint()


def replay(
    observations: Iterable[Observation],
    checkpoint: Checkpoint = FROM_THE_START,
    cuts: Sequence[int] = (),
    policy: RevenuePolicy = DEFAULT_POLICY,
) -> tuple[list[tuple[int, str | None, int]], list[Checkpoint]]:
    """The timeline points ``observations`` give by the revenue rules and ``policy`` (replayed in
    time order from ``checkpoint``: none of them before the time it was taken at), and the checkpoint
    at each of ``cuts`` (ascending: the replay's state after every observation before that time).

    A change the policy makes between observations (a past-due subscription reaching its limit), like
    a repeating discount's end, shows at the next observation: MRR is derived as of the newest one."""
    dumped: dict[int, str] = {}

    def content(snapshot: Snapshot) -> str:  # views are shared objects: each dumped once
        text = dumped.get(id(snapshot))
        if text is None:
            text = dumped[id(snapshot)] = json.dumps(snapshot, sort_keys=True)
        return text

    # Within one second: by lifecycle step, then by content, so the result depends only on the set.
    ordered = sorted(
        observations, key=lambda o: (o["observed_at"], _RANK[o["source"]], content(o["snapshot"]))
    )
    walk = _Replay(checkpoint, policy)
    taken: list[Checkpoint] = []
    pending = list(cuts)
    for at, group in groupby(ordered, key=lambda o: o["observed_at"]):
        while pending and pending[0] <= at:
            taken.append(walk.checkpoint())
            pending.pop(0)
        walk.second(at, group)
    taken.extend(walk.checkpoint() for _ in pending)
    return walk.points, taken


def mrr_timeline(
    customer_id: str, observations: Iterable[Observation], policy: RevenuePolicy = DEFAULT_POLICY
) -> list[tuple[int, str | None, int]]:
    """(time, currency, MRR from then on) at each time the customer's MRR or currency changed: MRR(t)
    by the revenue rules from the latest observation of each object observed at or before t.

    Observations are applied in time order (within a second by lifecycle step, then by content, so
    the result depends only on the set); duplicates change nothing, as in the write path.
    """
    return replay(observations, policy=policy)[0]


def _classify(before: int, after: int, ever_paid: bool) -> tuple[Movement, int]:
    if before == 0:
        return ("reactivation" if ever_paid else "new"), after
    if after == 0:
        return "churn", before
    if after > before:
        return "expansion", after - before
    return "contraction", before - after


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
