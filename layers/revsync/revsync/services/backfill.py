"""The backfill: import a tenant's whole Stripe history through the one write path.

The state machine (statemachines/backfill.asl.json) calls ``start``, then ``import_segment`` for each
segment in a Map until it is done, then ``finish`` (or ``fail``). Every step is bounded and returns
its cursor, so a retried step resumes where the last successful one stopped, and counts come only
from steps that succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import groupby
from typing import Any, Protocol

from revsync.domain.backfill import Segment, list_params, plan, totals
from revsync.domain.events import Observation
from revsync.domain.snapshots import (
    Snapshot,
    customer_id_of,
    parse_customer,
    parse_invoice,
    parse_subscription,
)
from revsync.domain.tenancy import Tenant
from revsync.services.sync import Customers, StripeObjects, Tenants, apply_observation
from revsync.stripe_api.pacing import Pacer

_PARSERS: dict[str, Callable[[dict[str, Any]], Snapshot]] = {
    "customers": parse_customer,
    "subscriptions": parse_subscription,
    "invoices": parse_invoice,
}


class BackfillError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Lister(StripeObjects, Protocol):
    def list_page(
        self, tenant: Tenant, kind: str, params: dict[str, Any], pacer: Pacer
    ) -> tuple[list[dict[str, Any]], bool]: ...


class Progress(Protocol):
    def backfill_started(self, tenant_id: str, now: int, stage: str) -> None: ...

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None: ...

    def backfill_finished(
        self, tenant_id: str, now: int, counts: dict[str, int], error: str | None
    ) -> None: ...


def _connected(tenants: Tenants, tenant_id: str) -> Tenant:
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise BackfillError("not_connected", f"tenant {tenant_id!r} has no Stripe connection")
    return tenant


def start(tenant_id: str, *, tenants: Tenants, progress: Progress, windows: int, now: int) -> list[Segment]:
    _connected(tenants, tenant_id)
    progress.backfill_started(tenant_id, now, "importing")
    return plan(now, windows)


def import_segment(
    tenant_id: str,
    segment: Segment,
    *,
    tenants: Tenants,
    customers: Customers,
    stripe: Lister,
    progress: Progress,
    pacer: Pacer,
    max_pages: int,
    deadline: float,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Segment:
    """Walk up to ``max_pages`` pages of the segment (less if ``deadline`` comes); return its new cursor."""
    tenant = _connected(tenants, tenant_id)
    segment = Segment(**segment)
    imported = 0
    for _ in range(max_pages):
        if segment["done"] or monotonic() >= deadline:
            break
        requested_at = int(clock())  # stamped when asked: see services.sync
        objects, has_more = stripe.list_page(tenant, segment["kind"], list_params(segment), pacer)
        segment["requests"] += 1
        parse = _PARSERS[segment["kind"]]
        snapshots = [parse(raw) for raw in objects]
        snapshots += [
            parse_customer(raw["customer"]) for raw in objects if isinstance(raw.get("customer"), dict)
        ]
        observations = [
            Observation(snapshot=snapshot, observed_at=requested_at, source="fetched", event_id=None)
            for snapshot in snapshots
        ]
        # One customer's objects together: they share a partition (and a version lock).
        observations.sort(key=lambda o: customer_id_of(o["snapshot"]))
        for _, group in groupby(observations, key=lambda o: customer_id_of(o["snapshot"])):
            for observation in group:
                apply_observation(
                    tenant_id, observation, tenants=tenants, customers=customers, stripe=stripe, clock=clock
                )
        imported += len(objects)
        if objects:
            segment["cursor"] = str(objects[-1]["id"])
        segment["done"] = not has_more
    segment["imported"] += imported
    if imported:
        progress.backfill_progress(tenant_id, segment["kind"], imported)
    return segment


def finish(tenant_id: str, segments: list[Segment], *, progress: Progress, now: int) -> dict[str, Any]:
    counts = totals(segments)
    progress.backfill_finished(tenant_id, now, counts, None)
    return {"tenant_id": tenant_id, "counts": counts, "requests": sum(s["requests"] for s in segments)}


def fail(tenant_id: str, error: Any, *, progress: Progress, now: int) -> None:
    """Record why the execution failed (Step Functions passes ``{"Error", "Cause"}``)."""
    if isinstance(error, dict):
        message = f"{error.get('Error', 'Error')}: {str(error.get('Cause', ''))[:500]}"
    else:
        message = str(error)[:500]
    progress.backfill_finished(tenant_id, now, {}, message)
