"""Risk signals through the real handlers on moto (docs/contracts.md, "Revenue policy and risk
signals"): ``Customer Risk Changed`` on the change feed at most once per change and never for one that
did not happen, whatever the order and the repeats of the deliveries; a signal that turns by time
alone raised by the review (``due_for_review``, then ``rederive`` at an injected later now)."""

from __future__ import annotations

from typing import Any

import pytest
from revsync.domain.changes import RECORD_CHANGED, RISK_CHANGED
from revsync.domain.risk import NO_RISK
from revsync.domain.tenancy import Connection, Tenant
from revsync.infra.changes import EventBridgeChanges
from revsync.services.sync import rederive
from revsync.store.tenants import TenantStore

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeTenants
from tests.integration.conftest import PLATFORM_SECRET, DynamoCustomers

pytestmark = pytest.mark.integration

DAY = 86_400
N = FROZEN_NOW  # the worker's now
ACCOUNT = "acct_risk"


def _sub(sub_id: str, **kwargs: Any) -> dict[str, Any]:
    item = {**S.subscription_item(S.price(1000)), "id": f"si_{sub_id}"}
    return S.subscription("cus_r", [item], id=sub_id, created=N - 10 * DAY, **kwargs)


def _story() -> list[dict[str, Any]]:
    """Dunning, a scheduled cancellation, then neither; a second subscription trialing to an end
    three days after the worker's now."""

    def customer(delinquent: bool) -> dict[str, Any]:
        return S.customer("cus_r", metadata={"app_id": "u-r"}, delinquent=delinquent)

    def event(kind: str, obj: dict[str, Any], days_ago: int) -> dict[str, Any]:
        return S.event(kind, obj, created=N - days_ago * DAY, account=ACCOUNT)

    return [
        event("customer.created", customer(False), 10),
        event("customer.subscription.created", _sub("sub_1"), 10),
        event("customer.subscription.updated", _sub("sub_1", status="past_due"), 8),
        event("customer.updated", customer(True), 7),
        event(
            "customer.subscription.updated",
            _sub("sub_1", cancel_at_period_end=True, canceled_at=N - 5 * DAY),
            5,
        ),
        event("customer.updated", customer(False), 4),
        event("customer.subscription.created", _sub("sub_2", status="trialing", trial_end=N + 3 * DAY), 3),
        event("customer.subscription.updated", _sub("sub_1"), 2),
    ]


@pytest.fixture
def connected(stack: InProcessStack) -> InProcessStack:
    tenant = Tenant("risky", Connection("connected", "oauth", ACCOUNT, connected_at=0)).with_config(
        "metadata.app_id"
    )
    TenantStore().save(tenant, N - 30 * DAY)
    return stack


def _again(event: dict[str, Any]) -> dict[str, Any]:
    """The same observation delivered again (a catch-up's or a retry past the queue's deduplication)."""
    return {**event, "id": S.new_id("evt")}


@pytest.mark.parametrize("order", ["in_order", "reversed_and_repeated"])
def test_risk_changes_are_published_once_each_in_any_order_and_repeated(
    connected: InProcessStack, order: str
) -> None:
    stack, events = connected, _story()
    deliveries = events if order == "in_order" else [*events[::-1], *(_again(e) for e in events[2:6])]
    stack.deliver(deliveries, PLATFORM_SECRET)

    record = stack.request("GET", "/tenants/risky/customers/u-r").json()
    assert record["risk"] == {**NO_RISK, "trial_ends_at": N + 3 * DAY}
    assert record["traits"]["stripe.risk.trial_ends_at"] == N + 3 * DAY
    published = stack.change_feed()
    assert {e["detail-type"] for e in published} <= {RECORD_CHANGED, RISK_CHANGED}
    # Each signal's published changes chain from none to the record's: each change once, and none
    # that did not happen.
    values = dict(NO_RISK)
    for event in published:
        if event["detail-type"] == RISK_CHANGED:
            detail = event["detail"]
            assert (detail["external_id"], detail["stripe_customer_id"]) == ("u-r", "cus_r")
            for name, change in detail["changed"].items():
                assert change["before"] == values[name] != change["after"], (name, published)
                values[name] = change["after"]
    assert values == record["risk"]
    if order == "in_order":
        risks = [e["detail"] for e in published if e["detail-type"] == RISK_CHANGED]
        assert [sorted(d["changed"]) for d in risks] == [
            ["dunning_since", "in_dunning"],
            ["cancel_scheduled_at", "dunning_since", "mrr_at_risk"],
            ["in_dunning"],
            ["trial_ends_at"],
            ["cancel_scheduled_at", "mrr_at_risk"],
        ]

    # Every delivery again: nothing changes, nothing is published.
    stack.deliver([_again(e) for e in events], PLATFORM_SECRET)
    assert stack.change_feed() == []


def test_a_trial_ending_soon_is_raised_by_the_review_at_its_time(connected: InProcessStack) -> None:
    stack = connected
    trialing = S.subscription(
        "cus_t",
        [S.subscription_item(S.price(1000))],
        id="sub_t",
        status="trialing",
        trial_end=N + 10 * DAY,
        created=N - DAY,
    )
    customer = S.customer("cus_t", metadata={"app_id": "u-t"})
    stack.deliver(
        [
            S.event("customer.created", customer, created=N - DAY, account=ACCOUNT),
            S.event("customer.subscription.created", trialing, created=N - DAY, account=ACCOUNT),
        ],
        PLATFORM_SECRET,
    )
    stack.change_feed()
    customers, tenants = DynamoCustomers(), FakeTenants({"risky": TenantStore().get("risky")})  # type: ignore[dict-item]
    assert stack.request("GET", "/tenants/risky/customers/u-t").json()["risk"]["trial_ends_at"] is None
    assert customers.due_for_review("risky", N + 3 * DAY - 1, 10) == []

    # The schedule's review, three days later (an injected now): the trial now ends within 7 days.
    later = N + 3 * DAY
    assert stack.names is not None
    changes = EventBridgeChanges(stack.names.physical_name("ChangesBus"))
    for customer_id in customers.due_for_review("risky", later, 10):
        result = rederive(
            "risky", customer_id, tenants=tenants, customers=customers, changes=changes, now=later
        )
        assert result.outcome == "applied"
    assert changes.flush() == (2, 0)

    record = stack.request("GET", "/tenants/risky/customers/u-t").json()
    assert (record["risk"]["trial_ends_at"], record["traits"]["stripe.risk.trial_ends_at"]) == (
        N + 10 * DAY,
    ) * 2
    [risk] = [e["detail"] for e in stack.change_feed() if e["detail-type"] == RISK_CHANGED]
    assert risk == {
        "tenant_id": "risky",
        "external_id": "u-t",
        "stripe_customer_id": "cus_t",
        "observed_at": later,
        "changed": {"trial_ends_at": {"before": None, "after": N + 10 * DAY}},
    }
    # Reviewed: due again when the trial's end passes, not before.
    assert customers.due_for_review("risky", N + 10 * DAY, 10) == []
    assert customers.due_for_review("risky", N + 10 * DAY + 1, 10) == ["cus_t"]
