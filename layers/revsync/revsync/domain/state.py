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
from typing import Literal

from revsync.domain.events import Observation
from revsync.domain.snapshots import Discount, Snapshot, discounts_of, is_terminal

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


@dataclass(frozen=True, slots=True)
class CustomerObjects:
    """Everything stored about one Stripe customer of one tenant: the latest observation of each object."""

    customer_id: str
    customer: Observation | None = None
    subscriptions: Mapping[str, Observation] = field(default_factory=dict)
    invoices: Mapping[str, Observation] = field(default_factory=dict)
    # Credit notes and charges, by id: what was given back of the paid invoices (domain.refunds).
    refunds: Mapping[str, Observation] = field(default_factory=dict)

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
        raise ValueError(f"{snapshot['object']} snapshots are not stored")

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
            )
            if o
        ]
        return max(times, default=0)


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
    if snapshot["object"] == "discount":
        # The event only names what changed; the owner's current state comes from Stripe.
        return Outcome(Decision("refetch", "discount_changed"), objects)
    if snapshot["object"] == "invoice" and snapshot["status"] != "paid":
        return Outcome(Decision("keep", "invoice_not_paid"), objects)
    decision = decide(objects.current(incoming), incoming)
    if decision.action != "apply":
        return Outcome(decision, objects)
    return Outcome(decision, objects.with_observation(incoming))
