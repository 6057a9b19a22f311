"""The change feed's events (docs/contracts.md: ``Customer Record Changed`` and ``Customer Risk
Changed`` on the stack's bus), as data.

One ``Customer Record Changed`` per record change the write path makes: what changed, the MRR and
churn before and after, and the movement (revsync.domain.history's rules; None when MRR did not
move). One ``Customer Risk Changed`` when its risk signals changed too: each changed signal before
and after. A record that did not change makes none: duplicates and stale events never reach here.
"""

from __future__ import annotations

from typing import Any

from revsync.domain.history import movement_of
from revsync.domain.record import CustomerRecord
from revsync.domain.risk import NO_RISK

SOURCE = "revsync"
RECORD_CHANGED = "Customer Record Changed"
RISK_CHANGED = "Customer Risk Changed"


def record_change(
    previous: CustomerRecord | None, record: CustomerRecord, observed_at: int, ever_paid: bool
) -> dict[str, Any] | None:
    """The event's ``detail`` for a record going from ``previous`` (None: none yet) to ``record``;
    None if nothing changed. ``ever_paid``: the customer had MRR > 0 at some time before."""
    before: dict[str, Any] = dict(previous) if previous is not None else {}
    changed = sorted(
        name for name, value in record.items() if name != "tenant_id" and before.get(name) != value
    )
    if not changed:
        return None
    mrr_before, mrr_after = int(before.get("mrr") or 0), int(record["mrr"] or 0)
    return {
        "tenant_id": record["tenant_id"],
        "external_id": record["external_id"],
        "stripe_customer_id": record["stripe_customer_id"],
        "observed_at": observed_at,
        "changed": changed,
        "mrr": {"before": mrr_before, "after": mrr_after},
        "movement": movement_of(mrr_before, mrr_after, ever_paid),
        "churned": {"before": bool(before.get("churned")), "after": bool(record["churned"])},
    }


def risk_change(
    previous: CustomerRecord | None, record: CustomerRecord, observed_at: int
) -> dict[str, Any] | None:
    """The ``Customer Risk Changed`` event's ``detail`` for a record going from ``previous`` (None:
    none yet, which had no signal) to ``record``; None if no signal changed."""
    before: dict[str, Any] = dict(previous["risk"] if previous is not None else NO_RISK)
    changed = {
        name: {"before": before[name], "after": after}
        for name, after in record["risk"].items()
        if before[name] != after
    }
    if not changed:
        return None
    return {
        "tenant_id": record["tenant_id"],
        "external_id": record["external_id"],
        "stripe_customer_id": record["stripe_customer_id"],
        "observed_at": observed_at,
        "changed": changed,
    }
