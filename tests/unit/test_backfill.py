"""Backfill steps with in-memory stores and a fake Stripe list: walks splitting, cursors, racing webhooks."""

from __future__ import annotations

import json
from random import Random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from revsync.domain.backfill import (
    EARLIEST,
    HISTORY_BUDGET,
    KINDS,
    PAGES_PER_WALK,
    START_EVENTS,
    Segment,
    Totals,
    collect,
    list_params,
    plan,
    round_events,
    share_out,
    split,
)
from revsync.domain.events import observation_of, parse_event
from revsync.domain.risk import derive_risk
from revsync.domain.tenancy import BackfillOutcome, Connection, Tenant
from revsync.infra.aws import CONFIG, MAX_POOL_CONNECTIONS
from revsync.services import backfill
from revsync.services.sync import apply_observation
from revsync.store.models import CustomerRecordItem, SyncItem
from revsync.stripe_api.pacing import Pacer

from local import stripe_shapes as S
from local.template import load_template
from tests.fakes import FakeBackfillRuns, FakeCustomers, FakeStripe, FakeTenants

NOW = 1_780_000_000


class FakeLister(FakeStripe):
    """Stripe's lists over fixed objects, newest first, pages of ``limit``."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]]) -> None:
        super().__init__()
        self.lists = lists
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def list_page(
        self, tenant: Tenant, kind: str, params: dict[str, Any], pacer: Pacer
    ) -> tuple[list[dict[str, Any]], bool]:
        self.calls.append((kind, dict(params)))
        created = params["created"]
        items = [
            o
            for o in sorted(self.lists.get(kind, []), key=lambda o: -o["created"])
            if o["created"] >= created["gte"] and ("lt" not in created or o["created"] < created["lt"])
        ]
        if params.get("starting_after"):
            items = items[[o["id"] for o in items].index(params["starting_after"]) + 1 :]
        return items[: params["limit"]], len(items) > params["limit"]


class Progress:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.executions: list[str] = []
        self.final: tuple[dict[str, int], str | None] | None = None

    def backfill_started(
        self, tenant_id: str, now: int, stage: str, counts: dict[str, int] | None = None
    ) -> None:
        self.counts = dict(counts or {})
        self.final = None

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + imported

    def set_execution(self, tenant_id: str, execution: str) -> None:
        self.executions.append(execution)

    def fail_if_running(self, tenant_id: str, execution: str, now: int, error: str) -> bool:
        if self.final is not None or not self.executions or self.executions[-1] != execution:
            return False
        self.final = ({}, error)
        return True

    def backfill_finished(self, tenant_id: str, now: int, outcome: BackfillOutcome) -> None:
        self.final = (dict(outcome.counts), outcome.error)


def _env() -> tuple[FakeTenants, FakeCustomers, Progress]:
    tenant = Tenant("acme", Connection("connected", "api_key", "acct_1", secret_name="s")).with_config(
        "metadata.app_id"
    )
    return FakeTenants({"acme": tenant}), FakeCustomers(), Progress()


def unlimited(tenant: Tenant, endpoints: list[str]) -> tuple[float, dict[str, float]]:
    """Limits so high that the walks allowed are the most the run may have (``max_walks``)."""
    return 1e6, dict.fromkeys(endpoints, 1e6)


def _step(
    segment: Segment,
    env: tuple[FakeTenants, FakeCustomers, Progress],
    lister: FakeLister,
    max_pages: int,
    clock: int = NOW,
    pacer: Pacer | None = None,
) -> list[Segment]:
    """One state machine step (``import_segment``) with in-memory stores."""
    tenants, customers, progress = env
    return backfill.import_segment(
        "acme",
        segment,
        tenants=tenants,
        customers=customers,
        stripe=lister,
        progress=progress,
        pacer=pacer or Pacer(),
        max_pages=max_pages,
        deadline=float("inf"),
        clock=lambda: clock,
        monotonic=lambda: 0.0,  # no page time measured: the allowance stays as planned
    )


def _run(
    lister: FakeLister,
    tenants: FakeTenants,
    customers: FakeCustomers,
    progress: Progress,
    clock: int = NOW,
    walks: int = 3,
    max_pages: int = 2,
) -> tuple[Totals, int]:
    """The state machine's rounds, in order: returns the totals and how many walks there were."""
    max_walks, runs = walks, FakeBackfillRuns()
    state = backfill.start(
        "acme",
        tenants=tenants,
        progress=progress,
        runs=runs,
        limits=unlimited,
        stripe=lister,
        max_walks=max_walks,
        now=NOW,
    )
    active = state["segments"]
    walks = len(active)
    while active:
        produced = [
            _step(segment, (tenants, customers, progress), lister, max_pages, clock) for segment in active
        ]
        walks += sum(len(p) - 1 for p in produced)  # split after a page
        going = sum(not segment["done"] for p in produced for segment in p)
        state = backfill.collect_round(
            "acme", state["run"], produced, tenants=tenants, runs=runs, limits=unlimited, max_walks=max_walks
        )
        active = state["segments"]
        walks += len(active) - going  # split into the room finished walks left
        assert len(active) <= max_walks  # never more walks going than the Map runs at once
    backfill.finish("acme", state["run"]["totals"], progress=progress, runs=runs, now=NOW)
    return state["run"]["totals"], walks


def test_plan_starts_one_walk_per_list_open_both_ways_with_its_share() -> None:
    segments = plan(5 * len(KINDS))
    assert [s["kind"] for s in segments] == list(KINDS)
    assert all((s["gte"], s["lt"], s["walks"]) == (EARLIEST, None, 5) for s in segments)
    assert all(s["account_created"] == EARLIEST for s in segments)  # not known
    assert {s["account_created"] for s in plan(15, account_created=NOW - 5)} == {NOW - 5}
    assert plan(2)[0]["walks"] == 1  # never less than one walk per list
    params = list_params(segments[1])
    assert params["status"] == "all"
    assert params["limit"] == 100
    assert "data.customer" in params["expand"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(min_value=0, max_value=1_500),
    spread=st.sampled_from([0, 60, 86_400, 3 * 365 * 86_400]),  # 0: all in the same second
    clusters=st.integers(min_value=1, max_value=4),
    rng=st.randoms(use_true_random=False),
    walks=st.integers(min_value=1, max_value=20),
    max_pages=st.integers(min_value=1, max_value=5),
    # The account opened this long before its oldest object (None: Stripe does not say; negative:
    # after some of its objects, e.g. test-clock ones, or an account connected later).
    opened_before=st.one_of(st.none(), st.integers(min_value=-86_400, max_value=400 * 86_400)),
)
def test_any_history_is_imported_once_whatever_the_splits(
    count: int,
    spread: int,
    clusters: int,
    rng: Random,
    walks: int,
    max_pages: int,
    opened_before: int | None,
) -> None:
    """Clustered, sparse, same-second or empty, in an account opened before its objects or not:
    every customer once, requests bounded by the walks, and no walk wholly before the account."""
    centres = [rng.randrange(4 * 365 * 86_400) for _ in range(clusters)]
    ages = [rng.choice(centres) + rng.randrange(spread + 1) for _ in range(count)]
    tenants, customers, progress = _env()
    made = [
        S.customer(f"cus_{i:04d}", metadata={"app_id": f"u-{i}"}, created=NOW - age)
        for i, age in enumerate(ages)
    ]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    oldest = NOW - max(ages, default=0)
    lister.account_opened = None if opened_before is None else oldest - opened_before
    totals, made_walks = _run(lister, tenants, customers, progress, walks=walks, max_pages=max_pages)
    assert totals["customers"] == len(made)
    assert len(customers.records) == len(made)
    assert totals["walks"] == made_walks
    pages = [c for c in lister.calls if c[0] == "customers"]
    assert len(pages) <= -(-len(made) // 100) + made_walks - 2  # one part (or empty) page per walk
    if lister.account_opened is not None and lister.account_opened <= oldest:
        assert all(params["created"].get("lt", NOW + 1) > lister.account_opened for _, params in pages)


def test_walks_every_page_once_and_counts_exactly() -> None:
    tenants, customers, progress = _env()
    made = [
        S.customer(f"cus_{i:03d}", metadata={"app_id": f"u-{i}"}, created=NOW - 1000 * i) for i in range(250)
    ]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    totals, walks = _run(lister, tenants, customers, progress, max_pages=20)
    assert (totals["customers"], totals["subscriptions"], totals["invoices"]) == (250, 0, 0)
    assert progress.counts == {"customers": 250}
    assert len(customers.records) == 250
    assert totals["walks"] == walks
    # The minimum for pages of 100 (3), plus at most one page per walk (empty or partial).
    assert 3 <= totals["requests"] <= 3 + walks


def test_a_long_walk_splits_and_nothing_is_imported_twice_or_missed() -> None:
    tenants, customers, progress = _env()
    made = [
        S.customer(f"cus_{i:04d}", metadata={"app_id": f"u-{i}"}, created=NOW - 7 * i) for i in range(1234)
    ]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    totals, walks = _run(lister, tenants, customers, progress, walks=3, max_pages=2)
    assert totals["customers"] == 1234
    assert len(customers.records) == 1234
    assert walks > 3  # the one customers walk split
    minimum = -(-1234 // 100)
    customer_calls = [c for c in lister.calls if c[0] == "customers"]
    assert minimum <= len(customer_calls) <= minimum + walks  # at most one partial page per walk


def _contiguous(kept: Segment, older: list[Segment], bottom: int) -> None:
    """The new walks tile [bottom, kept.gte) newest first: nothing twice, nothing missed."""
    assert [w["lt"] for w in older] == [kept["gte"], *[w["gte"] for w in older[:-1]]]
    assert older[-1]["gte"] == bottom
    assert all(w["cursor"] is None and w["walks"] == 1 and w["imported"] == 0 for w in older)


def test_an_open_walk_splits_into_slices_of_its_density_and_an_open_last_one() -> None:
    segment = Segment(**{**plan(4 * len(KINDS))[0], "cursor": "cus_x"})  # 4 walks allowed
    oldest, span = NOW - 10_000, 100  # the first page spanned 100 s
    kept, *older = split(segment, oldest_seen=oldest, page_span=span)
    assert len(older) == 3
    assert (kept["cursor"], kept["lt"], kept["walks"]) == ("cus_x", None, 1)
    assert kept["gte"] == oldest - PAGES_PER_WALK * span
    assert [w["lt"] for w in older[:2]] == [oldest - i * PAGES_PER_WALK * span for i in (1, 2)]
    _contiguous(kept, older, EARLIEST)  # the last is still open: the data's start is unknown
    assert split(kept, oldest_seen=oldest, page_span=span) == [
        Segment(**{**kept, "oldest": oldest, "span": span})
    ]


def test_a_small_accounts_walk_is_cut_no_further_back_than_the_account() -> None:
    opened = NOW - 60_000
    allowed = 150 // len(KINDS)  # the list's share of 150 walks
    assert allowed > 20
    segment = Segment(**{**plan(150, account_created=opened)[0], "cursor": "cus_x"})
    oldest, span = NOW - 10_000, 100  # slices of 2,500 s: 20 of them reach the account's start
    kept, *older = split(segment, oldest_seen=oldest, page_span=span)
    assert len(older) == 19  # 20 walks, not all it may have: none of the others would find anything
    assert kept["gte"] == oldest - PAGES_PER_WALK * span
    assert all(w["lt"] is not None and w["lt"] > opened for w in older)  # none wholly before it
    assert older[-1]["lt"] == oldest - 20 * PAGES_PER_WALK * span + PAGES_PER_WALK * span
    _contiguous(kept, older, EARLIEST)  # the last asks from Stripe's start: free, and loses nothing
    assert all(w["account_created"] == opened for w in [kept, *older])
    # Stripe did not say: cut as before, into all the walks it may have.
    unknown = Segment(**{**plan(150)[0], "cursor": "cus_x"})
    assert len(split(unknown, oldest_seen=oldest, page_span=span)) == allowed


def test_a_walk_already_past_the_accounts_start_is_cut_as_if_it_were_unknown() -> None:
    """Objects older than the account's ``created`` (test-clock ones, or an account connected after
    its first objects): the start says nothing about where the data begins."""
    segment = Segment(**{**plan(4 * len(KINDS), account_created=NOW - 5_000)[0], "cursor": "cus_x"})
    kept, *older = split(segment, oldest_seen=NOW - 10_000, page_span=100)
    assert len(older) == 3
    _contiguous(kept, older, EARLIEST)


def test_an_open_walk_near_the_accounts_start_leaves_the_room_it_cannot_use() -> None:
    def walked(kind: int, oldest: int, opened: int, cursor: str) -> Segment:
        return Segment(
            **{
                **plan(3, account_created=opened)[kind],
                "oldest": oldest,
                "span": 100,
                "cursor": cursor,
                "gte": EARLIEST,
            }
        )

    near = walked(0, NOW - 10_000, NOW - 14_000, "a")  # 4,000 s left: two slices of 2,500 s
    far = walked(1, NOW - 10_000, EARLIEST, "b")
    shared = share_out([near, far], walks=12)
    assert [s["kind"] for s in shared].count("customers") == 2
    assert [s["kind"] for s in shared].count("subscriptions") == 10  # the rest goes where it is of use


def test_a_small_account_walks_no_slice_of_nothing() -> None:
    """1,000 customers over the 73 days since the account opened, 150 walks allowed: once the
    account's start is known, the requests are the minimum plus a part page a walk, not an empty
    page for each slice of 25 pages (half a year) back to 2010."""
    made = [
        S.customer(f"cus_{i:04d}", metadata={"app_id": f"u-{i}"}, created=NOW - i * 6_307)
        for i in range(1_000)
    ]
    requests = {}
    for opened in (None, NOW - 1_000 * 6_307 - 30 * 86_400):
        tenants, customers, progress = _env()
        lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
        lister.account_opened = opened
        totals, _ = _run(lister, tenants, customers, progress, walks=150, max_pages=25)
        assert totals["customers"] == 1_000
        assert lister.account_reads == 1  # once a backfill
        requests[opened is None] = totals["requests"]
    assert requests[False] == 10 + len(KINDS) - 1  # the minimum, and one request for each empty list
    assert requests[True] >= 10 + 30  # slices of nothing, one empty page each


def test_a_bounded_walk_splits_only_into_slices_of_at_least_a_walks_pages() -> None:
    bounded = Segment(**{**plan(3)[0], "gte": NOW - 100_000, "lt": NOW, "walks": 8, "cursor": "cus_y"})
    span = 1_000  # 99 pages left: 3 slices of 33 (4 would be under 25 pages each)
    kept, *older = split(bounded, oldest_seen=NOW - 1_000, page_span=span)
    assert len(older) == 2
    assert (kept["lt"], kept["cursor"]) == (NOW, "cus_y")
    _contiguous(kept, older, NOW - 100_000)
    assert all((w["lt"] or NOW) - w["gte"] >= PAGES_PER_WALK * span for w in older)
    assert NOW - 1_000 - kept["gte"] >= PAGES_PER_WALK * span
    near_end = Segment(**{**bounded, "gte": NOW - 30_000})  # 29 pages left: one walk
    assert len(split(near_end, oldest_seen=NOW - 1_000, page_span=span)) == 1


def test_room_left_by_finished_walks_is_filled_by_splitting_long_then_open_walks() -> None:
    def walked(gte: int, oldest: int, span: int, cursor: str) -> Segment:
        return Segment(
            **{
                **plan(3)[0],
                "gte": gte,
                "lt": NOW,
                "oldest": oldest,
                "span": span,
                "cursor": cursor,
                "walks": 1,
            }
        )

    short_one = walked(NOW - 40_000, NOW - 10_000, 1_000, "a")  # ~30 pages left: stays one
    open_walk = walked(EARLIEST, NOW - 50_000, 100, "b")
    long_one = walked(NOW - 70_000, NOW - 10_000, 1_000, "c")  # ~60 pages left: room for 2 walks
    fresh = Segment(**{**plan(3)[1], "gte": EARLIEST})  # no page yet: nothing known
    shared = share_out([short_one, open_walk, long_one, fresh], walks=10)
    assert len(shared) == 10  # 4 going + 6 free: 1 to long_one, the other 5 to the open walk
    assert shared[0] == short_one
    assert shared[-1] == fresh
    from_open, from_long = shared[1:7], shared[7:9]
    assert (from_open[0]["cursor"], from_long[0]["cursor"]) == ("b", "c")  # each keeps its cursor
    _contiguous(from_open[0], from_open[1:], EARLIEST)
    _contiguous(from_long[0], from_long[1:], NOW - 70_000)
    assert len(share_out([short_one, open_walk], walks=2)) == 2  # no room: nothing splits


def test_a_page_of_evenly_spaced_objects_gives_slices_of_whole_pages() -> None:
    """100 objects 10 s apart span 990 s, but the walk moves on 1,000 s a page: slices of 25 pages
    are 25,000 s, so each walk's last page is full (no part page at a slice's end)."""
    tenants, customers, progress = _env()
    made = [
        S.customer(f"cus_{i:05d}", metadata={"app_id": f"u-{i}"}, created=NOW - 10 * i) for i in range(3000)
    ]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    kept, *older = _step(plan(3 * len(KINDS))[0], (tenants, customers, progress), lister, max_pages=1)
    oldest = NOW - 10 * 99
    assert (kept["span"], kept["gte"]) == (1_000, oldest - 25_000)
    assert (older[0]["lt"], older[0]["gte"]) == (oldest - 25_000, oldest - 50_000)


def test_a_walk_planned_before_the_deploy_goes_on_as_one_walk() -> None:
    tenants, customers, progress = _env()
    made = [S.customer(f"cus_{i:03d}", metadata={"app_id": f"u-{i}"}, created=NOW - i) for i in range(150)]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    planned: Any = {
        k: v for k, v in plan(3)[0].items() if k not in ("walks", "oldest", "span", "account_created")
    }
    planned["splittable"] = True  # the previous plan's field
    first, *others = _step(planned, (tenants, customers, progress), lister, max_pages=5)
    assert others == []
    assert (first["imported"], first["done"], first["walks"]) == (150, True, 1)


def test_a_run_started_before_a_list_was_added_collects_and_finishes() -> None:
    """Totals kept by a run (or carried by an execution) from before credit notes and refunds were
    listed have no count for them: the round's collect and the finish count them as 0."""
    before: Any = {"customers": 5, "subscriptions": 4, "invoices": 3, "requests": 9, "walks": 3}
    walk = plan(3)[0] | {"done": True, "imported": 2, "requests": 1}
    totals, active = collect(before, [[walk]], 3)
    assert active == []
    assert {kind: totals[kind] for kind in KINDS} == {
        "customers": 5 + (2 if walk["kind"] == "customers" else 0),
        "subscriptions": 4 + (2 if walk["kind"] == "subscriptions" else 0),
        "invoices": 3 + (2 if walk["kind"] == "invoices" else 0),
        "credit_notes": 2 if walk["kind"] == "credit_notes" else 0,
        "refunds": 2 if walk["kind"] == "refunds" else 0,
    }
    _, _, progress = _env()
    answer = backfill.finish("acme", before, progress=progress, runs=FakeBackfillRuns(), now=NOW)
    assert answer["counts"] == {
        "customers": 5,
        "subscriptions": 4,
        "invoices": 3,
        "credit_notes": 0,
        "refunds": 0,
    }


def test_a_retried_step_resumes_from_its_cursor() -> None:
    tenants, customers, progress = _env()
    made = [S.customer(f"cus_{i:03d}", metadata={"app_id": f"u-{i}"}, created=NOW - i) for i in range(150)]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    newest = plan(3)[0]  # one walk allowed: it stays one
    first, *_older = _step(newest, (tenants, customers, progress), lister, max_pages=1)
    assert (first["imported"], first["done"], first["cursor"]) == (100, False, "cus_099")
    # The next step failed once and is retried with the same input: same cursor, same page.
    for _ in range(2):
        second, *_ = _step(first, (tenants, customers, progress), lister, max_pages=1)
    assert (second["imported"], second["done"]) == (150, True)
    assert [c[1].get("starting_after") for c in lister.calls] == [None, "cus_099", "cus_099"]
    assert len(customers.records) == 150


def test_webhooks_racing_the_pages_end_in_the_right_state() -> None:
    tenants, customers, progress = _env()
    page_view = S.subscription(
        "cus_1", [S.subscription_item(S.price(1000))], id="sub_1", status="active", created=NOW - 500
    )
    lister = FakeLister(
        {
            "customers": [S.customer("cus_1", metadata={"app_id": "u-1"}, created=NOW - 600)],
            "subscriptions": [page_view],
            "invoices": [],
        }
    )

    def webhook(kind: str, obj: dict[str, Any], at: int) -> None:
        observation = observation_of(parse_event(json.dumps(S.event(kind, obj, created=at)).encode()))
        assert observation is not None
        apply_observation("acme", observation, tenants=tenants, customers=customers, stripe=FakeStripe())

    # A cancellation that happened after the page was read: it must win whenever it arrives.
    webhook(
        "customer.subscription.deleted", {**page_view, "status": "canceled", "ended_at": NOW + 5}, NOW + 5
    )
    _run(lister, tenants, customers, progress, clock=NOW)
    # An upgrade from before the page was read, delivered late: the page already shows what followed.
    webhook("customer.subscription.updated", {**page_view, "status": "past_due"}, NOW - 50)
    record = customers.records[("acme", "u-1")]
    assert (record["churned"], record["churned_at"], record["mrr"]) == (True, NOW + 5, 0)

    tenants2, customers2, progress2 = _env()
    _run(lister, tenants2, customers2, progress2, clock=NOW)
    webhook_late = {
        **page_view,
        "items": {**page_view["items"], "data": [{**page_view["items"]["data"][0], "quantity": 3}]},
    }
    observation = observation_of(
        parse_event(
            json.dumps(S.event("customer.subscription.updated", webhook_late, created=NOW + 30)).encode()
        )
    )
    assert observation is not None
    apply_observation("acme", observation, tenants=tenants2, customers=customers2, stripe=FakeStripe())
    assert customers2.records[("acme", "u-1")]["mrr"] == 3000  # newer than the page: applied


class Starter:
    """Step Functions' StartExecution as the continuation uses it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def start(self, state_machine: str, name: str, tenant_id: str) -> str:
        self.names.append(name)
        return f"{state_machine.replace(':stateMachine:', ':execution:')}:{name}"


class FailingLister(FakeLister):
    """Stripe failing (past every retry) at its ``fail_at``-th list request."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]], fail_at: int) -> None:
        super().__init__(lists)
        self.fail_at = fail_at

    def list_page(
        self, tenant: Tenant, kind: str, params: dict[str, Any], pacer: Pacer
    ) -> tuple[list[dict[str, Any]], bool]:
        if len(self.calls) + 1 == self.fail_at:
            self.fail_at = 0
            raise RuntimeError("Stripe unavailable")
        return super().list_page(tenant, kind, params, pacer)


STATE_MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:revsync-test-backfill"


def _execution(
    lister: FakeLister,
    env: tuple[FakeTenants, FakeCustomers, Progress],
    runs: FakeBackfillRuns,
    starter: Starter,
    history_budget: int,
    max_walks: int = 6,
) -> dict[str, Any]:
    """One execution of the state machine: Start, rounds, then Finish or Continue (the Catch: raises)."""
    tenants, _, progress = env
    state = backfill.start(
        "acme",
        tenants=tenants,
        progress=progress,
        runs=runs,
        limits=unlimited,
        stripe=lister,
        max_walks=max_walks,
        now=NOW,
    )
    while state["active"] and not state["continue"]:
        produced = [_step(segment, env, lister, max_pages=2) for segment in state["segments"]]
        state = backfill.collect_round(
            "acme",
            state["run"],
            produced,
            tenants=tenants,
            runs=runs,
            limits=unlimited,
            max_walks=max_walks,
            history_budget=history_budget,
        )
    if state["continue"]:
        return backfill.continue_run(
            "acme", state["run"], executions=starter, state_machine=STATE_MACHINE, progress=progress
        )
    return backfill.finish("acme", state["run"]["totals"], progress=progress, runs=runs, now=NOW)


def _history(count: int) -> dict[str, list[dict[str, Any]]]:
    customers = [
        S.customer(f"cus_{i:04d}", metadata={"app_id": f"u-{i}"}, created=NOW - 9 * i) for i in range(count)
    ]
    subscriptions = [
        S.subscription(f"cus_{i:04d}", id=f"sub_{i:04d}", status="active", created=NOW - 9 * i)
        for i in range(0, count, 2)
    ]
    return {"customers": customers, "subscriptions": subscriptions, "invoices": []}


def test_a_run_continued_across_executions_loses_and_double_counts_nothing() -> None:
    """Each execution has room for one round: the run goes on in new executions, each resuming
    the walks the last one kept, and imports every object exactly once."""
    env, runs, starter = _env(), FakeBackfillRuns(), Starter()
    lister = FakeLister(_history(1_500))
    budget = START_EVENTS + round_events(6) + 1  # room for one round an execution
    executions = 1
    while "execution" in (result := _execution(lister, env, runs, starter, budget)):
        executions += 1
        assert result["generation"] == executions
    assert executions >= 3
    assert starter.names == [f"acme-{NOW}-{n}" for n in range(2, executions + 1)]
    assert env[2].executions == [
        f"{STATE_MACHINE.replace(':stateMachine:', ':execution:')}:{n}" for n in starter.names
    ]
    assert (result["counts"]["customers"], result["counts"]["subscriptions"]) == (1_500, 750)
    assert len(env[1].records) == 1_500
    assert env[2].counts == {
        "customers": 1_500,
        "subscriptions": 750,
        "invoices": 0,
        "credit_notes": 0,
        "refunds": 0,
    }
    pages = [(kind, json.dumps(params, sort_keys=True)) for kind, params in lister.calls]
    assert len(pages) == len(set(pages))  # no page asked twice
    assert len(pages) <= 15 + 8 + 1 + result["walks"]  # the minimum, plus one part page per walk
    assert runs.kept == {}  # finished: the next backfill starts anew
    assert lister.account_reads == 1  # the account's start: read once a backfill, kept in its walks


def test_a_run_kept_before_walks_knew_the_accounts_start_goes_on_as_before() -> None:
    env, runs, starter = _env(), FakeBackfillRuns(), Starter()
    lister = FakeLister(_history(1_500))
    lister.account_opened = NOW - 9 * 1_500 - 86_400
    budget = START_EVENTS + round_events(6) + 1  # room for one round an execution
    assert "execution" in _execution(lister, env, runs, starter, budget)
    run, segments = json.loads(runs.kept["acme"])
    for segment in segments:
        del segment["account_created"]  # as a run kept before this field was
    runs.kept["acme"] = json.dumps([run, segments])
    lister.account_opened = NOW  # a start no walk must take: the kept walks go on without it

    while "execution" in (result := _execution(lister, env, runs, starter, budget)):
        pass

    assert (result["counts"]["customers"], result["counts"]["subscriptions"]) == (1_500, 750)
    assert len(env[1].records) == 1_500
    pages = [(kind, json.dumps(params, sort_keys=True)) for kind, params in lister.calls]
    assert len(pages) == len(set(pages))  # no page asked twice
    assert lister.account_reads == 1  # a resumed run does not read it again


def test_a_failure_mid_way_is_recorded_and_a_rerun_resumes_and_completes() -> None:
    env, runs, starter = _env(), FakeBackfillRuns(), Starter()
    lister = FailingLister(_history(1_500), fail_at=14)
    with pytest.raises(RuntimeError) as failed:
        _execution(lister, env, runs, starter, HISTORY_BUDGET)
    # The state machine's Catch: the reason is recorded, the kept run stays.
    backfill.fail("acme", {"Error": "RuntimeError", "Cause": str(failed.value)}, progress=env[2], now=NOW)
    assert env[2].final == ({}, "RuntimeError: Stripe unavailable")
    kept = runs.load("acme")
    assert kept is not None
    asked_before = len(lister.calls)

    result = _execution(lister, env, runs, starter, HISTORY_BUDGET)  # the rerun
    assert env[2].final is not None
    assert env[2].final[1] is None
    assert (result["counts"]["customers"], result["counts"]["subscriptions"]) == (1_500, 750)
    assert len(env[1].records) == 1_500
    # It went on from the kept cursors: no walk started again from the top.
    resumed = [params for _, params in lister.calls[asked_before:] if params.get("starting_after") is None]
    assert all(params["created"] != {"gte": EARLIEST} for params in resumed)
    assert len(lister.calls) < 2 * (15 + 8)


def test_an_execution_that_ends_outside_its_catch_fails_the_backfill_it_runs() -> None:
    """Timed out, aborted, or an error no Catch sees: Step Functions' status change event fails the
    backfill when it names the execution running it (never a later one's, nor a finished one's)."""
    tenants, _, progress = _env()
    arn = f"{STATE_MACHINE.replace(':stateMachine:', ':execution:')}:acme-1"
    backfill.start(
        "acme",
        tenants=tenants,
        progress=progress,
        runs=FakeBackfillRuns(),
        limits=unlimited,
        stripe=FakeStripe(),
        max_walks=3,
        now=NOW,
        execution=arn,
    )
    detail = {"executionArn": arn, "status": "TIMED_OUT", "input": json.dumps({"tenant_id": "acme"})}
    other = {**detail, "executionArn": f"{arn}-2"}
    assert backfill.execution_ended(other, progress=progress, now=NOW) is None
    assert progress.final is None
    assert backfill.execution_ended(detail, progress=progress, now=NOW) == "acme"
    assert progress.final == ({}, "TIMED_OUT:")
    assert backfill.execution_ended({**detail, "input": "not json"}, progress=progress, now=NOW) is None


def test_a_steps_writers_and_its_next_page_fit_the_processs_dynamodb_connections() -> None:
    """More writers than pooled connections would queue for a connection (and drop the extra ones)."""
    variables = load_template()["Resources"]["ImporterFunction"]["Properties"]["Environment"]["Variables"]
    writers = int(variables["BACKFILL_WRITERS"])
    assert writers + 2 <= MAX_POOL_CONNECTIONS  # the writers, the next page's budget, the progress
    assert getattr(CONFIG, "max_pool_connections", None) == MAX_POOL_CONNECTIONS
    assert (
        SyncItem.Meta.max_pool_connections
        == CustomerRecordItem.Meta.max_pool_connections
        == MAX_POOL_CONNECTIONS
    )


def test_the_lists_bring_what_risk_signals_read_with_no_request_of_their_own() -> None:
    """Customers with their default card, subscriptions with the live schedule managing them (its
    phases' prices are ids at that depth: a schedule to another price is read once), and invoices of
    every status (a failed one is open)."""
    by_kind = {s["kind"]: list_params(s) for s in plan(len(KINDS))}
    assert "data.invoice_settings.default_payment_method" in by_kind["customers"]["expand"]
    assert "data.schedule" in by_kind["subscriptions"]["expand"]
    assert "status" not in by_kind["invoices"]
    card = S.payment_method("cus_1", exp_year=2020, exp_month=1, id="pm_1")
    customer = {
        **S.customer("cus_1", metadata={"app_id": "u-1"}, created=NOW - 100),
        "invoice_settings": {"default_payment_method": card},
    }
    pro, lite = S.price(4900, id="price_pro"), S.price(900, id="price_lite")
    phases = [
        S.schedule_phase("price_pro", NOW - 50, NOW + 50),
        S.schedule_phase("price_lite", NOW + 50, NOW + 99),
    ]
    schedule = S.subscription_schedule("cus_1", phases, subscription="sub_1", id="sub_sched_1")
    item = S.subscription_item(pro, period_start=NOW - 50, period_end=NOW + 30 * 86_400)
    subscription = {**S.subscription("cus_1", [item], id="sub_1", created=NOW - 50), "schedule": schedule}
    failed = {
        **S.invoice("cus_1", "sub_1", status="open", id="in_1"),
        "attempt_count": 1,
        "created": NOW - 10,
    }
    lister = FakeLister({"customers": [customer], "subscriptions": [subscription], "invoices": [failed]})
    lister.objects.update({"sub_sched_1": schedule, "price_pro": pro, "price_lite": lite})
    env = _env()
    for segment in plan(len(KINDS)):
        _step(segment, env, lister, max_pages=1)
    objects = env[1].load("acme", "cus_1").objects
    assert objects.default_payment_method == "pm_1"
    assert set(objects.payment_methods) == {"pm_1"}
    assert objects.failed_invoices["in_1"]["attempt_count"] == 1
    assert lister.fetches == ["sub_sched_1"]  # read once: its next phase is another price
    assert list(objects.schedules) == ["sub_sched_1"]
    assert derive_risk(objects, "usd", NOW)["scheduled_mrr"] == 900
