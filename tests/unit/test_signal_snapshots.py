"""The snapshots risk signals read, checked against a reference we did not write: every field the
parsers read is one the stripe package's resource classes define (with the type read), and the
objects the local Stripe sandbox makes for them (each checked against the same classes, as
tests/unit/test_sandbox_contract.py checks everything the sandbox serves) parse to what they say."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from revsync.domain.events import event_from_dict, observation_of
from revsync.domain.snapshots import (
    managing_schedule,
    parse_customer,
    parse_subscription_schedule,
    unexpanded_prices,
)

from local.stripe_sandbox.server import SandboxApp, serve
from tests.e2e.conftest import free_port
from tests.unit.test_sandbox_contract import check_resource

KEY = "sk_test_signal_snapshots"

# What the parsers read (revsync.domain.snapshots), as paths through the SDK's classes.
READ = [
    (stripe.Invoice, "status", str),
    (stripe.Invoice, "attempt_count", int),
    (stripe.Invoice, "amount_remaining", int),
    (stripe.Invoice, "next_payment_attempt", int),
    (stripe.Invoice, "currency", str),
    (stripe.SubscriptionSchedule, "status", str),
    (stripe.SubscriptionSchedule, "customer", str),
    (stripe.SubscriptionSchedule, "subscription", str),
    (stripe.SubscriptionSchedule, "test_clock", str),
    (stripe.SubscriptionSchedule, "current_phase.end_date", int),
    (stripe.SubscriptionSchedule, "phases.start_date", int),
    (stripe.SubscriptionSchedule, "phases.currency", str),
    (stripe.SubscriptionSchedule, "phases.items.price", str),
    (stripe.SubscriptionSchedule, "phases.items.plan", str),
    (stripe.SubscriptionSchedule, "phases.items.quantity", int),
    (stripe.Subscription, "schedule", str),
    (stripe.PaymentMethod, "customer", str),
    (stripe.PaymentMethod, "card.exp_month", int),
    (stripe.PaymentMethod, "card.exp_year", int),
    (stripe.Customer, "invoice_settings.default_payment_method", str),
]


def _annotation(cls: type, path: str) -> Any:
    """The annotation at ``path`` (lists and optionals looked through to their element)."""
    annotation: Any = cls
    for name in path.split("."):
        annotation = inspect.get_annotations(_class_in(annotation))[name]
    return annotation


def _class_in(annotation: Any) -> type:
    if inspect.isclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if inspect.isclass(arg) and arg is not type(None):
            return _class_in(arg)
        if typing.get_args(arg):
            return _class_in(arg)
    raise AssertionError(f"no class in {annotation!r}")


def _allows(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    return any(_allows(arg, kind) for arg in typing.get_args(annotation))


@pytest.mark.parametrize(("cls", "path", "kind"), READ, ids=[f"{c.__name__}.{p}" for c, p, _ in READ])
def test_every_field_the_parsers_read_is_one_stripe_defines(cls: type, path: str, kind: type) -> None:
    assert _allows(_annotation(cls, path), kind)


# --- objects the sandbox makes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[str, SandboxApp]]:
    server, app = serve(free_port())
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        app.stop()


@pytest.fixture(scope="module")
def made(sandbox: tuple[str, SandboxApp]) -> dict[str, Any]:
    """A customer with a default card and a schedule to come (fewer seats, then a cheaper plan), its
    card renewed by API and by its network then detached; another customer's failed payment."""
    url, app = sandbox
    client = stripe.StripeClient(KEY, base_addresses={"api": url}, max_network_retries=0)

    def call(method: str, path: str, **params: Any) -> Any:
        return client.raw_request(method, path, **params).data

    product = call("post", "/v1/products", name="Pro")
    pro = call(
        "post",
        "/v1/prices",
        product=product["id"],
        currency="usd",
        unit_amount=1500,
        recurring={"interval": "month"},
    )
    lite = call(
        "post",
        "/v1/prices",
        product=product["id"],
        currency="usd",
        unit_amount=500,
        recurring={"interval": "month"},
    )
    customer = call(
        "post",
        "/v1/customers",
        payment_method="pm_card_visa",
        invoice_settings={"default_payment_method": "pm_card_visa"},
    )
    phases = [
        {"items": [{"price": pro["id"], "quantity": 2}], "iterations": 1},
        {"items": [{"price": lite["id"], "quantity": 3}], "iterations": 1},
    ]
    schedule = call(
        "post", "/v1/subscription_schedules", customer=customer["id"], start_date="now", phases=phases
    )
    card = customer["invoice_settings"]["default_payment_method"]
    call("post", f"/v1/payment_methods/{card}", card={"exp_month": 3, "exp_year": 2031})
    call("post", f"/_sandbox/payment_methods/{card}/card_updated", exp_month=4, exp_year=2032)
    call("post", f"/v1/payment_methods/{card}/detach")
    declined = call(
        "post",
        "/v1/customers",
        payment_method="pm_card_chargeCustomerFail",
        invoice_settings={"default_payment_method": "pm_card_chargeCustomerFail"},
    )
    call("post", "/v1/subscriptions", customer=declined["id"], items=[{"price": pro["id"]}])
    with app.sandbox.lock:
        events = list(app.sandbox.account_for_key(KEY).events)
    for event in events:
        check_resource(event, f"{event['type']} {event['id']}")
    return {
        "events": events,
        "customer": customer,
        "schedule": schedule,
        "pro": pro,
        "lite": lite,
        "card": card,
        "expanded_schedule": call(
            "get", f"/v1/subscription_schedules/{schedule['id']}", expand=["phases.items.price"]
        ),
        "customers": call("get", "/v1/customers", expand=["data.invoice_settings.default_payment_method"])[
            "data"
        ],
        "subscriptions": call("get", "/v1/subscriptions", status="all", expand=["data.schedule"])["data"],
    }


def _observed(made: dict[str, Any], event_type: str) -> list[Any]:
    found = []
    for event in made["events"]:
        if event["type"] == event_type:
            observation = observation_of(event_from_dict(event))
            assert observation is not None, event_type
            found.append(observation["snapshot"])
    assert found, event_type
    return found


def test_a_failed_payment_parses_to_its_attempts_and_what_is_due(made: dict[str, Any]) -> None:
    (failed,) = _observed(made, "invoice.payment_failed")
    assert (failed["status"], failed["attempt_count"], failed["amount_remaining"]) == ("open", 1, 1500)
    assert failed["currency"] == "usd"


def test_a_schedule_parses_to_its_next_phase(made: dict[str, Any]) -> None:
    (created,) = _observed(made, "subscription_schedule.created")
    first, following = made["schedule"]["phases"]
    phase = created["next_phase"]
    assert following["start_date"] == first["end_date"]
    assert (created["status"], phase["start_date"]) == ("active", following["start_date"])
    # A webhook's phases name their prices by id; the read expanding them gives their terms.
    assert phase["items"] == [{"price_id": made["lite"]["id"], "price": None, "quantity": 3}]
    assert unexpanded_prices(created) == {made["lite"]["id"]}
    expanded = parse_subscription_schedule(made["expanded_schedule"])
    assert expanded["next_phase"] is not None
    (item,) = expanded["next_phase"]["items"]
    assert item["price"] is not None
    assert item["price"]["unit_amount"] == "500"
    # A subscription listed with its schedule: the schedule, its other prices still to read.
    (managed,) = [s for s in made["subscriptions"] if isinstance(s.get("schedule"), dict)]
    assert unexpanded_prices(managing_schedule(managed)) == {made["lite"]["id"]}


def test_a_card_parses_to_its_expiry_through_its_lifecycle(made: dict[str, Any]) -> None:
    (attached,) = [p for p in _observed(made, "payment_method.attached") if p["id"] == made["card"]]
    (updated,) = _observed(made, "payment_method.updated")
    (renewed,) = _observed(made, "payment_method.automatically_updated")
    (detached,) = _observed(made, "payment_method.detached")
    assert attached["customer"] == made["customer"]["id"]
    assert (updated["exp_month"], updated["exp_year"]) == (3, 2031)
    assert (renewed["exp_month"], renewed["exp_year"]) == (4, 2032)
    assert (detached["customer"], detached["detached"]) == (made["customer"]["id"], True)
    # A customer listed with its default payment method expanded carries the card for the state.
    (listed,) = [c for c in made["customers"] if c["id"] == made["customer"]["id"]]
    customer = parse_customer(listed)
    assert customer.get("default_payment_method") == made["card"]
    assert customer["default_payment_method_object"]["exp_year"] == 2032
