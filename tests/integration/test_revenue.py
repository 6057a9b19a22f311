"""MRR history, monthly revenue and the change feed through the real handlers on moto.

Webhooks over three months for a few customers (late, reordered and repeated deliveries included)
give the months and the customer histories the contract describes; the feed carries one event per
record change and none for duplicates; the in-memory fake keeps exactly what the DynamoDB store
keeps (the same story through both).
"""

from __future__ import annotations

import calendar
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from revsync.domain.events import observation_of, parse_event
from revsync.domain.history import Contribution, Timeline, revenue_months
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation
from revsync.store import models
from revsync.store.read_models import RevenueRecomputation
from revsync.store.rollup import RevenueRollup

from local import lambda_runtime, streams
from local import stripe_shapes as S
from local.environment import REGION
from local.inprocess import InProcessStack
from tests.fakes import FakeCustomers, FakeFeed, FakeStripe, FakeTenants
from tests.integration.conftest import PLATFORM_SECRET, DynamoCustomers

pytestmark = pytest.mark.integration

DAY = 86_400
JAN = calendar.timegm((2026, 1, 1, 0, 0, 0))
ACCOUNT = "acct_rev"
PRO = S.price(5000, id="price_pro")


def _sub(customer: str, sub_id: str, quantity: int = 1, status: str = "active", **kw: Any) -> dict[str, Any]:
    item = {**S.subscription_item(PRO, quantity=quantity), "id": f"si_{sub_id}"}
    return S.subscription(customer, [item], id=sub_id, status=status, **kw)


def _story() -> list[dict[str, Any]]:
    """ada: new in January, expands in February. bob: new in January, churns in February, comes back
    in March. cy: new in February, contracts in March."""
    ada, bob, cy = (S.customer(f"cus_{n}", metadata={"app_id": f"u-{n}"}) for n in ("ada", "bob", "cy"))
    events = [
        S.event("customer.created", ada, created=JAN + DAY, account=ACCOUNT),
        S.event(
            "customer.subscription.created", _sub("cus_ada", "sub_ada"), created=JAN + DAY, account=ACCOUNT
        ),
        S.event("customer.created", bob, created=JAN + 2 * DAY, account=ACCOUNT),
        S.event(
            "customer.subscription.created",
            _sub("cus_bob", "sub_bob"),
            created=JAN + 2 * DAY,
            account=ACCOUNT,
        ),
        S.event(
            "customer.subscription.updated",
            _sub("cus_ada", "sub_ada", quantity=3),
            created=JAN + 35 * DAY,
            account=ACCOUNT,
        ),
        S.event(
            "customer.subscription.deleted",
            _sub(
                "cus_bob", "sub_bob", status="canceled", canceled_at=JAN + 40 * DAY, ended_at=JAN + 40 * DAY
            ),
            created=JAN + 40 * DAY,
            account=ACCOUNT,
        ),
        S.event("customer.created", cy, created=JAN + 45 * DAY, account=ACCOUNT),
        S.event(
            "customer.subscription.created",
            _sub("cus_cy", "sub_cy", quantity=2),
            created=JAN + 45 * DAY,
            account=ACCOUNT,
        ),
        S.event(
            "customer.subscription.created",
            _sub("cus_bob", "sub_bob2"),
            created=JAN + 65 * DAY,
            account=ACCOUNT,
        ),
        S.event(
            "customer.subscription.updated", _sub("cus_cy", "sub_cy"), created=JAN + 70 * DAY, account=ACCOUNT
        ),
    ]
    return events


EXPECTED_MONTHS = [
    {
        "month": "2026-01",
        "mrr_start": 0,
        "new": 10000,
        "expansion": 0,
        "reactivation": 0,
        "contraction": 0,
        "churn": 0,
        "mrr_end": 10000,
        "customers_start": 0,
        "customers_end": 2,
    },
    {
        "month": "2026-02",
        "mrr_start": 10000,
        "new": 10000,
        "expansion": 10000,
        "reactivation": 0,
        "contraction": 0,
        "churn": 5000,
        "mrr_end": 25000,
        "customers_start": 2,
        "customers_end": 2,
    },
    {
        "month": "2026-03",
        "mrr_start": 25000,
        "new": 0,
        "expansion": 0,
        "reactivation": 5000,
        "contraction": 5000,
        "churn": 0,
        "mrr_end": 25000,
        "customers_start": 2,
        "customers_end": 3,
    },
]


@pytest.fixture
def connected(stack: InProcessStack) -> InProcessStack:
    tenant = Tenant("rev", Connection("connected", "oauth", ACCOUNT, connected_at=0)).with_config(
        "metadata.app_id"
    )
    from revsync.store.tenants import TenantStore

    TenantStore().save(tenant, JAN)
    return stack


def test_months_histories_and_feed_from_webhooks_in_any_order(connected: InProcessStack) -> None:
    stack, events = connected, _story()
    late_and_twice = [*events[::-1], *random.Random(3).sample(events, 4)]
    stack.deliver(late_and_twice, PLATFORM_SECRET)

    response = stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-03")
    assert response.status == 200, response.body
    report = response.json()
    # When the newest change counted was made (the stream's time for it): how recent the rollup is.
    assert isinstance(report.pop("as_of"), int)
    assert report == {"currency": "usd", "months": EXPECTED_MONTHS}
    # A window later than the first month starts from everything before it; the currency defaults.
    march = stack.request("GET", "/tenants/rev/revenue", query="from=2026-03&to=2026-03&currency=usd").json()
    assert march["months"] == EXPECTED_MONTHS[2:]
    euros = stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-01&currency=eur").json()
    assert (euros["currency"], euros["months"]) == (
        "eur",
        [{**EXPECTED_MONTHS[0], "new": 0, "mrr_end": 0, "customers_end": 0}],
    )

    bob = stack.request("GET", "/tenants/rev/customers/u-bob/history").json()
    assert bob == {
        "currency": "usd",
        "points": [
            {"at": JAN + 2 * DAY, "mrr": 5000, "movement": "new", "amount": 5000},
            {"at": JAN + 40 * DAY, "mrr": 0, "movement": "churn", "amount": 5000},
            {"at": JAN + 65 * DAY, "mrr": 5000, "movement": "reactivation", "amount": 5000},
        ],
    }

    # Delivered in reverse, so the records moved to their final state first: each record change is
    # one event, and the repeats made none.
    published = stack.change_feed()
    assert all(e["source"] == "revsync" and e["detail-type"] == "Customer Record Changed" for e in published)
    details = [e["detail"] for e in published]
    assert len(details) == len({json.dumps(d, sort_keys=True) for d in details})
    # (A subscription seen before its customer waits for it, and its trait: no stripe: record.)
    assert {d["external_id"] for d in details} == {"u-ada", "u-bob", "u-cy"}
    for detail in details:
        assert set(detail) == {
            "tenant_id",
            "external_id",
            "stripe_customer_id",
            "observed_at",
            "changed",
            "mrr",
            "movement",
            "churned",
        }
        assert detail["changed"], detail
    # Every delivery again: nothing changes, nothing is published.
    stack.deliver(events, PLATFORM_SECRET)
    assert stack.change_feed() == []
    assert stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-03").json()["months"] == (
        EXPECTED_MONTHS
    )


def test_the_feed_says_what_moved_in_order(connected: InProcessStack) -> None:
    stack, events = connected, _story()
    stack.deliver(events, PLATFORM_SECRET)
    bob = [e["detail"] for e in stack.change_feed() if e["detail"]["external_id"] == "u-bob"]
    assert [(d["movement"], d["mrr"], d["churned"]) for d in bob if d["movement"]] == [
        ("new", {"before": 0, "after": 5000}, {"before": False, "after": False}),
        ("churn", {"before": 5000, "after": 0}, {"before": False, "after": True}),
        ("reactivation", {"before": 0, "after": 5000}, {"before": True, "after": False}),
    ]
    assert "mrr" in next(d for d in bob if d["movement"] == "churn")["changed"]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("from=2026-13&to=2026-12", "invalid_month"),
        ("from=26-01", "invalid_month"),
        ("from=2026-05&to=2026-01", "invalid_range"),
        ("from=2000-01&to=2026-01", "range_too_long"),
        ("from=0001-01&to=9999-12", "invalid_month"),  # was a 500 (no year 10000 to end the range)
        ("from=9990-03&to=9999-12", "invalid_month"),
        ("from=0000-01&to=0000-02", "invalid_month"),  # was a 500 (there is no year 0)
        ("to=0001-05", "invalid_month"),  # was a 500 (the default start went below year 1)
        ("from=1969-12&to=1970-01", "invalid_month"),
        ("currency=USD", "invalid_currency"),
        ("currency=%00%FF", "invalid_currency"),
    ],
)
def test_bad_revenue_queries_are_400s(connected: InProcessStack, query: str, error: str) -> None:
    response = connected.request("GET", "/tenants/rev/revenue", query=query)
    assert (response.status, response.json()["error"]) == (400, error)


def test_the_first_and_last_months_answer(connected: InProcessStack) -> None:
    early = connected.request("GET", "/tenants/rev/revenue", query="to=1970-03").json()
    late = connected.request("GET", "/tenants/rev/revenue", query="from=9998-01&to=9998-12").json()

    assert [m["month"] for m in early["months"]] == ["1970-01", "1970-02", "1970-03"]  # from: clamped
    assert [m["month"] for m in late["months"]][-1] == "9998-12"


def test_unknown_customer_history_is_404(connected: InProcessStack) -> None:
    response = connected.request("GET", "/tenants/rev/customers/nobody/history")
    assert (response.status, response.json()["error"]) == (404, "customer_not_found")
    # Twelve empty months up to now's when nothing is asked.
    default = connected.request("GET", "/tenants/rev/revenue").json()
    assert len(default["months"]) == 12
    assert default["currency"] is None
    assert default["as_of"] is None  # nothing counted yet


# --- the fake keeps what the store keeps --------------------------------------------------------


def _through(customers: Any) -> tuple[dict[str, dict[str, Contribution]], Timeline | None]:
    tenant = Tenant("rev", Connection("connected", "oauth", ACCOUNT)).with_config("metadata.app_id")
    tenants, stripe = FakeTenants({"rev": tenant}), FakeStripe()
    for raw in _story():
        observation = observation_of(parse_event(json.dumps(raw).encode()))
        assert observation is not None
        apply_observation("rev", observation, tenants=tenants, customers=customers, stripe=stripe)
    return customers.revenue_totals("rev"), customers.timeline("rev", "cus_bob")


def test_the_fake_keeps_what_the_store_keeps(stack: InProcessStack) -> None:
    store = DynamoCustomers()
    assert _through(FakeCustomers()) == _through(store)
    totals, history = _through(store)  # the same story again: nothing moves
    assert totals == _through(FakeCustomers())[0]
    assert history is not None
    assert len(history) == 3  # three subscription observations, each a change of MRR


# --- the revenue index: sparse, and filled in for states written before it -------------------------


def _in_index(tenant_id: str) -> set[str]:
    return {item.pk for item in models.CustomerStateItem.revenue_index.query(tenant_id)}


def test_only_customers_that_ever_paid_are_in_the_revenue_index(stack: InProcessStack) -> None:
    store = DynamoCustomers()
    _through(store)
    trialing = _sub("cus_tia", "sub_tia", status="trialing", trial_end=JAN + 40 * DAY)
    tenants = FakeTenants({"rev": Tenant("rev", Connection("connected", "oauth", ACCOUNT)).with_config("id")})
    raw = S.event("customer.subscription.created", trialing, created=JAN + 3 * DAY, account=ACCOUNT)
    observation = observation_of(parse_event(json.dumps(raw).encode()))
    assert observation is not None
    apply_observation("rev", observation, tenants=tenants, customers=store, stripe=FakeStripe())
    assert store.load("rev", "cus_tia").history.timeline == ()  # stored, empty: kept out of the index
    assert _in_index("rev") == {f"rev#cus_{n}" for n in ("ada", "bob", "cy")}
    assert _in_index("other") == set()


def test_a_state_written_before_timelines_gets_one_at_its_next_change(stack: InProcessStack) -> None:
    """A stack upgraded from month items: its states have no timeline until written again (a backfill
    reads every object again, later, so it rewrites every state)."""
    store = DynamoCustomers()
    totals, _ = _through(store)
    for item in models.SyncItem.query(models.sync_partition("rev", "cus_ada")):
        if isinstance(item, models.CustomerStateItem):
            item.tenant_id = item.timeline = None  # as the previous version wrote it
            item.save()
    assert store.load("rev", "cus_ada").history.timeline is None
    assert "usd" in totals
    assert store.revenue_totals("rev") != totals  # ada is missing until her state is written again

    # Her next change moves no MRR (a paid invoice: not history), and still writes her timeline.
    invoice = S.invoice("cus_ada", "sub_ada", amount_paid=5000, paid_at=JAN + 60 * DAY, id="in_ada")
    paid = observation_of(
        parse_event(json.dumps(S.event("invoice.paid", invoice, created=JAN + 60 * DAY)).encode())
    )
    assert paid is not None
    tenant = Tenant("rev", Connection("connected", "oauth", ACCOUNT)).with_config("metadata.app_id")
    result = apply_observation(
        "rev", paid, tenants=FakeTenants({"rev": tenant}), customers=store, stripe=FakeStripe()
    )
    assert result.outcome == "applied"
    assert store.revenue_totals("rev") == totals


# --- concurrent workers: a committed change is published even when a newer record lands first --


@dataclass
class _Interleaved:
    """The customer store, with another worker's event applied between this worker's state write
    and its projection (the projection then finds a newer record and stands down)."""

    inner: FakeCustomers
    between: Callable[[], None] | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def project(self, record: Any, version: int, previous: str | None, *, repair: bool) -> bool:
        between, self.between = self.between, None
        if between is not None:
            between()
        return self.inner.project(record, version, previous, repair=repair)


def test_a_change_superseded_before_its_projection_is_still_published() -> None:
    tenant = Tenant("rev", Connection("connected", "oauth", ACCOUNT)).with_config("metadata.app_id")
    tenants, stripe, feed = FakeTenants({"rev": tenant}), FakeStripe(), FakeFeed()
    customers = FakeCustomers()
    ada = S.customer("cus_ada", metadata={"app_id": "u-ada"})
    created, subscribed, expanded = (
        observation_of(parse_event(json.dumps(raw).encode()))
        for raw in (
            S.event("customer.created", ada, created=JAN, account=ACCOUNT),
            S.event("customer.subscription.created", _sub("cus_ada", "sub_ada"), created=JAN + DAY),
            S.event(
                "customer.subscription.updated", _sub("cus_ada", "sub_ada", quantity=2), created=JAN + 2 * DAY
            ),
        )
    )
    assert None not in (created, subscribed, expanded)

    def run(observation: Any, store: Any) -> None:
        apply_observation("rev", observation, tenants=tenants, customers=store, stripe=stripe, changes=feed)

    run(created, customers)
    run(subscribed, _Interleaved(customers, between=lambda: run(expanded, customers)))

    assert customers.records[("rev", "u-ada")]["mrr"] == 10000
    assert sorted(
        (d["movement"], d["mrr"]["before"], d["mrr"]["after"]) for d in feed.details if d["movement"]
    ) == [
        ("expansion", 5000, 10000),
        ("new", 0, 5000),
    ]


# --- the rollup: the stream's batches failed and retried, and states from before it ----------------


@dataclass
class _FlakyRollup:
    """The rollup function's revenue table, its n-th write (from 0) failing before it lands
    (``fail``) or after it landed with its answer lost (``lost``)."""

    inner: Any
    fail: set[int]
    lost: set[int]
    calls: int = 0

    def apply(self, shard_id: str, group: Any, expires_at: int) -> Any:
        call, self.calls = self.calls, self.calls + 1
        if call in self.fail:
            raise TimeoutError("write failed")
        found = self.inner.apply(shard_id, group, expires_at)
        if call in self.lost:
            raise TimeoutError("answer lost")
        return found


def _recomputed_months(first: str, last: str) -> list[dict[str, Any]]:
    """The months from the stored timelines (the revenue index, summed in memory): the check."""
    return revenue_months(RevenueRecomputation().revenue_totals("rev").get("usd", {}), first, last)


def test_the_rollup_equals_the_recomputation_after_failed_and_retried_stream_batches(
    connected: InProcessStack,
) -> None:
    """Webhooks shuffled and repeated; then the stream in batches of 3, a write lost after landing, a
    write failing, the function's answer lost once (the batch again, cut shorter): the months are
    the recomputation's, and the contract's."""
    stack, events = connected, _story()
    for event in [*random.Random(8).sample(events, len(events)), *events[:3]]:
        assert stack.post_webhook(event, PLATFORM_SECRET).status == 200
    stack.drain(rollup=False)
    rollup = stack.wire("RollupFunction", rollup=_FlakyRollup(RevenueRollup(REGION), fail={3}, lost={1}))
    invocations: list[int] = []

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        answer = lambda_runtime.invoke(function, event)
        invocations.append(len(event["Records"]))
        if len(invocations) == 4:  # Lambda never got the answer: the batch again, and shorter
            mapping.batch_size = 2
            raise TimeoutError("invocation timed out")
        return answer

    assert stack.names is not None
    mapping = streams.mapping("RollupFunction", stack.names, invoke, "us-east-1")
    mapping.batch_size = 3
    stats = mapping.drain()

    assert rollup.rollup.calls > 3  # both faulty writes happened
    assert len(invocations) > 4  # and so did the lost answer, with the shorter batches after it
    assert max(invocations[4:]) == 2
    assert stats.failed >= 2
    report = stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-03").json()
    assert report["months"] == _recomputed_months("2026-01", "2026-03") == EXPECTED_MONTHS
    # Everything again from the stream's start (a new mapping): every record found applied.
    again = streams.mapping("RollupFunction", stack.names, lambda_runtime.invoke, "us-east-1").drain()
    assert again.failed == 0
    assert stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-03").json() == report


def test_states_written_before_the_rollup_count_once_seeded(connected: InProcessStack) -> None:
    """An upgraded stack: states written before the rollup carry no rollup_tenant, so it counts
    nothing for them until they are written again or seeded; seeding twice counts them once."""
    stack = connected
    stack.deliver(_story(), PLATFORM_SECRET)
    sync = stack.client("dynamodb")
    assert stack.names is not None
    table = stack.names.physical_name("SyncTable")
    for customer in ("cus_ada", "cus_bob"):  # as the previous version wrote them
        key = {"pk": {"S": models.sync_partition("rev", customer)}, "sk": {"S": models.STATE_SK}}
        sync.update_item(TableName=table, Key=key, UpdateExpression="REMOVE rollup_tenant")
    stack.drain()
    before = stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-03").json()
    assert before["months"] != EXPECTED_MONTHS  # only cy is counted
    assert before["months"][-1]["customers_end"] == 1

    seeded = lambda_runtime.invoke("RollupFunction", {"action": "seed", "tenant_id": "rev"})
    assert seeded == {"tenant_id": "rev", "counted": 2, "cursor": None}
    assert lambda_runtime.invoke("RollupFunction", {"action": "seed", "tenant_id": "rev"})["counted"] == 0
    stack.drain()

    report = stack.request("GET", "/tenants/rev/revenue", query="from=2026-01&to=2026-03").json()
    assert report["months"] == _recomputed_months("2026-01", "2026-03") == EXPECTED_MONTHS
    with pytest.raises(ValueError, match="tenant_id"):
        lambda_runtime.invoke("RollupFunction", {"action": "seed", "tenant_id": "no#such"})
