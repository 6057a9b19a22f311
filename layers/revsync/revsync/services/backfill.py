"""The backfill: import a tenant's whole Stripe history through the one write path.

The state machine (statemachines/backfill.asl.json) calls ``start``, then runs rounds: a Map calls
``import_segment`` once for every walk still going and ``collect_round`` keeps those not done, until
none is left; then ``finish`` (or ``fail``). Every step is bounded and returns its cursor, so a
retried step resumes where the last successful one stopped, and counts come only from steps that
succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import groupby
from typing import Any, Protocol

from revsync.domain.backfill import KINDS, Segment, Totals, collect, list_params, plan, split
from revsync.domain.events import Observation
from revsync.domain.snapshots import (
    Snapshot,
    customer_id_of,
    parse_customer,
    parse_invoice,
    parse_subscription,
)
from revsync.domain.tenancy import Tenant
from revsync.services.sync import ChangeFeed, Customers, StripeObjects, Tenants, apply_observation
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
        self,
        tenant_id: str,
        now: int,
        counts: dict[str, int],
        error: str | None,
        requests: int = 0,
        walks: int = 0,
    ) -> None: ...


def _connected(tenants: Tenants, tenant_id: str, config_version: int = 0) -> Tenant:
    tenant = tenants.get(tenant_id, min_config_version=config_version)
    if tenant is None or not tenant.connection.is_connected:
        raise BackfillError("not_connected", f"tenant {tenant_id!r} has no Stripe connection")
    return tenant


def start(tenant_id: str, *, tenants: Tenants, progress: Progress, walks: int, now: int) -> list[Segment]:
    tenant = _connected(tenants, tenant_id)
    progress.backfill_started(tenant_id, now, "importing")
    return plan(walks, tenant.config_version)


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
    changes: ChangeFeed | None = None,
) -> list[Segment]:
    """Walk up to ``max_pages`` pages of the segment (fewer if ``deadline`` comes).

    Returns the segment with its new cursor, plus the new walks it split into when it was allowed to
    (see ``domain.backfill.split``); the step then ends at once, so they start in the next round.
    """
    # A cached tenant older than the config this run started with (a trait just changed) is refreshed.
    tenant = _connected(tenants, tenant_id, segment["config_version"])
    # A walk planned before a deploy that added fields goes on as one walk.
    segment = Segment(**{"walks": 1, "oldest": None, "span": 0, **segment})
    produced: list[Segment] = []
    imported = 0
    for _ in range(max_pages):
        if segment["done"] or monotonic() >= deadline:
            break
        requested_at = int(clock())  # stamped when asked: see services.sync
        objects, has_more = stripe.list_page(tenant, segment["kind"], list_params(segment), pacer)
        segment["requests"] += 1
        _apply_page(
            tenant_id, segment["kind"], objects, requested_at, tenants, customers, stripe, clock, changes
        )
        imported += len(objects)
        segment["imported"] += len(objects)
        segment["done"] = not has_more
        if objects:
            segment["cursor"] = str(objects[-1]["id"])
            newest, oldest = int(objects[0]["created"]), int(objects[-1]["created"])
            # n objects span n - 1 gaps; a page of them moves the walk on by about n gaps.
            page_span = (newest - oldest) * len(objects) // max(1, len(objects) - 1)
            segment, *produced = split(segment, oldest, page_span)
            if produced:
                break
    if imported:
        progress.backfill_progress(tenant_id, segment["kind"], imported)
    return [segment, *produced]


def _apply_page(
    tenant_id: str,
    kind: str,
    objects: list[dict[str, Any]],
    requested_at: int,
    tenants: Tenants,
    customers: Customers,
    stripe: Lister,
    clock: Callable[[], float],
    changes: ChangeFeed | None,
) -> None:
    parse = _PARSERS[kind]
    snapshots = [parse(raw) for raw in objects]
    # A subscription's expanded customer matters only when it is deleted (the customers list has the rest).
    snapshots += [
        parse_customer(raw["customer"])
        for raw in objects
        if isinstance(raw.get("customer"), dict) and raw["customer"].get("deleted")
    ]
    observations = [
        Observation(snapshot=snapshot, observed_at=requested_at, source="fetched", event_id=None)
        for snapshot in snapshots
    ]
    # One customer's objects together: they share a partition (and a version lock).
    observations.sort(key=lambda o: customer_id_of(o["snapshot"]))
    for _, group in groupby(observations, key=lambda o: customer_id_of(o["snapshot"])):
        for observation in group:
            # A backfill's subscriptions enter the MRR history at their start (imported).
            apply_observation(
                tenant_id,
                observation,
                tenants=tenants,
                customers=customers,
                stripe=stripe,
                clock=clock,
                changes=changes,
                imported=True,
            )


def collect_round(tenant_id: str, totals: Totals, rounds: list[list[Segment]], walks: int) -> dict[str, Any]:
    totals, active = collect(totals, rounds, walks)
    return {"tenant_id": tenant_id, "totals": totals, "segments": active, "active": len(active)}


def finish(tenant_id: str, totals: Totals, *, progress: Progress, now: int) -> dict[str, Any]:
    counts: dict[str, int] = {kind: totals[kind] for kind in KINDS}
    progress.backfill_finished(
        tenant_id, now, counts, None, requests=totals["requests"], walks=totals["walks"]
    )
    return {
        "tenant_id": tenant_id,
        "counts": counts,
        "requests": totals["requests"],
        "walks": totals["walks"],
    }


def fail(tenant_id: str, error: Any, *, progress: Progress, now: int) -> None:
    """Record why the execution failed (Step Functions passes ``{"Error", "Cause"}``)."""
    if isinstance(error, dict):
        message = f"{error.get('Error', 'Error')}: {str(error.get('Cause', ''))[:500]}"
    else:
        message = str(error)[:500]
    progress.backfill_finished(tenant_id, now, {}, message)
