"""Missed events: list Stripe's Events API since a little before the watermark and apply whatever
was not applied, through the one write path (an event applied twice changes nothing).

Every connected tenant gets a catch-up job each period (``queue_catch_ups``, the schedule; the
on-demand route queues the same job: ``request_catch_up``), least recently reconciled first, and a
consumer runs one tenant's job per invocation (``run_job``): one tenant's backlog or failure never
delays another's. A run lists its window newest first, page by page, saving how far it got after
each page; one that runs out of time keeps the window and its cursor and queues its own
continuation, so a window ends only when it has been listed to its end, over as many runs as that
takes. A run stopped by the account's request budget keeps its place the same way and goes on at
the next period.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from revsync.domain.events import EventError, event_from_dict, observation_of
from revsync.domain.reconcile import (
    CatchUpJob,
    EventsState,
    PendingWindow,
    QueuedJob,
    RunEnd,
    catch_up_order,
    continuation_live,
    job_runs,
    plan_run,
)
from revsync.domain.snapshots import SnapshotError
from revsync.domain.tenancy import Tenant, validate_tenant_id
from revsync.errors import Conflict, CursorRejected, Deferred
from revsync.services.sync import ChangeFeed, Customers, StripeObjects, Tenants, apply_observation

# The event types a catch-up lists: Stripe takes at most 20 in ``types[]`` (MAX_LISTED_TYPES), so the
# handled types whose change another listed type also carries, or that change nothing revsync keeps,
# are left to their webhooks (connection events come to the platform, not here):
# ``invoice.payment_succeeded`` (the paid invoice ``invoice.paid`` carries), the trial's notice
# ``customer.subscription.trial_will_end``, ``customer.discount.*`` (the customer's or subscription's
# own ``.updated`` carries the discount), ``credit_note.updated`` (memo and metadata), ``invoice.updated``
# (a failed invoice's retries: the next ``invoice.payment_failed`` carries its count),
# ``invoice.payment_action_required`` (its subscription's ``past_due`` carries the dunning; the invoice's
# attempt is kept when its webhook comes or a backfill lists it), ``invoice.finalized`` (its usage
# lines come again with the invoice's payment, failed payment, voiding or write-off, all listed: an
# automatically charged invoice is attempted about an hour after it is finalized; one sent to be paid
# later counts its usage from then, or from the next backfill, if its webhook was lost),
# ``subscription_schedule.released|canceled|completed|aborted`` (its subscription's update or end
# carries it: released, the subscription no longer names it; canceled or aborted, it ended; completed,
# its last phase began) and ``payment_method.updated`` (a card's expiry edited through the API, rare:
# the card networks' updates are ``automatically_updated``, listed; a detached card is listed too, as
# Stripe leaves the customer's default naming it).
MAX_LISTED_TYPES = 20
RECONCILED_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "credit_note.created",
    "credit_note.voided",
    "charge.refunded",
    "subscription_schedule.created",
    "subscription_schedule.updated",
    "payment_method.attached",
    "payment_method.automatically_updated",
    "payment_method.detached",
)


# A claim, or a queued continuation, older than this belongs to a run that died (the consumer's time
# limit, 120 s, is well inside it).
CLAIM_STALE_SECONDS = 900


class EventLister(StripeObjects, Protocol):
    def list_events(
        self, tenant: Tenant, *, created_gte: int, types: tuple[str, ...], starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (newest first) of the account's events; ``CursorRejected`` when Stripe no longer
        has the event ``starting_after`` names."""
        ...


class EventsProgress(Protocol):
    def get(self, tenant_id: str) -> EventsState: ...

    def claim(self, tenant_id: str, now: int, stale_after: int) -> EventsState | None:
        """Start a run unless one holds the claim (one older than ``stale_after`` counts as dead);
        the tenant's progress as the claim found it, or None when another run holds it."""
        ...

    def checkpoint(self, tenant_id: str, pending: PendingWindow) -> None:
        """How far the running window got (a run that dies goes on from here)."""
        ...

    def release(self, tenant_id: str) -> None:
        """Let go of a claim that ran nothing."""
        ...

    def finish(self, tenant_id: str, end: RunEnd) -> None:
        """Release the claim with what the run did."""
        ...


class CatchUpQueue(Protocol):
    def send(self, jobs: Sequence[QueuedJob]) -> None:
        """Queue jobs (one message group per tenant: a tenant's jobs run one at a time)."""
        ...


class CatchUpCandidates(Protocol):
    def last_reconciled(self) -> dict[str, int | None]:
        """Every tenant with a live Stripe connection, and when it was last reconciled."""
        ...


@dataclass(frozen=True, slots=True)
class ReconcilePorts:
    """What a catch-up reads and writes through."""

    tenants: Tenants
    customers: Customers
    stripe: EventLister
    progress: EventsProgress
    clock: Callable[[], float]
    changes: ChangeFeed | None = None
    stale_after: int = CLAIM_STALE_SECONDS


def out_of_time_after(
    remaining_ms: int, margin_seconds: float, monotonic: Callable[[], float] = time.monotonic
) -> Callable[[], bool]:
    """A run's deadline: the function's remaining time less a margin (a run cut short resumes)."""
    deadline = monotonic() + max(1.0, remaining_ms / 1000 - margin_seconds)
    return lambda: monotonic() > deadline


State = Literal["done", "partial", "running", "not_connected", "skipped"]


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    state: State
    listed_from: int | None = None
    listed: int = 0  # in this run
    recovered: int = 0  # in this run
    unreadable: int = 0
    backfill_needed: bool = False
    resumed: bool = False  # went on with a window an earlier run began
    window_listed: int = 0  # in the whole window so far
    out_of_time: bool = False  # partial because its time ran out (not because Stripe said wait)

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "from": self.listed_from,
            "listed": self.listed,
            "recovered": self.recovered,
            "unreadable": self.unreadable,
            "backfill_needed": self.backfill_needed,
            "resumed": self.resumed,
            "window_listed": self.window_listed,
        }


class TenantOfTheRun:
    """The tenant as a run read it at its start: one read per run, not one per event or customer; a
    newer config asked for (a customer's state written under one since) is read again."""

    def __init__(self, tenants: Tenants, tenant: Tenant) -> None:
        self._tenants, self._tenant = tenants, tenant

    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None:
        if tenant_id != self._tenant.tenant_id:
            return None
        if self._tenant.config_version >= min_config_version:
            return self._tenant
        return self._tenants.get(tenant_id, min_config_version)


@dataclass(slots=True)
class _Listing:
    """Where a run is in its window, and what it found so far."""

    start: int
    through: int
    cursor: str | None
    window_listed: int
    window_recovered: int
    gap_too_old: bool
    listed: int = 0
    recovered: int = 0
    unreadable: int = 0

    def pending(self, continuation: str | None = None, continued_at: int | None = None) -> PendingWindow:
        return PendingWindow(
            self.start,
            self.through,
            self.cursor,
            self.window_listed,
            self.window_recovered,
            self.gap_too_old,
            continuation,
            continued_at,
        )


def _apply_page(tenant: Tenant, page: list[dict[str, Any]], ports: ReconcilePorts, at: _Listing) -> None:
    for raw in page:
        at.listed += 1
        at.window_listed += 1
        try:
            observation = observation_of(event_from_dict(raw))
        except (EventError, SnapshotError):
            at.unreadable += 1  # its webhook, if it came, was parked with the reason
            continue
        if observation is None:
            continue
        result = apply_observation(
            tenant.tenant_id,
            observation,
            tenants=TenantOfTheRun(ports.tenants, tenant),
            customers=ports.customers,
            stripe=ports.stripe,
            clock=ports.clock,
            changes=ports.changes,
            repair_record=False,
        )
        if result.outcome == "applied":
            at.recovered += 1
            at.window_recovered += 1


def reconcile(
    tenant_id: str,
    ports: ReconcilePorts,
    out_of_time: Callable[[], bool],
    job: CatchUpJob | None = None,
    continuation: str | None = None,
) -> ReconcileReport:
    """One run for one tenant: go on with its pending window, or list the next one. ``job``: the
    queued job it runs (skipped when a live continuation covers it); ``continuation``: the token of
    the job that will go on if this run runs out of time (the pending window remembers it).

    A run reads the tenant once and stores no record repair: an event it finds already applied
    costs the customer's one state Query."""
    progress, clock = ports.progress, ports.clock
    tenant = ports.tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        return ReconcileReport("not_connected")
    started = int(clock())
    state = progress.claim(tenant_id, started, ports.stale_after)
    if state is None:
        return ReconcileReport("running")
    if job is not None and not job_runs(job, state, started, ports.stale_after):
        progress.release(tenant_id)
        return ReconcileReport("skipped")
    plan = plan_run(state, tenant.connection.connected_at, started)
    at = _Listing(plan.start, plan.through, plan.cursor, plan.listed, plan.recovered, plan.gap_too_old)
    complete = timed_out = False
    try:
        while not (timed_out := out_of_time()):
            try:
                page, more = ports.stripe.list_events(
                    tenant, created_gte=at.start, types=RECONCILED_TYPES, starting_after=at.cursor
                )
            except CursorRejected:
                # List the window again from the top: that covers everything created up to now.
                at.cursor, at.through, at.window_listed, at.window_recovered = None, int(clock()), 0, 0
                continue
            _apply_page(tenant, page, ports, at)
            if not more or not page:
                complete = True
                break
            at.cursor = str(page[-1]["id"])
            progress.checkpoint(tenant_id, at.pending())
    except Deferred:
        complete = False  # the account's request budget says wait: the next period goes on
    finally:
        now = int(clock())
        pending = None
        if not complete:
            queued = continuation if timed_out else None
            pending = at.pending(queued, now if queued else None)
        through = at.through if complete else None
        progress.finish(tenant_id, RunEnd(now, at.recovered, through, at.gap_too_old, pending))
    return ReconcileReport(
        "done" if complete else "partial",
        at.start,
        at.listed,
        at.recovered,
        at.unreadable,
        at.gap_too_old,
        plan.resumed,
        at.window_listed,
        timed_out,
    )


def run_job(
    job: CatchUpJob, ports: ReconcilePorts, queue: CatchUpQueue, out_of_time: Callable[[], bool]
) -> ReconcileReport:
    """The consumer's part: one queued job. A run cut short by its time queues its continuation
    (with a fresh token the pending window remembers, so one chain of runs serves a backlog)."""
    token = secrets.token_hex(8)
    report = reconcile(job.tenant_id, ports, out_of_time, job=job, continuation=token)
    if report.state == "partial" and report.out_of_time:
        # After the pending window names it: a send that fails leaves a token no job carries, and
        # the schedule takes over once it is stale.
        queue.send([CatchUpJob(job.tenant_id, "continue", int(ports.clock()), token)])
    return report


def queue_catch_ups(candidates: CatchUpCandidates, queue: CatchUpQueue, now: int) -> dict[str, Any]:
    """The schedule: one job per connected tenant, least recently reconciled first."""
    order = catch_up_order(candidates.last_reconciled())
    jobs = [CatchUpJob(tenant_id, "schedule", now) for tenant_id in order]
    queue.send(jobs)
    return {"queued": len(jobs)}


def request_catch_up(
    tenant_id: str,
    *,
    tenants: Tenants,
    progress: EventsProgress,
    queue: CatchUpQueue,
    now: int,
    stale_after: int = CLAIM_STALE_SECONDS,
) -> dict[str, Any]:
    """``POST /tenants/{id}/stripe/reconcile``: the job queued (the consumer runs it as it runs the
    schedule's); a ``Conflict`` while a run holds the claim or a continuation is on its way."""
    tenant_id = validate_tenant_id(tenant_id)
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise Conflict("this tenant has no Stripe connection", "not_connected")
    state = progress.get(tenant_id)
    running = state.running_since and now - state.running_since < stale_after
    if running or continuation_live(state, now, stale_after):
        raise Conflict("a catch-up is already running for this tenant", "reconcile_running")
    # Its own deduplication id: a request a moment after another one's job ran is a job of its own.
    queue.send([CatchUpJob(tenant_id, "request", now, secrets.token_hex(8))])
    return {"reconcile": {"state": "queued", "queued_at": now}}
