"""Every handled Stripe event type, end to end: receiver → queue → worker → record."""

from __future__ import annotations

import time
from typing import Any

import pytest
from revsync.domain.events import CONNECTION_EVENT_TYPES, HANDLED_EVENT_TYPES
from revsync.domain.risk import derive_risk

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.fakes import FakeStripe
from tests.integration.conftest import PLATFORM_SECRET, DynamoCustomers

pytestmark = pytest.mark.integration

T = int(time.time()) - 100 * 86_400
DAY = 86_400


def test_every_handled_type_reaches_the_record(
    stack: InProcessStack, connect_oauth: Any, stripe_fake: FakeStripe
) -> None:
    connect_oauth("acme", "acct_acme", trait="metadata.app_id")
    seen: set[str] = set()

    def send(kind: str, obj: dict[str, Any], at: int) -> dict[str, Any]:
        response = stack.post_webhook(S.event(kind, obj, created=at, account="acct_acme"), PLATFORM_SECRET)
        assert response.status == 200, response.body
        assert response.json() == {"received": True}, kind
        stats = stack.drain()
        assert stats.failed == 0
        seen.add(kind)
        record = stack.request("GET", "/tenants/acme/customers/u-1")
        assert record.status == 200, (kind, record.body)
        return record.json()  # type: ignore[no-any-return]

    customer = S.customer("cus_1", name="Ada", metadata={"app_id": "u-1"})
    assert send("customer.created", customer, T)["traits"]["stripe.name"] == "Ada"
    assert (
        send("customer.updated", {**customer, "name": "Ada L."}, T + 1)["traits"]["stripe.name"] == "Ada L."
    )

    def subscription(status: str, **kwargs: Any) -> dict[str, Any]:
        item = {**S.subscription_item(S.price(3000), period_start=T, period_end=T + 30 * DAY), "id": "si_1"}
        return S.subscription(
            "cus_1", [item], id="sub_1", status=status, period_start=T, period_end=T + 30 * DAY, **kwargs
        )

    record = send("customer.subscription.created", subscription("trialing", trial_end=T + 14 * DAY), T + 2)
    assert (record["trialing"], record["trial_end"]) == (True, T + 14 * DAY)
    record = send(
        "customer.subscription.trial_will_end", subscription("trialing", trial_end=T + 14 * DAY), T + 3
    )
    assert record["trialing"] is True
    assert send("customer.subscription.updated", subscription("active"), T + 14 * DAY)["mrr"] == 3000
    assert send("customer.subscription.paused", subscription("paused"), T + 15 * DAY)["mrr"] == 0
    resumed = subscription("active")
    assert send("customer.subscription.resumed", resumed, T + 16 * DAY)["mrr"] == 3000

    invoice = S.invoice(
        "cus_1",
        "sub_1",
        amount_paid=3000,
        paid_at=T + 16 * DAY,
        period_end=T + 46 * DAY,
        payment_intent="pi_1",
    )
    record = send("invoice.paid", invoice, T + 16 * DAY + 1)
    assert (record["total_paid"], record["last_payment_at"], record["next_renewal_at"]) == (
        3000,
        T + 16 * DAY,
        T + 46 * DAY,
    )
    assert send("invoice.payment_succeeded", invoice, T + 16 * DAY + 1)["total_paid"] == 3000

    # 500 back: 300 refunded on the charge by a credit note, 200 credited to the balance (voided later).
    refunded = S.credit_note("cus_1", invoice["id"], amount=300, refund_amount=300, id="cn_1")
    record = send("credit_note.created", refunded, T + 16 * DAY + 2)
    assert (record["total_refunded"], record["net_paid"]) == (300, 2700)
    credited = S.credit_note("cus_1", invoice["id"], amount=200, id="cn_2")
    assert send("credit_note.created", credited, T + 16 * DAY + 3)["net_paid"] == 2500
    record = send("credit_note.updated", {**credited, "metadata": {"k": "v"}}, T + 16 * DAY + 4)
    assert record["traits"]["stripe.net_paid"] == 2500
    charge = S.charge("cus_1", amount=3000, amount_refunded=300, payment_intent="pi_1", id="ch_1")
    assert send("charge.refunded", charge, T + 16 * DAY + 5)["total_refunded"] == 500  # the same 300
    assert send("credit_note.voided", {**credited, "status": "void"}, T + 16 * DAY + 6)["net_paid"] == 2700

    # What risk signals read: kept in the customer's state (the record's risk map derives from it).
    def risk() -> dict[str, Any]:
        return dict(derive_risk(DynamoCustomers().load("acme", "cus_1").objects, "usd", T + 16 * DAY + 100))

    failing = S.invoice("cus_1", "sub_1", status="open", amount_paid=3000, id="in_failing")
    failing.update(attempt_count=1, attempted=True, next_payment_attempt=T + 20 * DAY)
    send("invoice.payment_action_required", failing, T + 16 * DAY + 99)
    send("invoice.payment_failed", failing, T + 16 * DAY + 100)
    assert (risk()["failed_payment_attempts"], risk()["amount_due"]) == (1, 3000)
    send("invoice.updated", {**failing, "attempt_count": 2}, T + 16 * DAY + 100 + 1)
    assert (risk()["failed_payment_attempts"], risk()["last_payment_failed_at"]) == (
        2,
        T + 16 * DAY + 100 + 1,
    )
    send(
        "invoice.marked_uncollectible",
        {**failing, "attempt_count": 2, "status": "uncollectible"},
        T + 16 * DAY + 100 + 2,
    )
    assert risk()["in_dunning"] is False
    voided = {**failing, "id": "in_voided", "status": "void"}
    send("invoice.payment_failed", {**voided, "status": "open"}, T + 16 * DAY + 100 + 3)
    assert risk()["failed_payment_attempts"] == 1
    send("invoice.voided", voided, T + 16 * DAY + 100 + 4)
    assert risk()["failed_payment_attempts"] == 0

    # A finalized invoice's usage lines (the policy's ``metered: last_invoice``), before any payment.
    finalized = S.invoice("cus_1", "sub_1", status="open", amount_paid=0, id="in_finalized")
    calls = S.price(10, usage_type="metered", id="price_calls")
    line = {**finalized["lines"]["data"][0], "id": "il_calls", "price": calls, "plan": None}
    finalized["lines"]["data"] = [{**line, "amount": 700, "subtotal": 700}]
    send("invoice.finalized", finalized, T + 16 * DAY + 100 + 5)
    usage = DynamoCustomers().load("acme", "cus_1").objects.usage["sub_1"]["in_finalized"]
    assert [(u["price"], u["amount"]) for u in usage["lines"]] == [("price_calls", 700)]

    price_id = resumed["items"]["data"][0]["price"]["id"]  # known: no read from Stripe
    phases = [
        S.schedule_phase(price_id, T, T + 30 * DAY),
        S.schedule_phase(price_id, T + 30 * DAY, T + 60 * DAY, quantity=3),
    ]
    schedule = S.subscription_schedule("cus_1", phases, subscription="sub_1", id="sub_sched_1")
    send("subscription_schedule.created", schedule, T + 16 * DAY + 100 + 5)
    assert (risk()["scheduled_change_at"], risk()["scheduled_mrr"]) == (T + 30 * DAY, 9000)
    assert "sub_sched_1" not in stripe_fake.fetches  # its price was the subscription's: no read
    send("subscription_schedule.updated", {**schedule, "metadata": {"k": "v"}}, T + 16 * DAY + 100 + 6)
    for ending in ("released", "canceled", "completed", "aborted"):
        status = "canceled" if ending == "aborted" else ending
        send(
            f"subscription_schedule.{ending}",
            {**schedule, "status": status, "current_phase": None},
            T + 16 * DAY + 100 + 7,
        )
        assert risk()["scheduled_change_at"] is None

    card = S.payment_method("cus_1", exp_month=1, exp_year=2000, id="pm_1")
    send(
        "customer.updated",
        {**customer, "name": "Ada L.", "invoice_settings": {"default_payment_method": "pm_1"}},
        T + 16 * DAY + 100 + 8,
    )
    send("payment_method.attached", card, T + 16 * DAY + 100 + 9)
    assert risk()["card_expires_at"] is not None  # expired long before the renewal
    send(
        "payment_method.updated",
        {**card, "card": {**card["card"], "exp_year": 2001}},
        T + 16 * DAY + 100 + 10,
    )
    send(
        "payment_method.automatically_updated",
        {**card, "card": {**card["card"], "exp_year": 2099}},
        T + 16 * DAY + 100 + 11,
    )
    assert risk()["card_expires_at"] is None  # renewed by the card network: after the renewal
    detached = {**card, "customer": None}
    response = stack.post_webhook(
        S.event(
            "payment_method.detached",
            detached,
            created=T + 16 * DAY + 100 + 12,
            account="acct_acme",
            previous_attributes={"customer": "cus_1"},
        ),
        PLATFORM_SECRET,
    )
    assert response.status == 200
    assert stack.drain().failed == 0
    seen.add("payment_method.detached")
    kept = DynamoCustomers().load("acme", "cus_1").objects.payment_methods["pm_1"]["snapshot"]
    assert kept == {**kept, "object": "payment_method", "detached": True}

    coupon = S.coupon(percent_off=50, id="co_half")
    discount = {
        **S.discount(coupon, customer="cus_1", subscription="sub_1"),
        "source": {"type": "coupon", "coupon": "co_half"},
    }
    stripe_fake.objects.update({"co_half": coupon, "sub_1": subscription("active", discounts=[discount])})
    assert send("customer.discount.created", discount, T + 17 * DAY)["mrr"] == 1500
    assert send("customer.discount.updated", discount, T + 18 * DAY)["mrr"] == 1500
    stripe_fake.objects["sub_1"] = subscription("active")
    assert send("customer.discount.deleted", discount, T + 19 * DAY)["mrr"] == 3000

    ended = subscription("canceled", canceled_at=T + 20 * DAY, ended_at=T + 20 * DAY)
    record = send("customer.subscription.deleted", ended, T + 20 * DAY)
    assert (record["churned"], record["churned_at"], record["mrr"]) == (True, T + 20 * DAY, 0)
    record = send("customer.deleted", customer, T + 21 * DAY)
    assert (record["deleted_in_stripe"], record["churned_at"]) == (True, T + 21 * DAY)

    # account.application.deauthorized is about the connection: tests/e2e/test_connect.py covers it.
    assert seen == HANDLED_EVENT_TYPES - CONNECTION_EVENT_TYPES
