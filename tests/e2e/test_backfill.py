"""The backfill through the real state machine (moto's interpreter) against the Stripe sandbox."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from revsync.domain.backfill import START_EVENTS, round_events
from revsync.infra import aws
from revsync.store.customers import CustomerStore

from local.http import http
from local.stack import LocalStack
from local.truth import expected_record
from tests.e2e.conftest import free_ports

pytestmark = pytest.mark.e2e
NO_REFUNDS = {"credit_notes": 0, "refunds": 0}  # the backfill lists them too: none in these accounts
DAY = 86_400


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(ports=free_ports()) as running:
        yield running


def tenant(stack: LocalStack, tenant_id: str) -> tuple[stripe.StripeClient, str]:
    """An API-key tenant with no webhook endpoint: whatever it gets comes from the backfill."""
    key = f"rk_test_{secrets.token_hex(12)}"
    assert (
        stack.admin(
            "PUT",
            f"/tenants/{tenant_id}/stripe/connection",
            {"api_key": key, "webhook_secret": f"whsec_{secrets.token_hex(8)}"},
        )[0]
        == 200
    )
    return stripe.StripeClient(key, base_addresses={"api": stack.stripe_url}), key


def configure_and_wait(stack: LocalStack, tenant_id: str, timeout: float = 120) -> dict[str, Any]:
    status, body = stack.admin(
        "PUT", f"/tenants/{tenant_id}/stripe/config", {"customer_id_trait": "metadata.app_id"}
    )
    assert status == 200, body
    assert body["backfill"]["execution"], body
    return wait_backfill(stack, tenant_id, timeout)


def wait_backfill(stack: LocalStack, tenant_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill: dict[str, Any] = stack.admin("GET", f"/tenants/{tenant_id}/stripe")[1]["backfill"]
        if backfill["state"] in ("succeeded", "failed"):
            return backfill
        time.sleep(0.2)
    raise AssertionError(f"backfill of {tenant_id} did not finish")


def requests_of(stack: LocalStack, key: str) -> dict[str, int]:
    account = (
        stripe.StripeClient(key, base_addresses={"api": stack.stripe_url}).v1.accounts.retrieve_current().id
    )
    stats = http("GET", f"{stack.stripe_url}/_sandbox/stats")[1]["requests"]
    return {k.split(" ", 1)[1]: v for k, v in stats.items() if k.startswith(f"{account} ")}


def test_mixed_states_import_to_exactly_the_records_the_rules_give(stack: LocalStack) -> None:
    client, key = tenant(stack, "bf-mixed")

    def price(amount: int, interval: str = "month") -> Any:
        return client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": interval},
                "product_data": {"name": "P"},
            }
        )

    basic, pro, yearly = price(2000), price(5000), price(60000, "year")
    quarter = client.v1.coupons.create(params={"percent_off": 25, "duration": "forever"})
    ids: dict[str, str] = {}

    def customer(name: str, trait: bool = True, **extra: Any) -> str:
        params: Any = {
            "email": f"{name}@example.com",
            "metadata": {"app_id": f"u-{name}"} if trait else {},
            **extra,
        }
        ids[name] = client.v1.customers.create(params=params).id
        return ids[name]

    def subscribe(customer_id: str, *prices: Any, **extra: Any) -> Any:
        params: Any = {
            "customer": customer_id,
            "items": [{"price": p.id, "quantity": 2 if p is pro else 1} for p in prices],
            **extra,
        }
        return client.v1.subscriptions.create(params=params)

    subscribe(customer("trialing"), basic, trial_period_days=30)
    subscribe(customer("two-subs"), basic)
    subscribe(ids["two-subs"], pro)
    failing = customer("past-due")
    http(
        "POST",
        f"{stack.stripe_url}/_sandbox/customers/{failing}/payment_failure",
        {"failing": True},
        {"Authorization": f"Bearer {key}"},
    )
    subscribe(failing, pro)
    client.v1.subscriptions.cancel(subscribe(customer("canceled"), basic).id)
    subscribe(customer("deleted"), pro)
    client.v1.customers.delete(ids["deleted"])
    subscribe(customer("no-trait", trait=False), basic)
    discounted = customer("discounted")
    http(  # a customer-level coupon: the sandbox's control route (Stripe's API no longer takes one)
        "POST",
        f"{stack.stripe_url}/_sandbox/customers/{discounted}/discount",
        {"coupon": quarter.id},
        {"Authorization": f"Bearer {key}"},
    )
    subscribe(discounted, yearly, discounts=[{"coupon": quarter.id}])
    client.v1.subscriptions.update(
        subscribe(customer("leaving"), pro).id, params={"cancel_at_period_end": True}
    )

    backfill = configure_and_wait(stack, "bf-mixed")

    assert backfill["state"] == "succeeded", backfill
    # Invoices of every status: seven paid, and the past-due customer's, whose payment failed.
    assert backfill["counts"] == {"customers": 7, "subscriptions": 9, "invoices": 8, **NO_REFUNDS}, backfill
    for name, customer_id in ids.items():
        external_id = f"u-{name}" if name not in ("no-trait", "deleted") else f"stripe:{customer_id}"
        status, record = stack.admin("GET", f"/tenants/bf-mixed/customers/{external_id}")
        assert status == 200, (name, record)
        want = expected_record(client, customer_id)
        assert {k: record[k] for k in want} == want, name
    past_due = stack.admin("GET", "/tenants/bf-mixed/customers/u-past-due")[1]
    assert past_due["mrr"] == 10000  # past_due still counts
    # Its failed payment imported for risk signals, as a webhook would have brought it.
    failed = CustomerStore().load("bf-mixed", ids["past-due"]).objects.failed_invoices
    assert [(f["status"], f["attempt_count"]) for f in failed.values()] == [("open", 1)]
    deleted = stack.admin("GET", f"/tenants/bf-mixed/customers/stripe:{ids['deleted']}")[1]
    assert (deleted["deleted_in_stripe"], deleted["matched"], deleted["mrr"]) == (True, False, 0)


def test_interrupted_execution_resumes_and_counts_nothing_twice(stack: LocalStack) -> None:
    _, key = tenant(stack, "bf-resume")
    count = 250
    assert (
        http(
            "POST",
            f"{stack.stripe_url}/_sandbox/seed",
            {"customers": count},
            {"Authorization": f"Bearer {key}"},
        )[0]
        == 200
    )
    # An outage in the middle: three answers in a row fail, more than the SDK's own two retries.
    http("POST", f"{stack.stripe_url}/_sandbox/config", {"fail_next_requests": 3})
    backfill = configure_and_wait(stack, "bf-resume")
    assert http("GET", f"{stack.stripe_url}/_sandbox/config")[1]["fail_next_requests"] == 0
    stats = http("GET", f"{stack.stripe_url}/_sandbox/stats")[1]["requests"]
    assert stats.get("outage 500", 0) >= 3
    assert backfill["state"] == "succeeded", backfill
    assert backfill["counts"] == {"customers": count, "subscriptions": count, "invoices": count, **NO_REFUNDS}
    for index in range(0, count, 25):
        record = stack.admin("GET", f"/tenants/bf-resume/customers/seed-{index}")[1]
        assert (record["mrr"], record["total_paid"], record["churned"]) == (1000, 1000, False), index


def _listed(requests: dict[str, int]) -> int:
    """The list requests Stripe served (less the key check's customer list)."""
    lists = ("subscriptions", "invoices", "credit_notes", "refunds")
    return requests["GET /v1/customers"] - 1 + sum(requests.get(f"GET /v1/{name}", 0) for name in lists)


def _minimum(count: int) -> int:
    """Pages of 100 of ``count`` customers, subscriptions and invoices, one (empty) page each of
    credit notes and refunds."""
    return 3 * math.ceil(count / 100) + 2


def test_rate_limited_import_fails_no_request_and_lists_the_minimum(stack: LocalStack) -> None:
    _, key = tenant(stack, "bf-rate")
    count = 220
    http(
        "POST", f"{stack.stripe_url}/_sandbox/seed", {"customers": count}, {"Authorization": f"Bearer {key}"}
    )
    http("POST", f"{stack.stripe_url}/_sandbox/config", {"rate_limit_per_second": 25})
    try:
        backfill = configure_and_wait(stack, "bf-rate")
    finally:
        http("POST", f"{stack.stripe_url}/_sandbox/config", {"rate_limit_per_second": None})
    assert backfill["state"] == "succeeded", backfill
    requests = requests_of(stack, key)
    assert requests.get("429", 0) == 0
    listed = _listed(requests)
    assert listed == backfill["requests"]  # what revsync counted is what Stripe served (less the key check)
    # The minimum for pages of 100, plus at most one (empty or partial) page per cursor walk.
    minimum = _minimum(count)
    assert minimum <= backfill["requests"] <= minimum + backfill["walks"], backfill


def test_admin_trigger_is_202_then_409_while_running(stack: LocalStack) -> None:
    _, key = tenant(stack, "bf-trigger")
    assert stack.admin("POST", "/tenants/bf-trigger/stripe/backfill")[1]["error"] == "not_configured"
    http("POST", f"{stack.stripe_url}/_sandbox/seed", {"customers": 150}, {"Authorization": f"Bearer {key}"})
    http(
        "POST", f"{stack.stripe_url}/_sandbox/config", {"latency_ms": 30}
    )  # keep the first run going a while
    try:
        configure = stack.admin(
            "PUT",
            "/tenants/bf-trigger/stripe/config",
            {"customer_id_trait": "metadata.app_id"},
        )
        assert configure[0] == 200
        status, body = stack.admin("POST", "/tenants/bf-trigger/stripe/backfill")
        assert (status, body["error"]) == (409, "backfill_running")
        assert wait_backfill(stack, "bf-trigger")["state"] == "succeeded"
    finally:
        http("POST", f"{stack.stripe_url}/_sandbox/config", {"latency_ms": 0})
    status, body = stack.admin("POST", "/tenants/bf-trigger/stripe/backfill")
    assert status == 202
    assert body["execution"].startswith("arn:aws:states:")
    assert wait_backfill(stack, "bf-trigger")["counts"] == {
        "customers": 150,
        "subscriptions": 150,
        "invoices": 150,
        **NO_REFUNDS,
    }


def test_changing_the_trait_rekeys_existing_records_through_the_backfill(stack: LocalStack) -> None:
    _, key = tenant(stack, "bf-rekey")
    http("POST", f"{stack.stripe_url}/_sandbox/seed", {"customers": 30}, {"Authorization": f"Bearer {key}"})
    assert configure_and_wait(stack, "bf-rekey")["state"] == "succeeded"
    assert stack.admin("GET", "/tenants/bf-rekey/customers/seed-7")[0] == 200

    status, body = stack.admin("PUT", "/tenants/bf-rekey/stripe/config", {"customer_id_trait": "email"})
    assert (status, body["config"]["customer_id_trait"]) == (200, "email")
    assert wait_backfill(stack, "bf-rekey")["state"] == "succeeded"

    moved = stack.admin("GET", "/tenants/bf-rekey/customers/seed7@example.com")
    assert moved[0] == 200
    assert (moved[1]["matched"], moved[1]["mrr"], moved[1]["total_paid"]) == (True, 1000, 1000)
    assert stack.admin("GET", "/tenants/bf-rekey/customers/seed-7")[0] == 404


def test_a_run_near_its_history_budget_continues_in_new_executions(
    stack: LocalStack,
) -> None:
    """On moto's interpreter: the Continue step starts the next execution (from the execution's own
    context), which resumes the kept run; every object is imported once, and no execution's history
    passes the budget (each round's events as ``round_events`` counts them)."""
    _, key = tenant(stack, "bf-continue")
    count = 250
    http(
        "POST", f"{stack.stripe_url}/_sandbox/seed", {"customers": count}, {"Authorization": f"Bearer {key}"}
    )
    budget = START_EVENTS + round_events(3) + 1  # one round an execution
    # A page a step: the account's pages take several rounds (its walks, too short to split above
    # the account's start, would otherwise end in the first). The handlers run in this process: the
    # importer starts again with the variables set.
    pages_per_step = 1
    stack.wire(
        "ImporterFunction",
        {"BACKFILL_HISTORY_BUDGET": str(budget), "BACKFILL_PAGES_PER_STEP": str(pages_per_step)},
    )
    try:
        backfill = configure_and_wait(stack, "bf-continue", timeout=240)
    finally:
        stack.unwire("ImporterFunction")
    assert backfill["state"] == "succeeded", backfill
    assert backfill["counts"] == {"customers": count, "subscriptions": count, "invoices": count, **NO_REFUNDS}
    client = aws.stepfunctions()
    state_machine = stack.graph("TenantApiFunction").settings.backfill_state_machine_arn
    executions = client.list_executions(stateMachineArn=state_machine)["executions"]
    mine = [e for e in executions if e["name"].startswith("bf-continue-")]
    assert len(mine) >= 2, [e["name"] for e in mine]
    assert {e["status"] for e in mine} == {"SUCCEEDED"}
    failed_steps = 0
    for execution in mine:
        history = client.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
        # The budget, a round that could be larger than the one planned for, and the way out.
        assert len(history["events"]) <= budget + round_events(40), execution["name"]
        failed_steps += sum(1 for event in history["events"] if event["type"].endswith("Failed"))
    requests = requests_of(stack, key)
    minimum = _minimum(count)
    listed = _listed(requests)
    # No page read twice across executions. A step that failed (moto answering slowly on a loaded
    # machine: its retry goes on from the step's first cursor) may have read its pages once more.
    retried_pages = failed_steps * pages_per_step
    assert minimum <= listed <= minimum + backfill["walks"] + retried_pages
