"""The backfill: import a tenant's whole Stripe history through the one write path.

The state machine (statemachines/backfill.asl.json) calls ``start``, then runs rounds: a Map calls
``import_segment`` once for every walk still going and ``collect_round`` keeps those not done, until
none is left; then ``finish`` (or ``fail``). Every step is bounded and returns its cursor, so a
retried step resumes where the last successful one stopped, and counts come only from steps that
succeeded.

The run (its walks' cursors, totals and allowance) is kept after every round (``Runs``): before a
round that would take the execution past its history budget the run continues in a new execution
(``continue_run``), and a run started again after a failure resumes from the last kept round.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from itertools import groupby
from typing import Any, Protocol

from revsync.domain.backfill import (
    EARLIEST,
    HISTORY_BUDGET,
    KINDS,
    START_EVENTS,
    Allowance,
    Run,
    Segment,
    Totals,
    allowance,
    collect,
    list_params,
    new_totals,
    page_seconds,
    plan,
    round_events,
    split,
)
from revsync.domain.events import Observation
from revsync.domain.ratelimits import list_endpoint
from revsync.domain.snapshots import (
    Snapshot,
    customer_id_of,
    managing_schedule,
    parse_charge,
    parse_credit_note,
    parse_customer,
    parse_invoice,
    parse_subscription,
    unexpanded_prices,
)
from revsync.domain.tenancy import BackfillOutcome, Tenant
from revsync.errors import Conflict
from revsync.services.sync import ChangeFeed, Customers, StripeObjects, Tenants, apply_observation
from revsync.stripe_api.pacing import Pacer


def _refunded_charge(raw: dict[str, Any]) -> Snapshot | None:
    """A refund's charge (expanded by the list: ``domain.backfill.list_params``)."""
    charge = raw.get("charge")
    return parse_charge(charge) if isinstance(charge, dict) else None


# A parser's None: nothing of revsync's (a refund of a charge of no customer).
_PARSERS: dict[str, Callable[[dict[str, Any]], Snapshot | None]] = {
    "customers": parse_customer,
    "subscriptions": parse_subscription,
    "invoices": parse_invoice,
    "credit_notes": parse_credit_note,
    "refunds": _refunded_charge,
}
LIST_ENDPOINTS: dict[str, str] = {kind: list_endpoint(kind) for kind in KINDS}


class BackfillError(Conflict):
    """The tenant's state does not allow the backfill (no connection): the execution fails saying so."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


class Lister(StripeObjects, Protocol):
    def list_page(
        self, tenant: Tenant, kind: str, params: dict[str, Any], pacer: Pacer
    ) -> tuple[list[dict[str, Any]], bool]: ...


class AccountReader(Protocol):
    def account_created(self, tenant: Tenant) -> int | None:
        """The account's ``created`` (``GET /v1/account``, one budgeted read); None if Stripe does
        not say (some account types) or the key may not read the account."""
        ...


class Progress(Protocol):
    def backfill_started(
        self, tenant_id: str, now: int, stage: str, counts: dict[str, int] | None = None
    ) -> None: ...

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None: ...

    def set_execution(self, tenant_id: str, execution: str) -> None: ...

    def fail_if_running(self, tenant_id: str, execution: str, now: int, error: str) -> bool: ...

    def backfill_finished(self, tenant_id: str, now: int, outcome: BackfillOutcome) -> None: ...


class Runs(Protocol):
    """The run kept after each round (cursors and totals), until it finishes."""

    def load(self, tenant_id: str) -> tuple[Run, list[Segment]] | None: ...

    def save(self, tenant_id: str, run: Run, segments: list[Segment]) -> None: ...

    def clear(self, tenant_id: str) -> None: ...


class Executions(Protocol):
    def start(self, state_machine: str, name: str, tenant_id: str) -> str: ...


class Limits(Protocol):
    """The account's limits as its budget spaces requests: (global, {endpoint: rate})."""

    def __call__(self, tenant: Tenant, endpoints: list[str], /) -> tuple[float, dict[str, float]]: ...


def _connected(tenants: Tenants, tenant_id: str, config_version: int = 0) -> Tenant:
    tenant = tenants.get(tenant_id, min_config_version=config_version)
    if tenant is None or not tenant.connection.is_connected:
        raise BackfillError("not_connected", f"tenant {tenant_id!r} has no Stripe connection")
    return tenant


def _allowance(tenant: Tenant, limits: Limits, seconds: float, max_walks: int) -> Allowance:
    global_rate, rates = limits(tenant, list(LIST_ENDPOINTS.values()))
    by_kind: dict[str, float] = {kind: rates[endpoint] for kind, endpoint in LIST_ENDPOINTS.items()}
    return allowance(global_rate, by_kind, seconds, max_walks)


def _state(tenant_id: str, run: Run, segments: list[Segment], history_budget: int) -> dict[str, Any]:
    """The state machine's state between steps."""
    # Continue in a new execution before a round that could pass the history budget (once this one
    # has run a round: each execution moves the run on).
    full = run["history"] > START_EVENTS and run["history"] + round_events(len(segments)) > history_budget
    return {
        "tenant_id": tenant_id,
        "run": run,
        "segments": segments,
        "active": len(segments),
        "concurrency": max(1, len(segments)),
        "continue": bool(segments) and full,
    }


def _counts(run: Run, segments: list[Segment]) -> dict[str, int]:
    return {
        kind: run["totals"][kind] + sum(s["imported"] for s in segments if s["kind"] == kind)
        for kind in KINDS
    }


def start(
    tenant_id: str,
    *,
    tenants: Tenants,
    progress: Progress,
    runs: Runs,
    limits: Limits,
    stripe: AccountReader,
    max_walks: int,
    now: int,
    execution: str | None = None,
) -> dict[str, Any]:
    """A new run, or the kept one resumed (continued from a full execution, or started again after a
    failure) when it was planned for the tenant's current config. ``execution``: the one running it
    (named on the status document, so that its end outside the state machine's Catch is seen).
    A new run reads the account's ``created`` once: its walks keep it (see ``domain.backfill``)."""
    tenant = _connected(tenants, tenant_id)
    kept = runs.load(tenant_id)
    if kept is not None and kept[0]["config_version"] == tenant.config_version:
        run, segments = kept
        run = Run(**{**run, "history": START_EVENTS, "generation": run["generation"] + 1})
        progress.backfill_started(tenant_id, run["started_at"], "importing", _counts(run, segments))
        if execution:
            progress.set_execution(tenant_id, execution)
        return _state(tenant_id, run, segments, HISTORY_BUDGET)
    walks = _allowance(tenant, limits, page_seconds([]), max_walks)
    run = Run(
        totals=new_totals(),
        allowance=walks,
        history=START_EVENTS,
        generation=1,
        started_at=now,
        config_version=tenant.config_version,
    )
    segments = plan(walks, tenant.config_version, stripe.account_created(tenant))
    runs.save(tenant_id, run, segments)
    progress.backfill_started(tenant_id, now, "importing")
    if execution:
        progress.set_execution(tenant_id, execution)
    return _state(tenant_id, run, segments, HISTORY_BUDGET)


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
    writers: int = 1,
    write_page: Callable[[str, list[dict[str, Any]], int], None] | None = None,
    ahead: Callable[[], AbstractContextManager[Executor]] | None = None,
) -> list[Segment]:
    """Walk up to ``max_pages`` pages of the segment (fewer if ``deadline`` comes).

    The walk is paced by Stripe, not by its writes: the next page is asked for (``ahead``: a
    one-thread executor) while this one is written, and a page's objects are written ``writers`` at
    a time (one customer's together: they share a partition and a version lock; different customers'
    writes are independent, and concurrent writers of one customer retry on its version).
    ``write_page(kind, objects, requested_at)`` replaces the write path (a benchmark's model of it).

    Returns the segment with its new cursor, plus the new walks it split into when it was allowed to
    (see ``domain.backfill.split``); the step then ends at once, so they start in the next round.
    """
    # A cached tenant older than the config this run started with (a trait just changed) is refreshed.
    tenant = _connected(tenants, tenant_id, segment["config_version"])
    # A walk planned before a deploy that added fields goes on as one walk (from Stripe's start).
    segment = Segment(
        **{"walks": 1, "oldest": None, "span": 0, "busy": 0.0, "account_created": EARLIEST, **segment}
    )
    produced: list[Segment] = []
    imported = 0

    def fetch(params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool, int, float]:
        requested_at = int(clock())  # stamped when asked: see services.sync
        started, waited = monotonic(), pacer.waited
        objects, has_more = stripe.list_page(tenant, segment["kind"], params, pacer)
        return objects, has_more, requested_at, monotonic() - started - (pacer.waited - waited)

    def write(kind: str, objects: list[dict[str, Any]], requested_at: int) -> None:
        _apply_page(tenant_id, kind, objects, requested_at, tenants, customers, stripe, clock, changes, pool)

    with (
        (ahead or (lambda: ThreadPoolExecutor(max_workers=1)))() as fetcher,
        ThreadPoolExecutor(max_workers=writers) if writers > 1 else _Inline() as pool,
    ):
        pending: Future[tuple[list[dict[str, Any]], bool, int, float]] | None = None
        for page in range(max_pages):
            if pending is None and (segment["done"] or monotonic() >= deadline):
                break
            objects, has_more, requested_at, fetching = (
                pending.result() if pending is not None else fetch(list_params(segment))
            )
            pending = None
            segment["requests"] += 1
            # Ask for the next page now, unless this page may end the step (a walk that may split
            # after it, the step's last page, the deadline, the list's end).
            if (
                has_more
                and objects
                and segment["walks"] <= 1
                and page + 1 < max_pages
                and monotonic() < deadline
            ):
                following = Segment(**{**segment, "cursor": str(objects[-1]["id"])})
                pending = fetcher.submit(fetch, list_params(following))
            started = monotonic()
            (write_page or write)(segment["kind"], objects, requested_at)
            segment["busy"] += max(fetching, monotonic() - started)
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


class _Inline:
    """One writer: the page's customers in turn (an executor's ``map`` without threads)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def map(self, function: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return [function(item) for item in items]


def _schedule_of(
    subscription: dict[str, Any], tenant_id: str, tenants: Tenants, stripe: StripeObjects
) -> Snapshot:
    """A subscription's expanded schedule (``managing_schedule``); one to prices other than the
    subscription's own is read (one request, its prices expanded), so that its next phase's MRR is
    known."""
    schedule = managing_schedule(subscription)
    tenant = tenants.get(tenant_id)
    if unexpanded_prices(schedule) and tenant is not None:
        read = stripe.fetch(tenant, "subscription_schedule", schedule["id"])
        if read is not None:
            return read
    return schedule


def _apply_page(
    tenant_id: str,
    kind: str,
    objects: list[dict[str, Any]],
    requested_at: int,
    tenants: Tenants,
    customers: Customers,
    stripe: StripeObjects,
    clock: Callable[[], float],
    changes: ChangeFeed | None,
    pool: ThreadPoolExecutor | _Inline,
) -> None:
    parse = _PARSERS[kind]
    snapshots = [snapshot for snapshot in map(parse, objects) if snapshot is not None]
    # A subscription's expanded customer matters only when it is deleted (the customers list has the rest).
    snapshots += [
        parse_customer(raw["customer"])
        for raw in objects
        if isinstance(raw.get("customer"), dict) and raw["customer"].get("deleted")
    ]
    # And its expanded schedule: what it has coming (domain.backfill.list_params).
    snapshots += [
        _schedule_of(raw, tenant_id, tenants, stripe)
        for raw in objects
        if isinstance(raw.get("schedule"), dict)
    ]
    observations = [
        Observation(snapshot=snapshot, observed_at=requested_at, source="fetched", event_id=None)
        for snapshot in snapshots
    ]
    # One customer's objects together, in turn; customers side by side.
    observations.sort(key=lambda o: customer_id_of(o["snapshot"]))
    groups = [list(group) for _, group in groupby(observations, key=lambda o: customer_id_of(o["snapshot"]))]

    def apply_group(group: list[Observation]) -> None:
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

    list(pool.map(apply_group, groups))  # raises the first failure: the step is retried


def collect_round(
    tenant_id: str,
    run: Run,
    rounds: list[list[Segment]],
    *,
    tenants: Tenants,
    runs: Runs,
    limits: Limits,
    max_walks: int,
    history_budget: int = HISTORY_BUDGET,
) -> dict[str, Any]:
    """After a round: totals from finished walks, the allowance sized to the pages' measured time,
    the walks still going sharing it; kept for a continuation or a rerun."""
    tenant = _connected(tenants, tenant_id, run["config_version"])
    measured = page_seconds([s for produced in rounds for s in produced], run["allowance"]["page_seconds"])
    walks = _allowance(tenant, limits, measured, max_walks)
    totals, active = collect(run["totals"], rounds, walks["walks"], walks["kinds"])
    run = Run(
        **{**run, "totals": totals, "allowance": walks, "history": run["history"] + round_events(len(rounds))}
    )
    runs.save(tenant_id, run, active)
    return _state(tenant_id, run, active, history_budget)


def continue_run(
    tenant_id: str, run: Run, *, executions: Executions, state_machine: str, progress: Progress
) -> dict[str, Any]:
    """Start the run's next execution (it resumes the kept run); the same name for a retried step,
    so Step Functions starts it once."""
    name = f"{tenant_id}-{run['started_at']}-{run['generation'] + 1}"[-80:]
    execution = executions.start(state_machine, name, tenant_id)
    progress.set_execution(tenant_id, execution)
    return {"tenant_id": tenant_id, "execution": execution, "generation": run["generation"] + 1}


def finish(tenant_id: str, totals: Totals, *, progress: Progress, runs: Runs, now: int) -> dict[str, Any]:
    counts: dict[str, int] = {kind: totals.get(kind, 0) for kind in KINDS}
    progress.backfill_finished(
        tenant_id, now, BackfillOutcome(counts, None, totals["requests"], totals["walks"])
    )
    runs.clear(tenant_id)  # the next backfill is a new one
    return {
        "tenant_id": tenant_id,
        "counts": counts,
        "requests": totals["requests"],
        "walks": totals["walks"],
    }


def execution_ended(detail: dict[str, Any], *, progress: Progress, now: int) -> str | None:
    """An execution ended FAILED, TIMED_OUT or ABORTED (Step Functions' status change event): when it
    is the one the tenant's running backfill names, the backfill failed (a timeout, an abort or an
    error no Catch can see would otherwise leave it ``running``). The kept run stays for a rerun."""
    try:
        tenant_id = str(json.loads(detail.get("input") or "{}")["tenant_id"])
    except (ValueError, KeyError, TypeError):
        return None
    reason = f"{detail.get('status')}: {detail.get('error') or ''} {detail.get('cause') or ''}".strip()
    if progress.fail_if_running(tenant_id, str(detail.get("executionArn")), now, reason[:500]):
        return tenant_id
    return None


def fail(tenant_id: str, error: Any, *, progress: Progress, now: int) -> None:
    """Record why the execution failed (Step Functions passes ``{"Error", "Cause"}``); the kept run
    stays, so the next backfill resumes from its last round."""
    if isinstance(error, dict):
        message = f"{error.get('Error', 'Error')}: {str(error.get('Cause', ''))[:500]}"
    else:
        message = str(error)[:500]
    progress.backfill_finished(tenant_id, now, BackfillOutcome({}, message))
