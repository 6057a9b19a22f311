"""Discounts as webhooks send them after 2025-03-31: ids, resolved from storage or from Stripe."""

from __future__ import annotations

import json
from typing import Any

from revsync.domain.events import observation_of, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import SyncResult, apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

T0 = 1_760_000_000
COUPON = S.coupon(percent_off=20, id="co_20")


def _setup(objects: dict[str, dict[str, Any]]) -> tuple[FakeTenants, FakeCustomers, FakeStripe]:
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    return FakeTenants({"acme": tenant}), FakeCustomers(), FakeStripe(objects={"co_20": COUPON, **objects})


def _send(
    kind: str, obj: dict[str, Any], at: int, env: tuple[FakeTenants, FakeCustomers, FakeStripe]
) -> SyncResult:
    tenants, customers, stripe = env
    observation = observation_of(parse_event(json.dumps(S.event(kind, obj, created=at)).encode()))
    assert observation is not None
    return apply_observation(
        "acme", observation, tenants=tenants, customers=customers, stripe=stripe, clock=lambda: T0 + 500
    )


def _mrr(env: tuple[FakeTenants, FakeCustomers, FakeStripe]) -> int:
    return int(env[1].records[("acme", "cus_1")]["mrr"])


def _with_coupon_id(discount: dict[str, Any]) -> dict[str, Any]:
    return {**discount, "source": {"type": "coupon", "coupon": "co_20"}}


def test_subscription_discount_ids_are_resolved_by_reading_the_subscription() -> None:
    discount = _with_coupon_id(S.discount(COUPON, subscription="sub_1", customer="cus_1"))
    expanded = S.subscription(
        "cus_1", [S.subscription_item(S.price(10000))], id="sub_1", discounts=[discount]
    )
    webhook = {**expanded, "discounts": [discount["id"]]}  # what a webhook carries: ids only
    env = _setup({"sub_1": expanded})

    result = _send("customer.subscription.created", webhook, T0, env)

    assert (result.outcome, result.refetches) == ("applied", 1)
    assert env[2].fetches == ["sub_1"]
    assert _mrr(env) == 8000
    # The next event for it knows the discount already: no Stripe read.
    _send("customer.subscription.updated", {**webhook, "metadata": {"x": "1"}}, T0 + 10, env)
    assert env[2].fetches == ["sub_1"]
    assert _mrr(env) == 8000


def test_coupon_ids_are_looked_up_and_keep_the_events_time() -> None:
    discount = _with_coupon_id(S.discount(COUPON, customer="cus_1"))
    env = _setup({})
    _send(
        "customer.subscription.created",
        S.subscription("cus_1", [S.subscription_item(S.price(10000))]),
        T0,
        env,
    )

    _send("customer.updated", S.customer("cus_1", the_discount=discount), T0 + 5, env)

    assert env[2].fetches == []
    assert env[2].coupon_reads == 1
    assert _mrr(env) == 8000
    stored = env[1].states[("acme", "cus_1")].objects.customer
    assert stored is not None
    assert (stored["observed_at"], stored["source"]) == (T0 + 5, "updated")


def test_discount_events_read_their_owner_from_stripe() -> None:
    discount = _with_coupon_id(S.discount(COUPON, subscription="sub_1", customer="cus_1"))
    plain = S.subscription("cus_1", [S.subscription_item(S.price(10000))], id="sub_1")
    env = _setup({"sub_1": {**plain, "discounts": [discount]}})
    _send("customer.subscription.created", plain, T0, env)
    assert _mrr(env) == 10000

    result = _send("customer.discount.created", discount, T0 + 1, env)
    assert (result.outcome, env[2].fetches) == ("applied", ["sub_1"])
    assert _mrr(env) == 8000

    env[2].objects["sub_1"] = plain  # the discount is removed in Stripe
    _send("customer.discount.deleted", discount, T0 + 2, env)
    assert _mrr(env) == 10000


def test_customer_discount_event_reads_the_customer() -> None:
    discount = _with_coupon_id(S.discount(COUPON, customer="cus_1"))
    env = _setup({"cus_1": S.customer("cus_1", the_discount=discount)})
    _send(
        "customer.subscription.created",
        S.subscription("cus_1", [S.subscription_item(S.price(5000))]),
        T0,
        env,
    )
    _send("customer.discount.created", discount, T0 + 1, env)
    assert env[2].fetches == ["cus_1"]
    assert _mrr(env) == 4000


def test_an_owner_stripe_no_longer_has_is_dropped() -> None:
    env = _setup({})
    result = _send(
        "customer.discount.deleted", _with_coupon_id(S.discount(COUPON, customer="cus_gone")), T0, env
    )
    assert (result.outcome, result.reason) == ("dropped", "object_gone")


def test_a_discount_whose_source_coupon_is_null_takes_nothing_off_and_needs_no_read() -> None:
    """Regression: ``source.coupon: null`` (allowed by Stripe's schema) was taken for an unexpanded
    discount; the refetch could not settle it and the event was retried into the DLQ."""
    discount = {**S.discount(COUPON, customer="cus_1"), "source": {"type": "coupon", "coupon": None}}
    customer = {**S.customer("cus_1"), "discount": discount}
    sub = S.subscription("cus_1", [S.subscription_item(S.price(10000))], id="sub_1", status="active")
    env = _setup({"cus_1": customer, "sub_1": sub})

    assert _send("customer.created", customer, T0, env).outcome == "applied"
    result = _send("customer.subscription.created", sub, T0 + 1, env)

    assert (result.outcome, result.refetches) == ("applied", 0)
    assert env[2].fetches == []
    assert _mrr(env) == 10000


def test_every_discount_shape_stripe_sends_reads_the_same() -> None:
    """Coupon object (before clover), coupon id and coupon object under ``source`` (clover on)."""
    shapes = {
        "legacy_object": S.discount(COUPON, shape="legacy", customer="cus_1"),
        "source_object": S.discount(COUPON, customer="cus_1"),
        "source_id": _with_coupon_id(S.discount(COUPON, customer="cus_1")),
    }
    for name, discount in shapes.items():
        customer = {**S.customer("cus_1"), "discount": discount}
        sub = S.subscription("cus_1", [S.subscription_item(S.price(10000))], id="sub_1", status="active")
        env = _setup({"cus_1": customer, "sub_1": sub})
        _send("customer.created", customer, T0, env)
        _send("customer.subscription.created", sub, T0 + 1, env)
        assert _mrr(env) == 8000, name
