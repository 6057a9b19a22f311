"""Build a customer's stored objects from raw Stripe objects and derive its record."""

from __future__ import annotations

from typing import Any

from revsync.domain.events import Observation, Source
from revsync.domain.record import CustomerRecord, derive_record
from revsync.domain.snapshots import parse_customer, parse_invoice, parse_subscription
from revsync.domain.state import CustomerObjects

AS_OF = 1_700_000_000


def observed(snapshot: Any, at: int = AS_OF, source: Source = "updated") -> Observation:
    return Observation(snapshot=snapshot, observed_at=at, source=source, event_id=None)


def record_for(
    subscriptions: list[dict[str, Any]] = (),  # type: ignore[assignment]
    customer: dict[str, Any] | None = None,
    invoices: list[dict[str, Any]] = (),  # type: ignore[assignment]
    trait: str | None = "id",
    deleted_at: int | None = None,
    as_of: int = AS_OF,
) -> CustomerRecord:
    customer_id = customer["id"] if customer else (subscriptions[0]["customer"] if subscriptions else "cus_1")
    customer_obs = None
    if customer is not None:
        source: Source = "deleted" if deleted_at else "updated"
        customer_obs = observed(
            parse_customer(customer, deleted=deleted_at is not None), deleted_at or as_of, source
        )
    objects = CustomerObjects(
        customer_id=customer_id,
        customer=customer_obs,
        subscriptions={s["id"]: observed(parse_subscription(s), as_of) for s in subscriptions},
        invoices={i["id"]: observed(parse_invoice(i), as_of) for i in invoices},
    )
    return derive_record("acme", objects, trait)


def mrr_of(
    subscriptions: list[dict[str, Any]], customer: dict[str, Any] | None = None, as_of: int = AS_OF
) -> int:
    return record_for(subscriptions, customer, as_of=as_of)["mrr"]
