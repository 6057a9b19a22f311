"""The version matrix: the same customer histories, rendered in each API version revsync claims to
read (local/stripe_versions.py, written from Stripe's changelog), give the same records."""

from __future__ import annotations

import json
from typing import Any

import pytest
from revsync.domain.events import EventError, envelope_for, observation_of, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from local.stripe_versions import CLOVER, LEGACY, SDK, VERSIONS, render
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

DAY = 86_400
T0 = 1_760_000_000
FOREVER_20 = S.coupon(percent_off=20, id="co_forever20")
REPEATING_500 = S.coupon(amount_off=500, duration="repeating", duration_in_months=3, id="co_rep500")
TIERED = S.price(
    None,
    billing_scheme="tiered",
    tiers_mode="graduated",
    tiers=[
        {"up_to": 5, "unit_amount": 1000, "flat_amount": None},
        {"up_to": None, "unit_amount": 800, "flat_amount": 500},
    ],
    id="price_tiered",
)


def _history() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Two customers' months: discounts at three levels, tiers, trials, renewals, a cancellation."""
    events: list[dict[str, Any]] = []
    objects: dict[str, dict[str, Any]] = {c["id"]: c for c in (FOREVER_20, REPEATING_500)}

    def emit(kind: str, obj: dict[str, Any], at: int) -> None:
        events.append(S.event(kind, obj, created=at, account="acct_1"))
        objects[obj["id"]] = obj

    ada = S.customer("cus_ada", email="ada@example.com", metadata={"app_id": "u-ada"})
    emit("customer.created", ada, T0)
    period = (T0, T0 + 30 * DAY)
    item = S.subscription_item(
        S.price(4000, id="price_pro"), quantity=2, period_start=period[0], period_end=period[1]
    )
    trial = S.subscription(
        "cus_ada",
        [item],
        id="sub_ada",
        status="trialing",
        created=T0,
        trial_end=T0 + 14 * DAY,
        period_start=period[0],
        period_end=period[1],
    )
    emit("customer.subscription.created", trial, T0 + 1)
    sub_discount = S.discount(FOREVER_20, customer="cus_ada", subscription="sub_ada", start=T0 + 14 * DAY)
    active = {**trial, "status": "active", "trial_end": T0 + 14 * DAY, "discounts": [sub_discount]}
    emit("customer.subscription.updated", active, T0 + 14 * DAY)
    invoice = S.invoice(
        "cus_ada",
        "sub_ada",
        amount_paid=6400,
        paid_at=T0 + 14 * DAY + 60,
        period_start=period[0],
        period_end=period[1],
    )
    emit("invoice.paid", invoice, T0 + 14 * DAY + 60)
    customer_discount = S.discount(REPEATING_500, customer="cus_ada", start=T0, end=T0 + 90 * DAY)
    emit("customer.updated", {**ada, "discount": customer_discount}, T0 + 15 * DAY)

    bob = S.customer("cus_bob", email="bob@example.com", metadata={"app_id": "u-bob"})
    emit("customer.created", bob, T0 + 2)
    item_discount = S.discount(FOREVER_20, customer="cus_bob", start=T0)
    tiered_item = S.subscription_item(
        TIERED, quantity=8, period_start=T0, period_end=T0 + 365 * DAY, discounts=[item_discount]
    )
    yearly = S.subscription(
        "cus_bob",
        [tiered_item],
        id="sub_bob",
        status="active",
        created=T0,
        period_start=T0,
        period_end=T0 + 365 * DAY,
    )
    emit("customer.subscription.created", yearly, T0 + 3)
    bob_invoice = S.invoice(
        "cus_bob", "sub_bob", amount_paid=9000, paid_at=T0 + 4, period_start=T0, period_end=T0 + 365 * DAY
    )
    emit("invoice.payment_succeeded", bob_invoice, T0 + 4)
    canceled = {**yearly, "status": "canceled", "canceled_at": T0 + 40 * DAY, "ended_at": T0 + 40 * DAY}
    emit("customer.subscription.deleted", canceled, T0 + 40 * DAY)
    return events, objects


def _records(version: str) -> dict[tuple[str, str], dict[str, Any]]:
    events, objects = _history()
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("metadata.app_id")
    tenants, customers = FakeTenants({"acme": tenant}), FakeCustomers()
    stripe = FakeStripe(objects=render(objects, version))
    for event in render(events, version):
        observation = observation_of(parse_event(json.dumps(event).encode()))
        assert observation is not None
        result = apply_observation(
            "acme",
            observation,
            tenants=tenants,
            customers=customers,
            stripe=stripe,
            clock=lambda: T0 + 100 * DAY,
        )
        assert result.outcome in ("applied", "unchanged"), (version, event["type"], result)
    return {
        key: {k: v for k, v in record.items() if k != "revsync_version"}
        for key, record in customers.records.items()
    }


def test_the_renderings_really_differ_between_versions() -> None:
    """Guard: the matrix below proves something only if the payloads differ by version."""
    events, _ = _history()
    sub_event = next(e for e in events if e["type"] == "customer.subscription.updated")
    legacy, clover = render(sub_event, LEGACY)["data"]["object"], render(sub_event, CLOVER)["data"]["object"]
    assert "current_period_end" in legacy
    assert "current_period_end" not in clover
    assert "current_period_end" in clover["items"]["data"][0]
    assert "current_period_end" not in legacy["items"]["data"][0]
    assert isinstance(legacy["discounts"][0]["coupon"], dict)
    assert "coupon" not in clover["discounts"][0]
    assert clover["discounts"][0]["source"] == {"type": "coupon", "coupon": "co_forever20"}
    paid = next(e for e in events if e["type"] == "invoice.paid")
    assert render(paid, LEGACY)["data"]["object"]["subscription"] == "sub_ada"
    assert "subscription" not in render(paid, CLOVER)["data"]["object"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_supported_version_gives_the_same_records(version: str) -> None:
    reference = _records("2025-03-31.basil")
    assert reference[("acme", "u-ada")]["mrr"] > 0  # the history is not trivially empty
    assert reference[("acme", "u-bob")]["churned"] is True
    assert _records(version) == reference


def test_clover_coupon_ids_are_read_once_per_coupon() -> None:
    events, objects = _history()
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("metadata.app_id")
    stripe = FakeStripe(objects=render(objects, CLOVER))
    customers = FakeCustomers()
    for event in render(events, CLOVER):
        observation = observation_of(parse_event(json.dumps(event).encode()))
        assert observation is not None
        apply_observation(
            "acme", observation, tenants=FakeTenants({"acme": tenant}), customers=customers, stripe=stripe
        )
    assert stripe.coupon_reads <= 3  # each coupon id looked up when first seen, then known from storage


def test_an_event_of_an_unknown_newer_version_is_read_when_its_shape_is_known() -> None:
    events, _ = _history()
    future = {**render(events[1], SDK), "api_version": "2099-01-01.future"}
    observation = observation_of(parse_event(json.dumps(future).encode()))
    assert observation is not None
    assert observation["snapshot"]["object"] == "subscription"


def test_an_event_of_an_unknown_newer_version_with_an_unknown_shape_is_refused_for_parking() -> None:
    """The receiver parks what raises EventError (tests/unit/test_receive.py): kept, redrivable."""
    events, _ = _history()
    future = render(events[1], SDK)
    future["api_version"] = "2099-01-01.future"
    future["data"]["object"]["status"] = {"value": "active"}  # a field that changed type
    with pytest.raises(EventError):
        envelope_for(parse_event(json.dumps(future).encode()), "acme")
