"""Missed events: list Stripe's Events API since a little before the watermark and apply whatever
was not applied, through the one write path (an event applied twice changes nothing).

Runs on a schedule for every connected tenant and on ``POST /tenants/{id}/stripe/reconcile``. Each
run holds a claim (one at a time per tenant), stops at its deadline or when the account's request
budget says wait, and then leaves ``reconciled_through`` where it was, so the next run lists the
same window again (resumable, at the price of re-reading what it already checked: idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from revsync.domain.events import EventError, event_from_dict, observation_of
from revsync.domain.reconcile import EventsState, window
from revsync.domain.snapshots import SnapshotError
from revsync.domain.tenancy import Tenant
from revsync.errors import ApiError, Deferred
from revsync.services.sync import ChangeFeed, Customers, StripeObjects, Tenants, apply_observation
from revsync.services.tenants import checked_tenant_id

# The event types whose objects revsync applies (connection events come to the platform, not here).
RECONCILED_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_succeeded",
    "customer.discount.created",
    "customer.discount.updated",
    "customer.discount.deleted",
)


class EventLister(StripeObjects, Protocol):
    def list_events(
        self, tenant: Tenant, *, created_gte: int, types: tuple[str, ...], starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (newest first) of the account's events."""
        ...


class EventsProgress(Protocol):
    def get(self, tenant_id: str) -> EventsState: ...

    def claim(self, tenant_id: str, now: int, stale_after: int = 900) -> bool: ...

    def finish(
        self, tenant_id: str, now: int, recovered: int, reconciled_through: int | None, backfill_needed: bool
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ReconcilePorts:
    """What a catch-up reads and writes through (the same for the schedule and the route)."""

    tenants: Tenants
    customers: Customers
    stripe: EventLister
    progress: EventsProgress
    clock: Callable[[], float]
    changes: ChangeFeed | None = None


def out_of_time_after(
    remaining_ms: int, margin_seconds: float, monotonic: Callable[[], float] = time.monotonic
) -> Callable[[], bool]:
    """A run's deadline: the function's remaining time less a margin (a run cut short resumes)."""
    deadline = monotonic() + max(1.0, remaining_ms / 1000 - margin_seconds)
    return lambda: monotonic() > deadline


State = Literal["done", "partial", "running", "not_connected"]


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    state: State
    listed_from: int | None = None
    listed: int = 0
    recovered: int = 0
    unreadable: int = 0
    backfill_needed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "from": self.listed_from,
            "listed": self.listed,
            "recovered": self.recovered,
            "unreadable": self.unreadable,
            "backfill_needed": self.backfill_needed,
        }


def reconcile(tenant_id: str, ports: ReconcilePorts, out_of_time: Callable[[], bool]) -> ReconcileReport:
    tenants, progress, stripe, clock = ports.tenants, ports.progress, ports.stripe, ports.clock
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        return ReconcileReport("not_connected")
    started = int(clock())
    if not progress.claim(tenant_id, started):
        return ReconcileReport("running")
    listed = recovered = unreadable = 0
    state = progress.get(tenant_id)
    span = window(state.last_event_at, state.reconciled_through, tenant.connection.connected_at, started)
    complete = False
    try:
        cursor: str | None = None
        while not out_of_time():
            page, more = stripe.list_events(
                tenant, created_gte=span.start, types=RECONCILED_TYPES, starting_after=cursor
            )
            for raw in page:
                listed += 1
                try:
                    observation = observation_of(event_from_dict(raw))
                except (EventError, SnapshotError):
                    unreadable += 1  # its webhook, if it came, was parked with the reason
                    continue
                if observation is None:
                    continue
                result = apply_observation(
                    tenant_id,
                    observation,
                    tenants=tenants,
                    customers=ports.customers,
                    stripe=stripe,
                    clock=clock,
                    changes=ports.changes,
                )
                recovered += result.outcome == "applied"
            if not more or not page:
                complete = True
                break
            cursor = str(page[-1]["id"])
    except Deferred:
        complete = False  # the account's request budget says wait: the next run goes on
    finally:
        # Everything created before this run started was listed (events are listable at once).
        progress.finish(tenant_id, int(clock()), recovered, started if complete else None, span.gap_too_old)
    return ReconcileReport(
        "done" if complete else "partial", span.start, listed, recovered, unreadable, span.gap_too_old
    )


def reconcile_on_request(
    tenant_id: str, ports: ReconcilePorts, out_of_time: Callable[[], bool]
) -> dict[str, Any]:
    """``POST /tenants/{id}/stripe/reconcile``: 202 with what this run did (a run cut short by the
    route's time limit says ``partial``; the schedule goes on from the same window)."""
    report = reconcile(checked_tenant_id(tenant_id), ports, out_of_time)
    if report.state == "not_connected":
        raise ApiError(409, "not_connected", "this tenant has no Stripe connection")
    if report.state == "running":
        raise ApiError(409, "reconcile_running", "a catch-up is already running for this tenant")
    return {"reconcile": report.as_dict()}


def reconcile_all(
    tenant_ids: list[str], ports: ReconcilePorts, out_of_time: Callable[[], bool]
) -> dict[str, Any]:
    """The schedule: every connected tenant in turn, until the function's time runs short."""
    reports: dict[str, Any] = {}
    for tenant_id in tenant_ids:
        if out_of_time():
            break
        reports[tenant_id] = reconcile(tenant_id, ports, out_of_time).as_dict()
    return {"tenants": len(tenant_ids), "reconciled": reports}
