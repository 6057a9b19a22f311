"""When a customer's subscriptions renew (docs/contracts.md, the record's ``next_renewal_at``): read by
the record and by the card-expiry risk signal (revsync.domain.risk)."""

from __future__ import annotations

from collections.abc import Iterable

from revsync.domain.snapshots import InvoiceSnapshot, SubscriptionSnapshot

RENEWING_STATUSES = frozenset({"active", "past_due", "trialing"})


def renews_at(subscription: SubscriptionSnapshot, invoices: Iterable[InvoiceSnapshot]) -> int | None:
    """The later of the current-period end and the newest paid invoice line's period end; None when
    the subscription is set to cancel by then (at period end, or at a ``cancel_at`` before it)."""
    if subscription["status"] not in RENEWING_STATUSES or subscription["cancel_at_period_end"]:
        return None
    ends = [
        line["period_end"]
        for invoice in invoices
        for line in invoice["lines"]
        if line["subscription"] == subscription["id"]
    ]
    if subscription["current_period_end"] is not None:
        ends.append(subscription["current_period_end"])
    renewal = max(ends, default=None)
    cancel_at = subscription["cancel_at"]
    if renewal is not None and cancel_at is not None and cancel_at <= renewal:
        return None
    return renewal
