"""Missed events on the whole local stack: webhooks dropped by the Stripe sandbox (their events stay
listable), then caught up from the Events API by `POST /tenants/{id}/stripe/reconcile`: the route
queues the tenant's catch-up job, which the local stack's catch-up queue poller runs as Lambda's
event source mapping would."""

from __future__ import annotations

import random
from typing import Any

import pytest
import stripe

from local.http import http
from local.stack import LocalStack
from local.truth import expected_record
from tests.e2e.test_local_stack import connect_tenant, sandbox

pytestmark = pytest.mark.e2e

DAY = 86_400
CHECKED = ("mrr", "trialing", "churned", "deleted_in_stripe", "total_paid", "last_payment_at")


def _reconcile(stack: LocalStack, tenant_id: str) -> dict[str, Any]:
    """Queue the tenant's catch-up and wait for the stack's catch-up queue to run it (and any
    continuation): what it recovered, from the status document."""
    before = stack.admin("GET", f"/tenants/{tenant_id}/stripe")[1]["events"]
    status, answer = stack.admin("POST", f"/tenants/{tenant_id}/stripe/reconcile")
    assert status == 202, answer
    assert answer["reconcile"]["state"] == "queued"
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    after = stack.admin("GET", f"/tenants/{tenant_id}/stripe")[1]["events"]
    assert after["pending"] is None  # listed to its end
    assert after["last_reconciled_at"] is not None
    assert after["last_reconciled_at"] != before["last_reconciled_at"] or before["last_reconciled_at"] is None
    return {"recovered": after["recovered"] - before["recovered"]}


def _mismatches(
    stack: LocalStack, tenant_id: str, client: stripe.StripeClient, ids: dict[str, str]
) -> list[str]:
    wrong = []
    for name, customer_id in ids.items():
        status, record = stack.admin("GET", f"/tenants/{tenant_id}/customers/u-{name}")
        want = expected_record(client, customer_id)
        if status != 200 or {k: record[k] for k in CHECKED} != {k: want[k] for k in CHECKED}:
            wrong.append(name)
    return wrong


def _month_of_changes(
    client: stripe.StripeClient, count: int, rng: random.Random, prefix: str = "c"
) -> dict[str, str]:
    prices = [
        client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": "month"},
                "product_data": {"name": f"Plan {amount}"},
            }
        )
        for amount in (1500, 4000, 9000)
    ]
    ids: dict[str, str] = {}
    for n in range(count):
        name = f"{prefix}{n}"
        ids[name] = client.v1.customers.create(
            params={"email": f"{name}@example.com", "metadata": {"app_id": f"u-{name}"}}
        ).id
        sub = client.v1.subscriptions.create(
            params={
                "customer": ids[name],
                "items": [{"price": rng.choice(prices).id, "quantity": rng.randint(1, 3)}],
            }
        )
        roll = rng.random()
        if roll < 0.2:
            client.v1.subscriptions.update(
                sub.id,
                params={"items": [{"id": sub["items"].data[0].id, "price": prices[2].id, "quantity": 2}]},
            )
        elif roll < 0.3:
            client.v1.subscriptions.cancel(sub.id)
        elif roll < 0.4:
            client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
        elif roll < 0.45:
            client.v1.customers.delete(ids[name])
    return ids


def test_dropped_webhooks_of_a_month_for_50_customers_are_recovered_by_one_reconcile(
    local_stack: LocalStack,
) -> None:
    stack = local_stack
    client, _ = connect_tenant(stack, "e2e-missed")
    sandbox(stack, "config", {"delivery_drop_ratio": 0.3})
    try:
        ids = _month_of_changes(client, 50, random.Random(11))
        sandbox(stack, "clock/advance", {"seconds": 31 * DAY})  # renewals billed, period ends
        # Later deliveries often heal a random drop; these last changes are lost for certain.
        sandbox(stack, "config", {"delivery_drop_ratio": 1.0})
        for name in ("c1", "c2", "c3"):
            for sub in client.v1.subscriptions.list(params={"customer": ids[name]}).data:
                item = sub["items"].data[0]
                client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 7}]})
    finally:
        sandbox(stack, "config", {"delivery_drop_ratio": 0.0})
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    dropped = http("GET", f"{stack.stripe_url}/_sandbox/stats")[1]["deliveries dropped"]
    assert dropped > 20
    assert _mismatches(stack, "e2e-missed", client, ids)  # the drops left records wrong
    # Stripe's test-mode rate limit, which the account's request budget is set to: no 429 storm.
    sandbox(stack, "config", {"rate_limit_per_second": 25})
    try:
        report = _reconcile(stack, "e2e-missed")
    finally:
        sandbox(stack, "config", {"rate_limit_per_second": None})
    account = client.v1.accounts.retrieve_current().id
    assert http("GET", f"{stack.stripe_url}/_sandbox/stats")[1]["requests"].get(f"{account} 429", 0) == 0

    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    assert report["recovered"] > 0
    assert _mismatches(stack, "e2e-missed", client, ids) == []
    status = stack.admin("GET", "/tenants/e2e-missed/stripe")[1]
    assert status["events"]["recovered"] == report["recovered"]
    assert status["events"]["last_reconciled_at"] is not None
    assert status["events"]["backfill_needed"] is False

    # Twice changes nothing and counts nothing twice.
    totals = {n: stack.admin("GET", f"/tenants/e2e-missed/customers/u-{n}")[1]["total_paid"] for n in ids}
    again = _reconcile(stack, "e2e-missed")
    assert again["recovered"] == 0
    assert {
        n: stack.admin("GET", f"/tenants/e2e-missed/customers/u-{n}")[1]["total_paid"] for n in ids
    } == totals


def test_changes_made_while_a_connection_was_revoked_are_recovered_once_it_is_restored(
    local_stack: LocalStack,
) -> None:
    stack = local_stack
    client, secret = connect_tenant(stack, "e2e-revoked")
    ids = _month_of_changes(client, 5, random.Random(12))
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    _reconcile(stack, "e2e-revoked")  # caught up: reconciled through now
    assert stack.admin("DELETE", "/tenants/e2e-revoked/stripe")[0] == 200
    sandbox(stack, "clock/advance", {"seconds": 31 * DAY})  # renewals while disconnected (dropped)
    more = _month_of_changes(client, 3, random.Random(13), prefix="later")
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    assert _mismatches(stack, "e2e-revoked", client, {**ids, **more})
    key = client._requestor.api_key
    assert (
        stack.admin(
            "PUT",
            "/tenants/e2e-revoked/stripe/connection",
            {"api_key": key, "webhook_secret": secret},
        )[0]
        == 200
    )

    report = _reconcile(stack, "e2e-revoked")

    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    assert report["recovered"] > 0
    assert _mismatches(stack, "e2e-revoked", client, {**ids, **more}) == []


def test_reconcile_is_refused_for_a_tenant_without_a_connection(local_stack: LocalStack) -> None:
    status, answer = local_stack.admin("POST", "/tenants/e2e-nobody/stripe/reconcile")
    assert (status, answer["error"]) == (409, "not_connected")


def test_the_local_schedule_queues_every_connected_tenant_and_the_poller_runs_each_job(
    local_stack: LocalStack,
) -> None:
    """The stack's schedule thread does what EventBridge Scheduler does (run here once, not waited
    for): the template's schedule input to the reconciler, which queues one job per tenant; the
    catch-up queue's poller hands each to the reconciler, as the event source mapping would."""
    stack = local_stack
    clients = {}
    for tenant_id in ("e2e-sched-a", "e2e-sched-b"):
        client, _ = connect_tenant(stack, tenant_id)
        clients[tenant_id] = client
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    sandbox(stack, "config", {"delivery_drop_ratio": 1.0})
    try:
        ids = {t: _month_of_changes(c, 3, random.Random(14), prefix=t[-1]) for t, c in clients.items()}
    finally:
        sandbox(stack, "config", {"delivery_drop_ratio": 0.0})
    before = {t: stack.admin("GET", f"/tenants/{t}/stripe")[1]["events"]["recovered"] for t in clients}

    stack.run_schedules()

    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True
    for tenant_id, client in clients.items():
        events = stack.admin("GET", f"/tenants/{tenant_id}/stripe")[1]["events"]
        assert events["recovered"] > before[tenant_id]
        assert events["pending"] is None
        assert _mismatches(stack, tenant_id, client, ids[tenant_id]) == []
