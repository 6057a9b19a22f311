"""Backfill steps with in-memory stores and a fake Stripe list: windows, cursors, webhooks racing pages."""

from __future__ import annotations

import json
from typing import Any

from revsync.domain.backfill import KINDS, Segment, Totals, collect, list_params, new_totals, plan, split
from revsync.domain.events import observation_of, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.services import backfill
from revsync.services.sync import apply_observation
from revsync.stripe_api.pacing import Pacer

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

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
            for o in sorted(self.lists[kind], key=lambda o: -o["created"])
            if o["created"] >= created["gte"] and ("lt" not in created or o["created"] < created["lt"])
        ]
        if params.get("starting_after"):
            items = items[[o["id"] for o in items].index(params["starting_after"]) + 1 :]
        return items[: params["limit"]], len(items) > params["limit"]


class Progress:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def backfill_started(self, tenant_id: str, now: int, stage: str) -> None:
        self.counts = {}

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + imported

    def backfill_finished(
        self,
        tenant_id: str,
        now: int,
        counts: dict[str, int],
        error: str | None,
        requests: int = 0,
        walks: int = 0,
    ) -> None:
        self.final = (counts, error)


def _env() -> tuple[FakeTenants, FakeCustomers, Progress]:
    tenant = Tenant("acme", Connection("connected", "api_key", "acct_1", secret_name="s")).with_config(
        "metadata.app_id"
    )
    return FakeTenants({"acme": tenant}), FakeCustomers(), Progress()


def _step(
    segment: Segment,
    env: tuple[FakeTenants, FakeCustomers, Progress],
    lister: FakeLister,
    max_pages: int,
    clock: int = NOW,
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
        pacer=Pacer(0),
        max_pages=max_pages,
        deadline=float("inf"),
        max_walks=4,
        clock=lambda: clock,
    )


def _run(
    lister: FakeLister,
    tenants: FakeTenants,
    customers: FakeCustomers,
    progress: Progress,
    clock: int = NOW,
    windows: int = 3,
    max_pages: int = 2,
) -> tuple[Totals, int]:
    """The state machine's rounds, in order: returns the totals and how many walks there were."""
    active = backfill.start("acme", tenants=tenants, progress=progress, windows=windows, now=NOW)
    totals, walks = new_totals(), len(active)
    while active:
        produced = [
            _step(segment, (tenants, customers, progress), lister, max_pages, clock) for segment in active
        ]
        walks += sum(len(p) - 1 for p in produced)
        totals, active = collect(totals, produced)
    return totals, walks


def test_plan_covers_every_kind_in_windows_with_an_open_newest_one() -> None:
    segments = plan(NOW, 4)
    assert [s["kind"] for s in segments] == [k for k in KINDS for _ in range(4)]
    for kind in KINDS:
        mine = [s for s in segments if s["kind"] == kind]
        assert [s["lt"] for s in mine[:-1]] == [s["gte"] for s in mine[1:]]  # contiguous
        assert mine[-1]["lt"] is None
    params = list_params(segments[5])
    assert params["status"] == "all"
    assert params["limit"] == 100
    assert "data.customer" in params["expand"]


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
    totals, walks = _run(lister, tenants, customers, progress, windows=1, max_pages=2)
    assert totals["customers"] == 1234
    assert len(customers.records) == 1234
    assert walks > 3  # the one customers walk split
    minimum = -(-1234 // 100)
    customer_calls = [c for c in lister.calls if c[0] == "customers"]
    assert minimum <= len(customer_calls) <= minimum + walks  # at most one partial page per walk


def test_split_fans_a_planned_window_out_once_keeping_the_cursor_side() -> None:
    segment = plan(NOW, 1)[0]
    segment["cursor"] = "cus_x"
    oldest = NOW - 10_000
    walks = split(segment, oldest_seen=oldest, page_span=100, max_walks=4)
    kept, *older = walks
    assert len(walks) == 4
    assert (kept["cursor"], kept["lt"], kept["splittable"]) == ("cus_x", None, False)
    # Contiguous slices of [gte, kept.gte): nothing twice, nothing missed.
    assert older[0]["gte"] == segment["gte"]
    assert [w["lt"] for w in older] == [*[w["gte"] for w in older[1:]], kept["gte"]]
    assert all(w["cursor"] is None and not w["splittable"] for w in older)
    assert split(kept, oldest_seen=oldest, page_span=100, max_walks=4) == [kept]  # no second fan-out
    near_end = plan(NOW, 1)[0]
    assert split(near_end, oldest_seen=near_end["gte"] + 150, page_span=100, max_walks=4) == [near_end]


def test_a_retried_step_resumes_from_its_cursor() -> None:
    tenants, customers, progress = _env()
    made = [S.customer(f"cus_{i:03d}", metadata={"app_id": f"u-{i}"}, created=NOW - i) for i in range(150)]
    lister = FakeLister({"customers": made, "subscriptions": [], "invoices": []})
    newest = plan(NOW, 1)[0]
    # The older part of the window, if split off, is not this test's concern.
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
