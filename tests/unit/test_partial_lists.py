"""Lists Stripe embeds only a first page of: a subscription's items and an invoice's lines."""

from __future__ import annotations

import json
from typing import Any

from revsync.domain.events import observation_of, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import SyncResult, apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

T0 = 1_760_000_000


def _send(
    kind: str, obj: dict[str, Any], at: int, env: tuple[FakeTenants, FakeCustomers, FakeStripe]
) -> SyncResult:
    observation = observation_of(parse_event(json.dumps(S.event(kind, obj, created=at)).encode()))
    assert observation is not None
    tenants, customers, stripe = env
    return apply_observation("acme", observation, tenants=tenants, customers=customers, stripe=stripe)


def _env(objects: dict[str, Any]) -> tuple[FakeTenants, FakeCustomers, FakeStripe]:
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    return FakeTenants({"acme": tenant}), FakeCustomers(), FakeStripe(objects=objects)


def test_a_subscription_with_more_items_than_its_payload_counts_them_all() -> None:
    """Regression: MRR was computed from the first page only (20,000 instead of 24,000)."""
    items = [S.subscription_item(S.price(2000), subscription="sub_big") for _ in range(12)]
    full = S.subscription("cus_1", items, id="sub_big", status="active")
    webhook = {**full, "items": {**full["items"], "data": items[:10], "has_more": True}}
    env = _env({"sub_big": full})

    assert _send("customer.subscription.created", webhook, T0, env).outcome == "applied"

    assert env[2].fetches == ["items:sub_big"]
    record = env[1].records[("acme", "cus_1")]
    assert record["mrr"] == 24000
    assert record["subscriptions"]["sub_big"]["mrr"] == 24000


def test_a_paid_invoice_with_more_lines_reads_them_for_the_renewal_date() -> None:
    sub = S.subscription("cus_1", id="sub_1", status="active", period_end=T0 + 100)
    invoice = S.invoice("cus_1", "sub_1", amount_paid=500, paid_at=T0, period_end=T0 + 100)
    later_line = {**invoice["lines"]["data"][0], "id": "il_later", "period": {"start": T0, "end": T0 + 9000}}
    full = {**invoice, "lines": {**invoice["lines"], "data": [*invoice["lines"]["data"], later_line]}}
    webhook = {**invoice, "lines": {**invoice["lines"], "has_more": True}}
    env = _env({invoice["id"]: full})

    _send("customer.subscription.created", sub, T0 - 10, env)
    _send("invoice.paid", webhook, T0, env)
    assert env[2].fetches == [f"lines:{invoice['id']}"]
    assert env[1].records[("acme", "cus_1")]["next_renewal_at"] == T0 + 9000
    # The same invoice again (payment_succeeded): already stored, no second read.
    _send("invoice.payment_succeeded", webhook, T0, env)
    assert env[2].fetches == [f"lines:{invoice['id']}"]


def test_a_finalized_invoice_with_more_lines_reads_them_once_for_its_usage() -> None:
    """Usage lines past the webhook's first page count too (``metered: last_invoice``): read when the
    invoice is first seen, and again only when it is first paid (for its subscription lines)."""
    metered = {**S.subscription_item(S.price(25, usage_type="metered", id="price_calls")), "id": "si_2"}
    licensed = {**S.subscription_item(S.price(4900, id="price_pro")), "id": "si_1"}
    sub = S.subscription("cus_1", [licensed, metered], id="sub_1", status="active", period_end=T0 + 100)
    invoice = S.invoice("cus_1", "sub_1", id="in_1", status="open", amount_paid=0)
    invoice["status_transitions"]["finalized_at"] = T0
    usage_line = {
        **invoice["lines"]["data"][0],
        "id": "il_usage",
        "amount": 1250,
        "subtotal": 1250,
        "price": metered["price"],
        "plan": None,
    }
    full = {**invoice, "lines": {**invoice["lines"], "data": [*invoice["lines"]["data"], usage_line]}}
    webhook = {**invoice, "lines": {**invoice["lines"], "has_more": True}}
    env = _env({"in_1": full})

    _send("customer.subscription.created", sub, T0 - 10, env)
    _send("invoice.finalized", webhook, T0, env)
    assert env[2].fetches == ["lines:in_1"]
    usage = env[1].load("acme", "cus_1").objects.usage
    assert [line["amount"] for line in usage["sub_1"]["in_1"]["lines"]] == [1250]
    # Paid: its subscription lines are read (a renewal date); after that, nothing is read again.
    paid = {**webhook, "status": "paid", "amount_paid": 6150}
    paid["status_transitions"] = {**invoice["status_transitions"], "paid_at": T0 + 5}
    env[2].objects["in_1"] = {**full, "status": "paid"}
    _send("invoice.paid", paid, T0 + 5, env)
    _send("invoice.payment_succeeded", paid, T0 + 5, env)
    _send("invoice.finalized", webhook, T0, env)
    assert env[2].fetches == ["lines:in_1", "lines:in_1"]
    assert env[1].load("acme", "cus_1").objects.usage["sub_1"]["in_1"]["status"] == "paid"
