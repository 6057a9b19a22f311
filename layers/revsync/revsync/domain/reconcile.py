"""Catching up on missed webhooks from Stripe's Events API: which window to list, as pure rules.

Stripe keeps events listable for 30 days. Each connected account has a watermark (the newest event
time revsync applied, advanced coarsely by the worker: what the status shows) and a
reconciled-through time (every event created before it has been checked against the Events API). A
run lists from a margin before the reconciled-through time, so an event lost between deliveries that
did arrive is still found (the watermark alone would skip it: later deliveries move it past the
loss); before any run, from the connection's start (a connection revoked and restored keeps its
reconciled-through time, so the revoked period is listed). A window that would start before what
Stripe keeps is cut to 30 days and reported: only a backfill heals that gap.

A window is listed newest first, page by page; a run that runs out of time keeps the window and the
cursor where it stopped (``PendingWindow``), and the next run goes on from there, so a window ends
only when it has been listed to its end, however many runs that takes. Every connected tenant gets
a catch-up job each period (``CatchUpJob``), least recently reconciled first, and a run cut short
queues its own continuation.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple

from revsync.errors import InvalidInput

EVENTS_RETENTION_SECONDS = 30 * 86_400
# How far before the watermark a run starts: covers the watermark's coarseness (WATERMARK_STEP) and
# events created while the previous run was listing.
MARGIN_SECONDS = 15 * 60
# A worker writes a tenant's watermark at most once in this many seconds (not one write per event).
WATERMARK_STEP_SECONDS = 5 * 60


class PendingWindow(NamedTuple):
    """A window a run began and did not list to its end: where the next run goes on."""

    start: int  # created[gte] of the window
    through: int  # once listed to the end, every event created before this was checked
    cursor: str | None  # the last event listed (``starting_after`` of the next page); None: from the top
    listed: int = 0  # events listed in this window so far
    recovered: int = 0  # of which applied (their webhook never came, or not yet)
    gap_too_old: bool = False  # the window was cut to what Stripe keeps: a backfill is needed
    continuation: str | None = None  # the continuation job queued for it (its token)
    continued_at: int | None = None  # when that job was queued


class EventsState(NamedTuple):
    last_event_at: int | None = None  # newest event time applied (coarse: see WATERMARK_STEP_SECONDS)
    reconciled_through: int | None = None  # every event created before it was checked
    last_reconciled_at: int | None = None
    recovered: int = 0  # events applied by reconciliation (their webhook never came, or not yet)
    running_since: int = 0  # a reconcile holds the claim since then (0: none)
    backfill_needed: bool = False
    pending: PendingWindow | None = None  # a window begun and not yet listed to its end


class Window(NamedTuple):
    start: int  # list events created at or after this
    gap_too_old: bool  # part of the gap is older than the Events API keeps: a backfill is needed


def window(
    last_event_at: int | None, reconciled_through: int | None, connected_at: int | None, now: int
) -> Window:
    """The ``created[gte]`` of the next run."""
    base = reconciled_through or connected_at or last_event_at or now
    return _kept(base - MARGIN_SECONDS, now)


def _kept(start: int, now: int) -> Window:
    oldest = now - EVENTS_RETENTION_SECONDS
    if start < oldest:
        return Window(oldest, True)
    return Window(start, False)


class RunEnd(NamedTuple):
    """What a run leaves: it releases the claim with these."""

    now: int
    recovered: int  # events this run applied
    reconciled_through: int | None  # the window's ``through`` when it was listed to its end
    backfill_needed: bool
    pending: PendingWindow | None  # the window to go on with (None: listed to its end)


class RunPlan(NamedTuple):
    """What a run lists: from ``start`` (newest first, after ``cursor`` if it goes on from one) and,
    once at the end, everything created before ``through`` has been checked."""

    start: int
    through: int
    cursor: str | None
    gap_too_old: bool
    resumed: bool
    listed: int  # already listed in this window by earlier runs
    recovered: int


def plan_run(state: EventsState, connected_at: int | None, now: int) -> RunPlan:
    """Go on with the pending window, else begin the next one (ending at this run's start)."""
    pending = state.pending
    if pending is None:
        span = window(state.last_event_at, state.reconciled_through, connected_at, now)
        return RunPlan(span.start, now, None, span.gap_too_old, False, 0, 0)
    # What Stripe no longer keeps cannot be listed: the window's start moves up to what it keeps
    # (a backfill heals the rest), and a cursor whose event went with it is refused: the run then
    # lists the window again from the top (``CursorRejected``).
    span = _kept(pending.start, now)
    return RunPlan(
        span.start,
        pending.through,
        pending.cursor,
        pending.gap_too_old or span.gap_too_old,
        True,
        pending.listed,
        pending.recovered,
    )


# --- the per-tenant jobs the schedule queues ------------------------------------------------------

JobReason = Literal["schedule", "request", "continue"]


class CatchUpJob(NamedTuple):
    """One tenant's catch-up, as queued: by the schedule, an operator's request, or a run that ran
    out of time (``continue``, naming the pending window's continuation token)."""

    tenant_id: str
    reason: JobReason
    queued_at: int
    token: str | None = None

    def deduplication_id(self, period_seconds: int) -> str:
        """The schedule queues a tenant once per period (a retried schedule queues nothing twice)."""
        if self.reason == "schedule":
            return f"{self.tenant_id}:schedule:{self.queued_at // period_seconds}"
        return f"{self.tenant_id}:{self.reason}:{self.token or self.queued_at}"


class RecomputeJob(NamedTuple):
    """A policy change's recompute of a tenant's customers (revsync.services.policy), from ``cursor``
    (None: the first page): queued by the policy route, by a run that ran out of time for the pages
    left, and by the schedule for a recompute whose jobs were lost. On the catch-up queue, in the
    tenant's message group: never at the same time as the tenant's catch-up. ``config_version``: the
    change's (a newer change's recompute replaces it); ``token``: the job's own (its sender's retry
    is queued once; two jobs of one page are two, and the recompute's progress lets one run)."""

    tenant_id: str
    config_version: int
    queued_at: int
    cursor: str | None
    token: str
    reason: Literal["recompute"] = "recompute"

    def deduplication_id(self, period_seconds: int) -> str:
        return f"{self.tenant_id}:recompute:{self.token}"


QueuedJob = CatchUpJob | RecomputeJob


def queued_job(body: str) -> QueuedJob:
    """A job's body as the catch-up queue holds it (``infra.catch_ups.job_body``); InvalidInput if it
    is none of them."""
    document = json.loads(body)
    if isinstance(document, dict) and document.get("reason") == "recompute":
        cursor = document.get("cursor")
        return RecomputeJob(
            tenant_id=str(document["tenant_id"]),
            config_version=int(document["config_version"]),
            queued_at=int(document["queued_at"]),
            cursor=None if cursor is None else str(cursor),
            token=str(document["token"]),
        )
    return _catch_up(document)


def catch_up_job(body: str) -> CatchUpJob:
    """A queued catch-up job's body (``infra.catch_ups.job_body``); InvalidInput if it is not one."""
    return _catch_up(json.loads(body))


def _catch_up(document: Any) -> CatchUpJob:
    if not isinstance(document, dict) or document.get("reason") not in ("schedule", "request", "continue"):
        raise InvalidInput("not a catch-up job")
    token = document.get("token")
    return CatchUpJob(
        tenant_id=str(document["tenant_id"]),
        reason=document["reason"],
        queued_at=int(document["queued_at"]),
        token=None if token is None else str(token),
    )


def continuation_live(state: EventsState, now: int, stale_after: int) -> bool:
    """Whether a continuation is queued for the pending window and recent enough to be trusted to
    run (one that went to the dead-letter queue leaves a stale token: the next job takes over)."""
    pending = state.pending
    return (
        pending is not None
        and pending.continuation is not None
        and pending.continued_at is not None
        and now - pending.continued_at < stale_after
    )


def job_runs(job: CatchUpJob, state: EventsState, now: int, stale_after: int) -> bool:
    """Whether a job runs: a continuation runs if it is the pending window's; any other job runs
    unless a live continuation already covers the tenant (so a backlog is one chain of runs, not
    one more per period)."""
    if job.reason == "continue" and state.pending is not None and job.token == state.pending.continuation:
        return True
    return not continuation_live(state, now, stale_after)


def catch_up_order(last_reconciled: dict[str, int | None]) -> list[str]:
    """Tenants least recently reconciled first (never reconciled before any), then by id."""
    return sorted(last_reconciled, key=lambda tenant_id: (last_reconciled[tenant_id] or 0, tenant_id))


def watermark_due(written: int | None, written_at: float | None, event_created: int, now: float) -> bool:
    """Whether a worker writes a newer watermark now: it moved, and the last write is a step old."""
    if written is not None and event_created <= written:
        return False
    return written_at is None or now - written_at >= WATERMARK_STEP_SECONDS
