"""Catching up on missed webhooks from Stripe's Events API: which window to list, as pure rules.

Stripe keeps events listable for 30 days. Each connected account has a watermark (the newest event
time revsync applied, advanced coarsely by the worker: what the status shows) and a
reconciled-through time (every event created before it has been checked against the Events API). A
run lists from a margin before the reconciled-through time, so an event lost between deliveries that
did arrive is still found (the watermark alone would skip it: later deliveries move it past the
loss); before any run, from the connection's start (a connection revoked and restored keeps its
reconciled-through time, so the revoked period is listed). A window that would start before what
Stripe keeps is cut to 30 days and reported: only a backfill heals that gap.
"""

from __future__ import annotations

from typing import NamedTuple

EVENTS_RETENTION_SECONDS = 30 * 86_400
# How far before the watermark a run starts: covers the watermark's coarseness (WATERMARK_STEP) and
# events created while the previous run was listing.
MARGIN_SECONDS = 15 * 60
# A worker writes a tenant's watermark at most once in this many seconds (not one write per event).
WATERMARK_STEP_SECONDS = 5 * 60


class EventsState(NamedTuple):
    last_event_at: int | None = None  # newest event time applied (coarse: see WATERMARK_STEP_SECONDS)
    reconciled_through: int | None = None  # every event created before it was checked
    last_reconciled_at: int | None = None
    recovered: int = 0  # events applied by reconciliation (their webhook never came, or not yet)
    running_since: int = 0  # a reconcile holds the claim since then (0: none)
    backfill_needed: bool = False


class Window(NamedTuple):
    start: int  # list events created at or after this
    gap_too_old: bool  # part of the gap is older than the Events API keeps: a backfill is needed


def window(
    last_event_at: int | None, reconciled_through: int | None, connected_at: int | None, now: int
) -> Window:
    """The ``created[gte]`` of the next run."""
    base = reconciled_through or connected_at or last_event_at or now
    start = base - MARGIN_SECONDS
    oldest = now - EVENTS_RETENTION_SECONDS
    if start < oldest:
        return Window(oldest, True)
    return Window(start, False)


def watermark_due(written: int | None, written_at: float | None, event_created: int, now: float) -> bool:
    """Whether a worker writes a newer watermark now: it moved, and the last write is a step old."""
    if written is not None and event_created <= written:
        return False
    return written_at is None or now - written_at >= WATERMARK_STEP_SECONDS
