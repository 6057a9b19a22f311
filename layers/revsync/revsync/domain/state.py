"""Which observation of a Stripe object wins: the ordering contract, as a pure function.

Stripe delivers at least once, in any order, for days. Each stored object keeps the snapshot that
was observed last (event ``created`` or fetch time) and an incoming one replaces it only if it is
newer. Terminal states (deleted customer, ended subscription, paid invoice) are never undone.
Within one second, an object's lifecycle order (created < updated < deleted) breaks the tie; when
that cannot, the caller fetches the object from Stripe and applies the fetched snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, TypedDict

from revsync.domain.events import Observation, Source
from revsync.domain.snapshots import (
    Discount,
    InvoiceSnapshot,
    Price,
    Snapshot,
    SubscriptionSnapshot,
    UsageLine,
    discounts_of,
    is_terminal,
    unexpanded_prices,
    with_phase_prices,
)

Action = Literal["apply", "keep", "refetch"]

_LIFECYCLE_RANK = {"created": 0, "updated": 1, "deleted": 2}


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str


def decide(current: Observation | None, incoming: Observation) -> Decision:
    """Whether ``incoming`` replaces ``current`` (both observations of the same Stripe object)."""
    if current is None:
        return Decision("apply", "new")
    if current["snapshot"] == incoming["snapshot"]:
        # Same content: only the watermark may move, so later observations (a later second, or a
        # later lifecycle step in the same second) still order the ones that arrive after them.
        if incoming["observed_at"] > current["observed_at"] or (
            incoming["observed_at"] == current["observed_at"]
            and "fetched" not in (incoming["source"], current["source"])
            and _LIFECYCLE_RANK[incoming["source"]] > _LIFECYCLE_RANK[current["source"]]
        ):
            return Decision("apply", "newer_identical")
        return Decision("keep", "duplicate")
    current_terminal, incoming_terminal = is_terminal(current["snapshot"]), is_terminal(incoming["snapshot"])
    if current_terminal and not incoming_terminal:
        return Decision("keep", "terminal")
    if current_terminal and incoming_terminal and current["source"] != incoming["source"]:
        # Two views of one ending: the deletion event dates it (churned_at); a later read does not.
        if incoming["source"] == "deleted":
            return Decision("apply", "dated_by_event")
        if current["source"] == "deleted":
            return Decision("keep", "dated_by_event")
    if incoming_terminal and not current_terminal:
        return Decision("apply", "became_terminal")
    if incoming["observed_at"] != current["observed_at"]:
        newer = incoming["observed_at"] > current["observed_at"]
        return Decision("apply", "newer") if newer else Decision("keep", "older")
    # Same second, different content.
    if incoming["source"] == "fetched":
        return Decision("apply", "fetched")  # read from Stripe after everything seen so far
    if current["source"] == "fetched":
        return Decision("refetch", "tie_with_fetched")  # this event may be newer than that read
    rank_in, rank_cur = _LIFECYCLE_RANK[incoming["source"]], _LIFECYCLE_RANK[current["source"]]
    if rank_in != rank_cur:
        return (
            Decision("apply", "later_in_lifecycle")
            if rank_in > rank_cur
            else Decision("keep", "earlier_in_lifecycle")
        )
    return Decision("refetch", "same_second")


# What the state keeps of the objects risk signals read (revsync.domain.risk): a few, the newest.
# Open failed invoices come before closed ones; a closed one is kept as long as it fits, so that a late
# failure event of it does not open it again.
MAX_FAILED_INVOICES = 4
MAX_SCHEDULES = 4  # live ones first
MAX_PAYMENT_METHODS = 4  # the customer's default always among them
FAILED_STATUSES = {"open": 0, "uncollectible": 1, "void": 2}  # a closed one never opens again


class FailedInvoice(TypedDict):
    """An invoice a payment attempt failed on and that is not paid, merged from every observation of
    it: the status and amounts of the newest (a closed one wins over an open one), the most attempts
    seen, when a failed attempt was first observed and when the latest attempt's failure was. Each is
    a maximum or a minimum, so any order and any repetition of the same observations give the same
    entry. Paid, it leaves the state (its paid observation is kept with the paid invoices)."""

    status: str  # open | uncollectible | void
    observed_at: int
    attempt_count: int
    amount_remaining: int
    currency: str | None
    next_payment_attempt: int | None
    subscription: str | None
    first_failed_at: int
    failed_at: int


def failed_invoice_of(invoice: InvoiceSnapshot, observed_at: int) -> FailedInvoice | None:
    """What an observation of an unpaid invoice says of a failed payment (None: none failed yet)."""
    attempts = invoice.get("attempt_count", 0)
    if invoice["status"] not in FAILED_STATUSES or attempts < 1:
        return None
    return FailedInvoice(
        status=str(invoice["status"]),
        observed_at=observed_at,
        attempt_count=attempts,
        amount_remaining=invoice.get("amount_remaining", 0),
        currency=invoice["currency"],
        next_payment_attempt=invoice.get("next_payment_attempt"),
        subscription=invoice["subscription"],
        first_failed_at=observed_at,
        failed_at=observed_at,
    )


def _newest_key(entry: FailedInvoice) -> tuple[bool, int, int, int, int, int, str, str]:
    rank = FAILED_STATUSES[entry["status"]]
    return (
        rank > 0,
        entry["observed_at"],
        rank,
        entry["attempt_count"],
        entry["amount_remaining"],
        entry["next_payment_attempt"] or -1,
        entry["currency"] or "",
        entry["subscription"] or "",
    )


def merge_failed(current: FailedInvoice | None, seen: FailedInvoice) -> FailedInvoice:
    """``current`` with one more observation of the same invoice (a join: order and repetition do not
    matter)."""
    if current is None:
        return seen
    newest = max(current, seen, key=_newest_key)
    if seen["attempt_count"] > current["attempt_count"]:
        failed_at = seen["failed_at"]
    elif seen["attempt_count"] == current["attempt_count"]:
        failed_at = min(current["failed_at"], seen["failed_at"])
    else:
        failed_at = current["failed_at"]
    return {
        **newest,
        "attempt_count": max(current["attempt_count"], seen["attempt_count"]),
        "first_failed_at": min(current["first_failed_at"], seen["first_failed_at"]),
        "failed_at": failed_at,
    }


def _bounded(entries: Mapping[str, FailedInvoice]) -> dict[str, FailedInvoice]:
    kept = sorted(
        entries.items(), key=lambda e: (e[1]["status"] == "open", e[1]["observed_at"], e[0]), reverse=True
    )
    return dict(sorted(kept[:MAX_FAILED_INVOICES]))


# What the state keeps of finalized invoices for the policy's ``metered: last_invoice``
# (revsync.domain.mrr): per subscription, its newest finalized invoices' usage lines. Two, so that a
# voided latest one leaves the one before it counting; the subscriptions whose newest is newest.
USAGE_INVOICES_KEPT = 2
MAX_USAGE_SUBSCRIPTIONS = 8
_USAGE_STATUS_RANK = {"open": 0, "uncollectible": 1, "paid": 2, "void": 3}  # never back down


class UsageInvoice(TypedDict):
    """A finalized invoice's usage lines of one subscription, merged from every observation of it: the
    furthest status seen (a void one counts nothing), the lines (a finalized invoice's never change)."""

    finalized_at: int
    status: str  # open | uncollectible | paid | void
    currency: str | None
    lines: list[UsageLine]


Usage = Mapping[str, Mapping[str, UsageInvoice]]  # subscription id -> invoice id -> its usage


def usage_after(usage: Usage, invoice: InvoiceSnapshot) -> Usage:
    """``usage`` with one more observation of a finalized invoice: a join (any order and any repetition
    of the same observations give the same), bounded to the newest ``USAGE_INVOICES_KEPT`` invoices
    (by ``finalized_at``, then id) of the ``MAX_USAGE_SUBSCRIPTIONS`` subscriptions whose newest is
    newest. A set's newest few do not depend on the order its members came in."""
    lines = invoice.get("usage_lines", [])
    finalized_at = invoice.get("finalized_at")
    if not lines or finalized_at is None or invoice["status"] not in _USAGE_STATUS_RANK:
        return usage
    merged = {subscription: dict(kept) for subscription, kept in usage.items()}
    for subscription in sorted({line["subscription"] for line in lines}):
        seen = UsageInvoice(
            finalized_at=finalized_at,
            status=str(invoice["status"]),
            currency=invoice["currency"],
            lines=[line for line in lines if line["subscription"] == subscription],
        )
        kept = merged.setdefault(subscription, {})
        current = kept.get(invoice["id"])
        kept[invoice["id"]] = seen if current is None else max(current, seen, key=_usage_rank)
        newest = sorted(kept.items(), key=lambda e: (e[1]["finalized_at"], e[0]), reverse=True)
        merged[subscription] = dict(sorted(newest[:USAGE_INVOICES_KEPT]))
    ranked = sorted(merged.items(), key=lambda e: (_newest_usage(e[1]), e[0]), reverse=True)
    return dict(sorted(ranked[:MAX_USAGE_SUBSCRIPTIONS]))


def _usage_rank(entry: UsageInvoice) -> tuple[int, int, str]:
    lines = sorted(repr(sorted(line.items())) for line in entry["lines"])
    return (_USAGE_STATUS_RANK[entry["status"]], entry["finalized_at"], repr((entry["currency"], lines)))


def _newest_usage(invoices: Mapping[str, UsageInvoice]) -> tuple[int, str]:
    return max((entry["finalized_at"], invoice_id) for invoice_id, entry in invoices.items())


def last_usage(usage: Usage, subscription: str) -> UsageInvoice | None:
    """The subscription's latest finalized invoice not voided, as far as its usage lines go."""
    kept = usage.get(subscription, {})
    counted = [(entry["finalized_at"], i) for i, entry in kept.items() if entry["status"] != "void"]
    return kept[max(counted)[1]] if counted else None


def counted_usage(usage: Usage, subscription: SubscriptionSnapshot) -> list[UsageLine]:
    """The usage lines ``metered: last_invoice`` counts for a subscription: its latest finalized
    invoice's not voided, when in the subscription's currency."""
    last = last_usage(usage, subscription["id"])
    if last is None:
        return []
    currencies = {last["currency"], subscription["currency"]} - {None}
    return last["lines"] if len(currencies) <= 1 else []


def stored_usage_lines(usage: Usage, invoice_id: str) -> list[UsageLine] | None:
    """The usage lines kept of an invoice (None: it is not kept)."""
    kept = [entry for invoices in usage.values() if (entry := invoices.get(invoice_id)) is not None]
    return [line for entry in kept for line in entry["lines"]] if kept else None


def usage_invoices(usage: Usage, customer_id: str) -> list[InvoiceSnapshot]:
    """Invoice snapshots that give ``usage`` again (``usage_after`` from nothing): a checkpoint's."""
    return [
        InvoiceSnapshot(
            object="invoice",
            id=invoice_id,
            customer=customer_id,
            status=entry["status"],
            amount_paid=0,
            currency=entry["currency"],
            paid_at=None,
            subscription=None,
            lines=[],
            usage_lines=entry["lines"],
            finalized_at=entry["finalized_at"],
        )
        for subscription in sorted(usage)
        for invoice_id, entry in sorted(usage[subscription].items())
    ]


@dataclass(frozen=True, slots=True)
class CustomerObjects:
    """Everything stored about one Stripe customer of one tenant: the latest observation of each object."""

    customer_id: str
    customer: Observation | None = None
    subscriptions: Mapping[str, Observation] = field(default_factory=dict)
    invoices: Mapping[str, Observation] = field(default_factory=dict)
    # Credit notes and charges, by id: what was given back of the paid invoices (domain.refunds).
    refunds: Mapping[str, Observation] = field(default_factory=dict)
    # What risk signals read (revsync.domain.risk), each bounded: invoices whose payment failed, by
    # id; subscription schedules; payment methods (the default one's card expiry).
    failed_invoices: Mapping[str, FailedInvoice] = field(default_factory=dict)
    schedules: Mapping[str, Observation] = field(default_factory=dict)
    payment_methods: Mapping[str, Observation] = field(default_factory=dict)
    # The usage lines of each subscription's newest finalized invoices (``usage_after``), bounded.
    usage: Usage = field(default_factory=dict)

    def current(self, incoming: Observation) -> Observation | None:
        snapshot = incoming["snapshot"]
        if snapshot["object"] == "customer":
            return self.customer
        if snapshot["object"] == "subscription":
            return self.subscriptions.get(snapshot["id"])
        if snapshot["object"] == "invoice":
            return self.invoices.get(snapshot["id"])
        if snapshot["object"] == "credit_note" or snapshot["object"] == "charge":
            return self.refunds.get(snapshot["id"])
        if snapshot["object"] == "subscription_schedule":
            return self.schedules.get(snapshot["id"])
        if snapshot["object"] == "payment_method":
            return self.payment_methods.get(snapshot["id"])
        return None

    def with_observation(self, incoming: Observation) -> CustomerObjects:
        snapshot = incoming["snapshot"]
        if snapshot["object"] == "customer":
            return replace(self, customer=incoming)
        if snapshot["object"] == "subscription":
            return replace(self, subscriptions={**self.subscriptions, snapshot["id"]: incoming})
        if snapshot["object"] == "invoice":
            return replace(self, invoices={**self.invoices, snapshot["id"]: incoming})
        if snapshot["object"] == "credit_note" or snapshot["object"] == "charge":
            return replace(self, refunds={**self.refunds, snapshot["id"]: incoming})
        if snapshot["object"] == "subscription_schedule":
            return replace(
                self, schedules=_newest({**self.schedules, snapshot["id"]: incoming}, MAX_SCHEDULES)
            )
        if snapshot["object"] == "payment_method":
            methods = {**self.payment_methods, snapshot["id"]: incoming}
            return replace(
                self, payment_methods=_newest(methods, MAX_PAYMENT_METHODS, self.default_payment_method)
            )
        raise ValueError(f"{snapshot['object']} snapshots are not stored")

    @property
    def default_payment_method(self) -> str | None:
        """The customer's ``invoice_settings.default_payment_method`` (None: none, or not seen)."""
        customer = self.customer["snapshot"] if self.customer is not None else None
        if customer is None or customer["object"] != "customer":
            return None
        return customer.get("default_payment_method")

    def known_prices(self) -> dict[str, Price]:
        """Prices seen expanded, by id (in subscriptions and schedules): a price's terms never change."""
        known: dict[str, Price] = {}
        for observation in self.subscriptions.values():
            snapshot = observation["snapshot"]
            if snapshot["object"] == "subscription":
                known.update(
                    {
                        i["price"]["id"]: i["price"]
                        for i in snapshot["items"]
                        if i["price"] and i["price"]["id"]
                    }
                )
        for observation in self.schedules.values():
            snapshot = observation["snapshot"]
            if snapshot["object"] == "subscription_schedule" and snapshot["next_phase"] is not None:
                known.update(
                    {
                        i["price_id"]: i["price"]
                        for i in snapshot["next_phase"]["items"]
                        if i["price"] and i["price_id"]
                    }
                )
        return known

    def known_discounts(self) -> dict[str, Discount]:
        """Discounts seen with their coupon, by id (a discount's coupon never changes)."""
        known: dict[str, Discount] = {}
        for observation in (self.customer, *self.subscriptions.values()):
            if observation is None:
                continue
            for discount in discounts_of(observation["snapshot"]):
                if discount["id"] and discount["coupon"] is not None:
                    known[discount["id"]] = discount
        return known

    @property
    def newest_observation(self) -> int:
        times = [
            o["observed_at"]
            for o in (
                self.customer,
                *self.subscriptions.values(),
                *self.invoices.values(),
                *self.refunds.values(),
                *self.schedules.values(),
                *self.payment_methods.values(),
            )
            if o
        ]
        times += [entry["observed_at"] for entry in self.failed_invoices.values()]
        return max(times, default=0)


def _newest(
    observations: Mapping[str, Observation], limit: int, keep: str | None = None
) -> dict[str, Observation]:
    """At most ``limit`` of ``observations``: ``keep`` (the customer's default payment method), then the
    live ones, then the newest observed."""

    def rank(item: tuple[str, Observation]) -> tuple[bool, bool, int, str]:
        object_id, observation = item
        return (
            object_id == keep,
            not is_terminal(observation["snapshot"]),
            observation["observed_at"],
            object_id,
        )

    kept = sorted(observations.items(), key=rank, reverse=True)[:limit]
    return dict(sorted(kept))


def clock_of(snapshot: Snapshot, objects: CustomerObjects) -> str | None:
    """The Stripe test clock the object lives on: its own ``test_clock``, else its customer's
    (everything of a clock's customer lives on the clock); None when on none."""
    customer = objects.customer["snapshot"] if objects.customer is not None else None
    for s in (snapshot, customer):
        if s is not None and s.get("test_clock"):
            return str(s.get("test_clock"))
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    objects: CustomerObjects

    @property
    def changed(self) -> bool:
        return self.decision.action == "apply"


def apply(objects: CustomerObjects, incoming: Observation) -> Outcome:
    """Apply one observation to a customer's stored objects."""
    snapshot = incoming["snapshot"]
    if snapshot["object"] == "subscription":
        outcome = _apply(objects, incoming)
        if not outcome.changed:
            return outcome
        # Its items may show prices of kept usage lines to be licensed: those lines bill no usage.
        kept = outcome.objects
        usage = without_licensed(kept.usage, licensed_prices(kept.subscriptions))
        return outcome if usage == kept.usage else Outcome(outcome.decision, replace(kept, usage=usage))
    if snapshot["object"] != "invoice":
        return _apply(objects, incoming)
    # A paid invoice is kept, and a failed payment judged, without its usage lines (kept apart).
    bare = {k: v for k, v in snapshot.items() if k not in ("usage_lines", "finalized_at")}
    outcome = _apply(objects, {**incoming, "snapshot": bare})  # type: ignore[typeddict-item]
    if outcome.decision.action == "refetch":
        return outcome
    # A finalized invoice's usage lines (any status: a join of their own, beside the paid invoices and
    # the failed payments), but those of prices its subscriptions bill as licensed.
    usage = usage_after(
        objects.usage, without_licensed_lines(snapshot, licensed_prices(objects.subscriptions))
    )
    if usage == objects.usage:
        return outcome
    decision = outcome.decision if outcome.changed else Decision("apply", "usage_lines")
    return Outcome(decision, replace(outcome.objects, usage=usage))


def licensed_prices(subscriptions: Mapping[str, Observation]) -> frozenset[str]:
    """The prices the customer's subscriptions bill as licensed. A line of one bills no usage: after
    2025-03-31 an invoice line names its price by id only, and a price's usage type never changes."""
    return frozenset(
        price["id"]
        for observation in subscriptions.values()
        if observation["snapshot"]["object"] == "subscription"
        for item in observation["snapshot"]["items"]
        if (price := item["price"]) is not None and price["id"] and price["usage_type"] == "licensed"
    )


def without_licensed_lines(invoice: InvoiceSnapshot, licensed: frozenset[str]) -> InvoiceSnapshot:
    """The invoice without the usage lines of ``licensed`` prices (none left: no usage lines)."""
    lines = invoice.get("usage_lines")
    if not lines or not licensed:
        return invoice
    kept = [line for line in lines if line["price"] not in licensed]
    if len(kept) == len(lines):
        return invoice
    narrowed: InvoiceSnapshot = {**invoice, "usage_lines": kept}
    if not kept:
        del narrowed["usage_lines"]
    return narrowed


def without_licensed(usage: Usage, licensed: frozenset[str]) -> Usage:
    """``usage`` without the lines of ``licensed`` prices, and the invoices left with none. (A
    subscription seen only after its invoices may have let licensed-only invoices take the place of
    older ones; the newest finalized invoice is kept either way.)"""
    if not licensed:
        return usage
    kept: dict[str, dict[str, UsageInvoice]] = {}
    for subscription, invoices in usage.items():
        entries = {
            invoice_id: UsageInvoice(**{**entry, "lines": lines})
            for invoice_id, entry in invoices.items()
            if (lines := [line for line in entry["lines"] if line["price"] not in licensed])
        }
        if entries:
            kept[subscription] = entries
    return kept


def _apply(objects: CustomerObjects, incoming: Observation) -> Outcome:
    snapshot = incoming["snapshot"]
    if snapshot["object"] == "discount":
        # The event only names what changed; the owner's current state comes from Stripe.
        return Outcome(Decision("refetch", "discount_changed"), objects)
    if snapshot["object"] == "invoice" and snapshot["status"] != "paid":
        return _apply_unpaid_invoice(objects, snapshot, incoming["observed_at"])
    if snapshot["object"] == "customer" and "default_payment_method_object" in snapshot:
        return _apply_with_default_card(objects, incoming)
    if snapshot["object"] == "subscription_schedule":
        snapshot = with_phase_prices(snapshot, objects.known_prices())
        incoming = {**incoming, "snapshot": snapshot}
    decision = decide(objects.current(incoming), incoming)
    if decision.action != "apply":
        return Outcome(decision, objects)
    if incoming["source"] != "fetched" and unexpanded_prices(snapshot):
        # A webhook's schedule names its phases' prices by id: a read expands them (domain.risk needs
        # their amounts), unless they were seen before.
        return Outcome(Decision("refetch", "phase_prices_unexpanded"), objects)
    applied = objects.with_observation(incoming)
    if snapshot["object"] == "invoice" and snapshot["id"] in objects.failed_invoices:
        # Paid: it leaves the failed invoices.
        failed = {k: v for k, v in objects.failed_invoices.items() if k != snapshot["id"]}
        applied = replace(applied, failed_invoices=failed)
    return Outcome(decision, applied)


def _apply_unpaid_invoice(objects: CustomerObjects, invoice: InvoiceSnapshot, observed_at: int) -> Outcome:
    """An observation of an invoice not paid: kept only once a payment of it failed (merge_failed)."""
    if invoice["id"] in objects.invoices:
        return Outcome(Decision("keep", "invoice_paid"), objects)  # a paid invoice stays paid
    seen = failed_invoice_of(invoice, observed_at)
    current = objects.failed_invoices.get(invoice["id"])
    if seen is None and current is None:
        return Outcome(Decision("keep", "invoice_not_paid"), objects)
    if seen is None:
        # No failed attempt in it: an observation from before the first one (Stripe's count only grows).
        return Outcome(Decision("keep", "older"), objects)
    merged = merge_failed(current, seen)
    if merged == current:
        return Outcome(Decision("keep", "duplicate"), objects)
    failed = _bounded({**objects.failed_invoices, invoice["id"]: merged})
    if failed == objects.failed_invoices:
        return Outcome(Decision("keep", "older"), objects)  # older than every one kept
    return Outcome(Decision("apply", "payment_failed"), replace(objects, failed_invoices=failed))


def _apply_with_default_card(objects: CustomerObjects, incoming: Observation) -> Outcome:
    """A customer read with its default payment method expanded (a backfill's list, a read): the
    customer, and the payment method as an observation of its own made at the same time."""
    customer = incoming["snapshot"]
    assert customer["object"] == "customer"
    card = customer["default_payment_method_object"]
    bare = {k: v for k, v in customer.items() if k != "default_payment_method_object"}
    outcome = apply(objects, {**incoming, "snapshot": bare})  # type: ignore[typeddict-item]
    if outcome.decision.action == "refetch":
        return outcome
    source: Source = "fetched" if incoming["source"] == "fetched" else "updated"
    with_card = apply(
        outcome.objects,
        Observation(snapshot=card, observed_at=incoming["observed_at"], source=source, event_id=None),
    )
    if not with_card.changed:
        return outcome  # (a tie of the card with an event: the card's next event settles it)
    decision = outcome.decision if outcome.changed else Decision("apply", "default_payment_method")
    return Outcome(decision, with_card.objects)
