"""Revenue analytics end to end: three customers over three months of the sandbox's clock, through
signed webhooks, the queue and the worker, read back from ``GET /revenue``, ``GET .../history`` and
the change feed. The expected months are worked out here from the story itself."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import boto3
import pytest
import stripe

from local.aws import read_change_feed
from local.environment import REGION
from local.stack import LocalStack
from tests.e2e.conftest import http
from tests.e2e.test_backfill import wait_backfill
from tests.e2e.test_local_stack import connect_tenant, sandbox

pytestmark = pytest.mark.e2e
DAY = 86_400
TENANT = "e2e-revenue"


def _month(at: int) -> str:
    return time.strftime("%Y-%m", time.gmtime(at))


def _latest_event_time(client: stripe.StripeClient, kind: str) -> int:
    """When the newest event of ``kind`` happened: a movement's time. (Not the newest event of any
    kind: a call's later events, its invoice's, may fall in the next second on a slow machine.)"""
    return int(client.v1.events.list(params={"limit": 1, "type": kind}).data[0].created)


def _flush(stack: LocalStack) -> None:
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True


def test_three_months_of_movements_histories_and_feed(local_stack: LocalStack) -> None:
    stack = local_stack
    client, _ = connect_tenant(stack, TENANT)
    # Saving the trait starts an import. Had it still been listing when the story began, it would
    # import a subscription created meanwhile, and an imported subscription enters the history at its
    # start_date (docs/contracts.md), a second before its created event on a slow machine: the story's times
    # are its events', so it starts once the (empty) import is done.
    assert wait_backfill(stack, TENANT)["state"] == "succeeded"
    basic, pro = (
        client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": "month"},
                "product_data": {"name": name},
            }
        )
        for amount, name in ((2000, "Basic"), (5000, "Pro"))
    )

    def customer(app_id: str) -> str:
        return str(client.v1.customers.create(params={"metadata": {"app_id": app_id}}).id)

    def subscribe(customer_id: str, price: Any, quantity: int = 1) -> Any:
        return client.v1.subscriptions.create(
            params={"customer": customer_id, "items": [{"price": price.id, "quantity": quantity}]}
        )

    def set_quantity(subscription: Any, quantity: int) -> None:
        item = subscription["items"].data[0].id
        client.v1.subscriptions.update(
            subscription.id, params={"items": [{"id": item, "quantity": quantity}]}
        )

    movements: list[tuple[int, str, int]] = []  # (when, movement, amount): what the story does
    ada, bob, cy = customer("ada"), customer("bob"), customer("cy")
    ada_sub = subscribe(ada, pro)
    movements.append((_latest_event_time(client, "customer.subscription.created"), "new", 5000))
    bob_sub = subscribe(bob, basic)
    movements.append((_latest_event_time(client, "customer.subscription.created"), "new", 2000))
    _flush(stack)

    sandbox(stack, "clock/advance", {"seconds": 35 * DAY})
    set_quantity(ada_sub, 2)
    movements.append((_latest_event_time(client, "customer.subscription.updated"), "expansion", 5000))
    client.v1.subscriptions.cancel(bob_sub.id)
    movements.append((_latest_event_time(client, "customer.subscription.deleted"), "churn", 2000))
    cy_sub = subscribe(cy, basic, quantity=3)
    movements.append((_latest_event_time(client, "customer.subscription.created"), "new", 6000))
    _flush(stack)

    sandbox(stack, "clock/advance", {"seconds": 35 * DAY})
    subscribe(bob, basic)
    movements.append((_latest_event_time(client, "customer.subscription.created"), "reactivation", 2000))
    set_quantity(cy_sub, 1)
    movements.append((_latest_event_time(client, "customer.subscription.updated"), "contraction", 4000))
    _flush(stack)

    first, last = _month(movements[0][0]), _month(movements[-1][0])
    status, report = stack.admin("GET", f"/tenants/{TENANT}/revenue?from={first}&to={last}")
    assert status == 200, report
    assert report["currency"] == "usd"
    expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for at, kind, amount in movements:
        expected[_month(at)][kind] += amount
    mrr = 0
    for month in report["months"]:
        moved = expected.get(month["month"], {})
        for kind in ("new", "expansion", "reactivation", "contraction", "churn"):
            assert month[kind] == moved.get(kind, 0), (month, moved)
        assert month["mrr_start"] == mrr
        mrr += sum(moved.get(k, 0) for k in ("new", "expansion", "reactivation"))
        mrr -= sum(moved.get(k, 0) for k in ("contraction", "churn"))
        assert month["mrr_end"] == mrr
    assert report["months"][-1]["mrr_end"] == 10000 + 2000 + 2000
    assert report["months"][-1]["customers_end"] == 3

    status, bob_history = stack.admin("GET", f"/tenants/{TENANT}/customers/bob/history")
    assert status == 200
    assert [(p["movement"], p["amount"]) for p in bob_history["points"]] == [
        ("new", 2000),
        ("churn", 2000),
        ("reactivation", 2000),
    ]
    assert [p["at"] for p in bob_history["points"]] == [movements[1][0], movements[3][0], movements[5][0]]

    # The feed: one event per record change, each movement of the story among them exactly once.
    assert stack.names is not None
    feed = read_change_feed(boto3.session.Session(region_name=REGION), stack.aws_url, stack.names)
    feed_moves = sorted(
        (e["detail"]["movement"], e["detail"]["mrr"]["after"] - e["detail"]["mrr"]["before"])
        for e in feed
        if e["detail-type"] == "Customer Record Changed" and e["detail"]["movement"]
    )
    signed = {"churn": -1, "contraction": -1}
    assert feed_moves == sorted((kind, signed.get(kind, 1) * amount) for _, kind, amount in movements)
    assert all(e["detail"]["tenant_id"] == TENANT for e in feed)
