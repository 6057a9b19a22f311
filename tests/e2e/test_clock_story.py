"""A customer's life on one of Stripe's test clocks, through the whole local stack: a trial, its end,
two renewals, a failed renewal retried by dunning, a credit note and a refund after paid invoices,
a cancellation at period end. Webhooks come duplicated and reordered. The record, the customer's
history and the revenue months must equal what the sandbox's own objects imply, read back through
the stripe SDK and worked out here under docs/contracts.md's rules (not revsync's code)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from local.http import http
from local.stack import LocalStack
from local.truth import expected_record
from tests.e2e.test_backfill import wait_backfill
from tests.e2e.test_local_stack import connect_tenant, sandbox

pytestmark = pytest.mark.e2e
DAY = 86_400
TENANT = "e2e-clock"
START = 1767225600  # the clock's frozen time: 2026-01-01, months before the sandbox's own clock
MONTHS = {"month": 1, "year": 12}


def _month(at: int) -> str:
    return time.strftime("%Y-%m", time.gmtime(at))


def _months(first: str, last: str) -> list[str]:
    year, month = map(int, first.split("-"))
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _flush(stack: LocalStack) -> None:
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True


def _advance(stack: LocalStack, client: stripe.StripeClient, clock: Any, days: int) -> Any:
    """Advance the clock as a Stripe user does, its webhooks handled before the next step (a read
    from Stripe settling a same-second tie is stamped with the clock's time: made while the clock
    stands still, it shows the object as of that time)."""
    _flush(stack)
    target = clock.frozen_time + days * DAY
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": target})
    clock = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert (clock.status, clock.frozen_time) == ("ready", target)
    _flush(stack)
    return clock


def monthly_value(subscription: Any) -> int:
    """Per-unit monthly or yearly prices, no discounts: what this story uses (minor units)."""
    total = 0.0
    for item in subscription["items"].data:
        recurring = item.price.recurring
        months = MONTHS[recurring.interval] * recurring.interval_count
        total += item.price.unit_amount * item.quantity / months
    return int(total + 0.5)


def test_a_test_clock_customer_from_trial_to_cancellation_with_a_refund_and_a_credit_note(
    local_stack: LocalStack,
) -> None:
    stack = local_stack
    client, _ = connect_tenant(stack, TENANT)
    assert wait_backfill(stack, TENANT)["state"] == "succeeded"
    sandbox(stack, "config", {"delivery_duplicate_ratio": 0.5, "delivery_reorder": True})
    try:
        clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START, "name": "story"})
        price = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 3000,
                "recurring": {"interval": "month"},
                "product_data": {"name": "Team"},
            }
        )
        customer: Any = client.v1.customers.create(
            params={
                "test_clock": clock.id,
                "metadata": {"app_id": "clock-ada"},
                "payment_method": "pm_card_visa",
                "invoice_settings": {"default_payment_method": "pm_card_visa"},
            }
        )
        good_card = customer.invoice_settings.default_payment_method
        assert good_card is not None
        subscription = client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 14}
        )
        assert subscription.status == "trialing"

        clock = _advance(stack, client, clock, 15)  # the trial ends: the first invoice, paid
        clock = _advance(stack, client, clock, 30)  # first renewal
        clock = _advance(stack, client, clock, 30)  # second renewal
        paid: list[Any] = client.v1.invoices.list(params={"customer": customer.id, "status": "paid"}).data
        assert len(paid) == 3
        first, second = sorted(paid, key=lambda i: i.created)[:2]
        # Money back after paid invoices: a credit note refunded on the second invoice's charge, a
        # credit note to the balance on it, and a refund of part of the first invoice's charge.
        client.v1.credit_notes.create(params={"invoice": second.id, "amount": 1000, "refund_amount": 1000})
        client.v1.credit_notes.create(params={"invoice": second.id, "amount": 700, "credit_amount": 700})
        client.v1.refunds.create(
            params={"payment_intent": first.payments.data[0].payment.payment_intent, "amount": 500}
        )

        # The card starts failing: the third renewal fails, the subscription goes past due; back on
        # the good card, dunning's first retry (3 days later) pays it.
        failing = client.v1.payment_methods.attach(
            "pm_card_chargeCustomerFail", params={"customer": customer.id}
        )
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
        )
        clock = _advance(stack, client, clock, 30)
        assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
        client.v1.customers.update(
            customer.id, params={"invoice_settings": {"default_payment_method": good_card}}
        )
        clock = _advance(stack, client, clock, 4)
        assert client.v1.subscriptions.retrieve(subscription.id).status == "active"

        client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})
        clock = _advance(stack, client, clock, 30)  # past the period's end: canceled
    finally:
        sandbox(stack, "config", {"delivery_duplicate_ratio": 0.0, "delivery_reorder": False})
    _flush(stack)

    # What the sandbox's objects say. Stripe lists a clock's subscriptions only when asked.
    assert client.v1.subscriptions.list(params={"status": "all"}).data == []
    [ended] = client.v1.subscriptions.list(params={"test_clock": clock.id, "status": "all"}).data
    assert (ended.status, ended.ended_at is None, ended.trial_end is None) == ("canceled", False, False)
    value = monthly_value(ended)
    want = expected_record(client, customer.id)  # mrr, trialing, churned, what was paid and given back
    assert want["total_refunded"] == 2200  # the story's own sum: the oracle read every object
    live = ("trialing", "active", "past_due", "unpaid", "paused")

    status, record = stack.admin("GET", f"/tenants/{TENANT}/customers/clock-ada")
    assert status == 200, record
    assert {k: record[k] for k in (*want, "trial_end", "churned_at", "next_renewal_at")} == {
        **want,
        "trial_end": ended.trial_end if ended.status == "trialing" else None,
        "churned_at": ended.ended_at if want["churned"] else None,
        "next_renewal_at": (
            min(i.current_period_end for i in ended["items"].data) if ended.status in live else None
        ),
    }
    assert want["churned"] is True
    [(sub_id, sub)] = record["subscriptions"].items()
    assert sub_id == ended.id
    assert (sub["status"], sub["mrr"], sub["trial_end"]) == (ended.status, 0, ended.trial_end)
    assert record["traits"]["stripe.net_paid"] == want["net_paid"]

    # The history: MRR from the trial's end (a trial counts 0) to the cancellation; a past-due
    # subscription still counts, so the failed renewal moves nothing.
    status, history = stack.admin("GET", f"/tenants/{TENANT}/customers/clock-ada/history")
    assert status == 200, history
    expected_points: list[dict[str, Any]] = [
        {"at": ended.trial_end, "mrr": value, "movement": "new", "amount": value},
        {"at": ended.ended_at, "mrr": 0, "movement": "churn", "amount": value},
    ]
    assert (history["currency"], history["points"]) == ("usd", expected_points)

    first_month, last_month = _month(START), _month(clock.frozen_time)
    status, report = stack.admin("GET", f"/tenants/{TENANT}/revenue?from={first_month}&to={last_month}")
    assert status == 200, report
    expected_months = []
    mrr = 0
    for month in _months(first_month, last_month):
        moves = {"new": 0, "expansion": 0, "reactivation": 0, "contraction": 0, "churn": 0}
        for point in expected_points:
            if _month(point["at"]) == month:
                moves[point["movement"]] += point["amount"]
        start, mrr = mrr, mrr + moves["new"] - moves["churn"]
        expected_months.append(
            {
                "month": month,
                "mrr_start": start,
                **moves,
                "mrr_end": mrr,
                "customers_start": int(start > 0),
                "customers_end": int(mrr > 0),
            }
        )
    assert report["currency"] == "usd"
    assert report["months"] == expected_months
