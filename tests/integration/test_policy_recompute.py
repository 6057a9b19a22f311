"""A tenant's revenue policy through the real handlers on moto (docs/contracts.md, "Revenue policy and
risk signals"): the worker derives by it; a policy change re-derives every customer from its stored
observations (``sync.rederive``, paged by ``customer_ids``), the months following through the sync
table's stream into the rollup; changing it back returns every record, history point and month; a
webhook applied during the recompute is not lost.

The tenant store keeps no policy in this branch's scope (the policy route saves it): the worker's
and the recompute's tenant reads are given the tenant with its policy.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from revsync.domain.changes import RECORD_CHANGED
from revsync.domain.history import revenue_months
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.stored_state import StateWrite
from revsync.domain.tenancy import Connection, Tenant
from revsync.infra.changes import EventBridgeChanges
from revsync.services.sync import SyncResult, rederive
from revsync.store.read_models import RevenueRecomputation
from revsync.store.tenants import TenantStore

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeTenants
from tests.integration.conftest import PLATFORM_SECRET, DynamoCustomers

pytestmark = pytest.mark.integration

DAY = 86_400
JAN = calendar.timegm((2026, 1, 1, 0, 0, 0))
ACCOUNT = "acct_pol"
PRO = S.price(5000, id="price_pro")
# Stripe's Billing analytics' way with coupons, and ChartMogul's churn when a cancellation is scheduled.
POLICY = RevenuePolicy(discounts="forever_only", churn_at="scheduled")
MONTHS = "from=2026-01&to=2026-04"


def _sub(customer: str, sub_id: str, quantity: int = 1, **kwargs: Any) -> dict[str, Any]:
    item = {**S.subscription_item(PRO, quantity=quantity), "id": f"si_{sub_id}"}
    return S.subscription(customer, [item], id=sub_id, **kwargs)


def _story() -> list[dict[str, Any]]:
    """ada: two seats with a repeating 50% coupon (ended in March), from January. bob: from January,
    asks in February to cancel at the period's end. cy: from February, no coupon."""
    half = S.coupon(percent_off=50, duration="repeating", duration_in_months=2, id="co_half")
    ada = S.customer(
        "cus_ada",
        metadata={"app_id": "u-ada"},
        the_discount=S.discount(half, customer="cus_ada", start=JAN, end=JAN + 60 * DAY),
    )
    bob, cy = (S.customer(f"cus_{n}", metadata={"app_id": f"u-{n}"}) for n in ("bob", "cy"))
    scheduled = _sub("cus_bob", "sub_bob", cancel_at_period_end=True, canceled_at=JAN + 40 * DAY)
    return [
        S.event("customer.created", ada, created=JAN + DAY, account=ACCOUNT),
        S.event(
            "customer.subscription.created", _sub("cus_ada", "sub_ada", 2), created=JAN + DAY, account=ACCOUNT
        ),
        S.event("customer.created", bob, created=JAN + 2 * DAY, account=ACCOUNT),
        S.event(
            "customer.subscription.created",
            _sub("cus_bob", "sub_bob"),
            created=JAN + 2 * DAY,
            account=ACCOUNT,
        ),
        S.event("customer.subscription.updated", scheduled, created=JAN + 40 * DAY, account=ACCOUNT),
        S.event("customer.created", cy, created=JAN + 45 * DAY, account=ACCOUNT),
        S.event(
            "customer.subscription.created", _sub("cus_cy", "sub_cy"), created=JAN + 45 * DAY, account=ACCOUNT
        ),
        S.event(
            "customer.subscription.updated",
            _sub("cus_ada", "sub_ada", 2),
            created=JAN + 70 * DAY,
            account=ACCOUNT,
        ),
    ]


@pytest.fixture
def connected(stack: InProcessStack) -> InProcessStack:
    tenant = Tenant("pol", Connection("connected", "oauth", ACCOUNT, connected_at=0)).with_config(
        "metadata.app_id"
    )
    TenantStore().save(tenant, JAN)
    return stack


def _with_policy(stack: InProcessStack, policy: RevenuePolicy, saves: int) -> FakeTenants:
    """The tenant once its policy was saved ``saves`` times (each bumps its config version), as the
    worker reads it from now on (and as the recompute is given it)."""
    stored = TenantStore().get("pol")
    assert stored is not None
    tenants = FakeTenants(
        {"pol": replace(stored, policy=policy, config_version=stored.config_version + saves)}
    )
    stack.wire("WorkerFunction", tenants=tenants)
    return tenants


def _recompute(stack: InProcessStack, tenants: FakeTenants, customers: Any, now: int) -> list[SyncResult]:
    """What the recompute job does for the tenant: every customer, a page at a time, derived again;
    then the stream into the rollup, as the stack runs it."""
    assert stack.names is not None
    changes = EventBridgeChanges(stack.names.physical_name("ChangesBus"))
    results, cursor, first = [], None, True
    while first or cursor is not None:
        ids, cursor = customers.customer_ids("pol", cursor, 2)
        first = False
        results += [
            rederive("pol", cid, tenants=tenants, customers=customers, changes=changes, now=now)
            for cid in ids
        ]
    assert changes.flush()[1] == 0
    stack.drain_stream()
    return results


def _everything(stack: InProcessStack, keys: tuple[str, ...] = ("u-ada", "u-bob", "u-cy")) -> dict[str, Any]:
    """Every record, every customer's history, and the months (as /revenue answers them: from the
    rollup, checked against the months summed from the stored timelines)."""
    records = {key: stack.request("GET", f"/tenants/pol/customers/{key}").json() for key in keys}
    histories = {key: stack.request("GET", f"/tenants/pol/customers/{key}/history").json() for key in keys}
    months = stack.request("GET", "/tenants/pol/revenue", query=MONTHS).json()["months"]
    totals = RevenueRecomputation().revenue_totals("pol").get("usd", {})
    assert months == revenue_months(totals, "2026-01", "2026-04")
    return {"records": records, "histories": histories, "months": months}


def test_a_policy_change_and_back_returns_every_record_history_point_and_month(
    connected: InProcessStack,
) -> None:
    stack = connected
    stack.deliver(_story(), PLATFORM_SECRET)
    before = _everything(stack)
    stack.change_feed()  # (what the deliveries published)

    results = _recompute(stack, _with_policy(stack, POLICY, 1), DynamoCustomers(), FROZEN_NOW)

    assert sorted(r.outcome for r in results) == ["applied"] * 3  # each saved once, by the new config
    changed = _everything(stack)
    # ada's repeating coupon no longer counts: full price from the start (her record, judged after
    # it ended, says so either way); bob churned when he asked.
    assert changed["records"]["u-ada"]["mrr"] == before["records"]["u-ada"]["mrr"] == 10000
    assert [(p["at"], p["mrr"]) for p in before["histories"]["u-ada"]["points"]] == [
        (JAN + DAY, 5000),
        (JAN + 70 * DAY, 10000),
    ]
    assert [(p["at"], p["mrr"]) for p in changed["histories"]["u-ada"]["points"]] == [(JAN + DAY, 10000)]
    bob = changed["records"]["u-bob"]
    assert (bob["churned"], bob["churned_at"], bob["mrr"]) == (True, JAN + 40 * DAY, 0)
    assert [(p["at"], p["movement"]) for p in changed["histories"]["u-bob"]["points"]] == [
        (JAN + 2 * DAY, "new"),
        (JAN + 40 * DAY, "churn"),
    ]
    assert [m["mrr_end"] for m in before["months"]] == [10000, 15000, 20000, 20000]
    assert [m["mrr_end"] for m in changed["months"]] == [15000, 15000, 15000, 15000]
    # The feed says which records changed (ada's and cy's did not).
    published = [e["detail"] for e in stack.change_feed() if e["detail-type"] == RECORD_CHANGED]
    assert sorted(d["external_id"] for d in published) == ["u-bob"]

    _recompute(stack, _with_policy(stack, DEFAULT_POLICY, 2), DynamoCustomers(), FROZEN_NOW + DAY)

    assert _everything(stack) == before


CALLS = S.price(25, usage_type="metered", id="price_calls")


def _metered_story() -> list[dict[str, Any]]:
    """dee: the pro plan and metered calls from January; her invoices (Stripe's current shape: a line
    names its price by id) bill the plan and 12.50 of calls for January, then 20.00 for February, the
    second finalized (sent to be paid later) and not yet paid."""
    dee = S.customer("cus_dee", metadata={"app_id": "u-dee"})
    items = [{**S.subscription_item(PRO), "id": "si_pro"}, {**S.subscription_item(CALLS), "id": "si_calls"}]
    sub = S.subscription("cus_dee", items, id="sub_dee")

    def invoice(invoice_id: str, calls: int, at: int, status: str) -> dict[str, Any]:
        raw = S.invoice("cus_dee", "sub_dee", id=invoice_id, status=status, amount_paid=5000 + calls)
        plan_line = raw["lines"]["data"][0]
        raw["lines"]["data"] = [
            {
                **plan_line,
                "id": f"il_{invoice_id}_{price}",
                "amount": amount,
                "subtotal": amount,
                "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_1"}},
            }
            for price, amount in (("price_pro", 5000), ("price_calls", calls))
        ]
        raw["status_transitions"].update(finalized_at=at, paid_at=at if status == "paid" else None)
        return raw

    return [
        S.event("customer.created", dee, created=JAN + DAY, account=ACCOUNT),
        S.event("customer.subscription.created", sub, created=JAN + DAY, account=ACCOUNT),
        S.event(
            "invoice.paid",
            invoice("in_jan", 1250, JAN + 31 * DAY, "paid"),
            created=JAN + 31 * DAY,
            account=ACCOUNT,
        ),
        S.event(
            "invoice.finalized",
            invoice("in_feb", 2000, JAN + 59 * DAY, "open"),
            created=JAN + 59 * DAY,
            account=ACCOUNT,
        ),
    ]


def test_metered_usage_counted_by_policy_and_back_through_the_stack(connected: InProcessStack) -> None:
    """``metered: last_invoice`` (Baremetrics' option): the calls count as the latest finalized invoice
    billed them, from when it was finalized; the plan's lines (licensed) move nothing. Back to
    ``excluded``, everything is as before."""
    stack = connected
    stack.deliver(_metered_story(), PLATFORM_SECRET)
    before = _everything(stack, ("u-dee",))
    assert before["records"]["u-dee"]["mrr"] == 5000
    assert [m["mrr_end"] for m in before["months"]] == [5000, 5000, 5000, 5000]
    usage = DynamoCustomers().load("pol", "cus_dee").objects.usage
    assert {i: [line["price"] for line in e["lines"]] for i, e in usage["sub_dee"].items()} == {
        "in_jan": ["price_calls"],
        "in_feb": ["price_calls"],
    }

    _recompute(
        stack, _with_policy(stack, RevenuePolicy(metered="last_invoice"), 1), DynamoCustomers(), FROZEN_NOW
    )

    changed = _everything(stack, ("u-dee",))
    assert changed["records"]["u-dee"]["mrr"] == 7000
    assert [(p["at"], p["mrr"]) for p in changed["histories"]["u-dee"]["points"]] == [
        (JAN + DAY, 5000),
        (JAN + 31 * DAY, 6250),
        (JAN + 59 * DAY, 7000),
    ]
    assert [m["mrr_end"] for m in changed["months"]] == [5000, 6250, 7000, 7000]

    _recompute(stack, _with_policy(stack, DEFAULT_POLICY, 2), DynamoCustomers(), FROZEN_NOW + DAY)

    assert _everything(stack, ("u-dee",)) == before


def test_the_worker_derives_by_the_tenants_policy(connected: InProcessStack) -> None:
    stack = connected
    _with_policy(stack, POLICY, 1)
    stack.deliver(_story(), PLATFORM_SECRET)

    bob = stack.request("GET", "/tenants/pol/customers/u-bob").json()
    assert (bob["churned"], bob["churned_at"], bob["mrr"]) == (True, JAN + 40 * DAY, 0)
    everything = _everything(stack)
    assert [p["mrr"] for p in everything["histories"]["u-ada"]["points"]] == [10000]
    assert [m["mrr_end"] for m in everything["months"]] == [15000, 15000, 15000, 15000]
    # What the worker wrote is what a recompute by the same policy gives: nothing to change.
    results = _recompute(stack, _with_policy(stack, POLICY, 1), DynamoCustomers(), FROZEN_NOW)
    assert [r.outcome for r in results] == ["unchanged"] * 3


@dataclass
class _WebhookMeanwhile(DynamoCustomers):
    """The store, with webhooks delivered and applied by the worker just before the recompute's
    next save (so that save finds the state changed under it)."""

    meanwhile: list[Any] = field(default_factory=list)

    def save(self, write: StateWrite) -> int:
        if self.meanwhile:
            self.meanwhile.pop(0)()
        return super().save(write)


def test_a_webhook_applied_during_the_recompute_is_not_lost(connected: InProcessStack) -> None:
    stack = connected
    stack.deliver(_story(), PLATFORM_SECRET)
    recompute_tenants = _with_policy(stack, POLICY, 1)
    # The worker still has the old policy (its cache), as a worker reading the tenant just before
    # the change would.
    stored = TenantStore().get("pol")
    assert stored is not None
    stale = FakeTenants({"pol": stored})
    stack.wire("WorkerFunction", tenants=stale)
    more_seats = S.event(
        "customer.subscription.updated",
        _sub("cus_ada", "sub_ada", 3),
        created=JAN + 100 * DAY,
        account=ACCOUNT,
    )
    customers = _WebhookMeanwhile()
    customers.meanwhile.append(lambda: stack.deliver([more_seats], PLATFORM_SECRET))

    results = _recompute(stack, recompute_tenants, customers, FROZEN_NOW)

    assert sum(r.conflicts for r in results) == 1
    ada = stack.request("GET", "/tenants/pol/customers/u-ada").json()
    assert ada["mrr"] == 15000  # the webhook's three seats, full price by the new policy
    history = stack.request("GET", "/tenants/pol/customers/u-ada/history").json()
    assert [(p["at"], p["mrr"]) for p in history["points"]] == [(JAN + DAY, 10000), (JAN + 100 * DAY, 15000)]
    assert DynamoCustomers().load("pol", "cus_ada").policy == POLICY
    assert [m["mrr_end"] for m in _everything(stack)["months"]] == [15000, 15000, 15000, 20000]
