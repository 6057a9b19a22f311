"""The sandbox checked against a reference we did not write: the stripe package's resource and
parameter definitions, which Stripe generates from its OpenAPI spec for the SDK's pinned API version.

* Every object the sandbox returns or delivers (events are what it delivers) has exactly the fields
  the pinned version's resource class defines, nested objects included, each value of the declared
  type (checked here by a type checker of this test's own, not by the sandbox's shaping code).
* Every parameter a sandbox route implements is a parameter of that endpoint in the SDK's
  parameter types (the sandbox invents none but its documented extension), and anything else is a
  400 ``parameter_unknown`` in Stripe's error shape.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ForwardRef, Literal, Union

import pytest
import stripe
from stripe import ListObject, StripeObject

# The table the SDK itself reads JSON into classes with (``object`` value -> resource class).
from stripe._object_classes import OBJECT_CLASSES, get_object_class

from local.http import http
from local.stripe_sandbox.server import SUPPORTED_PARAMS, SandboxApp, serve
from local.stripe_sandbox.shapes import API_VERSION
from tests.e2e.conftest import free_port

KEY = "sk_test_contract"

# Which of the SDK's parameter types describes each sandbox route.
ROUTE_PARAMS = {
    "GET /v1/products": "ProductListParams",
    "GET /v1/prices": "PriceListParams",
    "GET /v1/coupons": "CouponListParams",
    "GET /v1/customers": "CustomerListParams",
    "GET /v1/subscriptions": "SubscriptionListParams",
    "GET /v1/subscription_items": "SubscriptionItemListParams",
    "GET /v1/invoices": "InvoiceListParams",
    "GET /v1/invoiceitems": "InvoiceItemListParams",
    "GET /v1/events": "EventListParams",
    "GET /v1/webhook_endpoints": "WebhookEndpointListParams",
    "GET /v1/invoices/{id}/lines": "InvoiceListLinesParams",
    "GET /v1/products/{id}": "ProductRetrieveParams",
    "GET /v1/prices/{id}": "PriceRetrieveParams",
    "GET /v1/coupons/{id}": "CouponRetrieveParams",
    "GET /v1/customers/{id}": "CustomerRetrieveParams",
    "GET /v1/subscriptions/{id}": "SubscriptionRetrieveParams",
    "GET /v1/subscription_items/{id}": "SubscriptionItemRetrieveParams",
    "GET /v1/invoices/{id}": "InvoiceRetrieveParams",
    "GET /v1/invoiceitems/{id}": "InvoiceItemRetrieveParams",
    "GET /v1/events/{id}": "EventRetrieveParams",
    "GET /v1/webhook_endpoints/{id}": "WebhookEndpointRetrieveParams",
    "GET /v1/account": "AccountRetrieveCurrentParams",
    "POST /v1/products": "ProductCreateParams",
    "POST /v1/prices": "PriceCreateParams",
    "POST /v1/coupons": "CouponCreateParams",
    "POST /v1/customers": "CustomerCreateParams",
    "POST /v1/customers/{id}": "CustomerUpdateParams",
    "POST /v1/subscriptions": "SubscriptionCreateParams",
    "POST /v1/subscriptions/{id}": "SubscriptionUpdateParams",
    "POST /v1/subscriptions/{id}/resume": "SubscriptionResumeParams",
    "POST /v1/invoices": "InvoiceCreateParams",
    "POST /v1/invoiceitems": "InvoiceItemCreateParams",
    "POST /v1/invoices/{id}/pay": "InvoicePayParams",
    "POST /v1/invoices/{id}/finalize": "InvoiceFinalizeInvoiceParams",
    "POST /v1/invoices/{id}/void": "InvoiceVoidInvoiceParams",
    "POST /v1/invoices/{id}/mark_uncollectible": "InvoiceMarkUncollectibleParams",
    "POST /v1/webhook_endpoints": "WebhookEndpointCreateParams",
    "DELETE /v1/customers/{id}": "CustomerDeleteParams",
    "DELETE /v1/customers/{id}/discount": "CustomerDeleteDiscountParams",
    "DELETE /v1/subscriptions/{id}": "SubscriptionCancelParams",
    "DELETE /v1/webhook_endpoints/{id}": "WebhookEndpointDeleteParams",
    "POST /v1/products/{id}": "ProductUpdateParams",
    "DELETE /v1/products/{id}": "ProductDeleteParams",
    "POST /v1/prices/{id}": "PriceUpdateParams",
    "GET /v1/plans": "PlanListParams",
    "POST /v1/plans": "PlanCreateParams",
    "GET /v1/plans/{id}": "PlanRetrieveParams",
    "POST /v1/plans/{id}": "PlanUpdateParams",
    "DELETE /v1/plans/{id}": "PlanDeleteParams",
    "POST /v1/coupons/{id}": "CouponUpdateParams",
    "DELETE /v1/coupons/{id}": "CouponDeleteParams",
    "POST /v1/customers/{id}/sources": "CustomerPaymentSourceCreateParams",
    "GET /v1/customers/{id}/sources/{source}": "CustomerPaymentSourceRetrieveParams",
    "POST /v1/customers/{id}/sources/{source}": "CustomerPaymentSourceUpdateParams",
    "GET /v1/customers/{id}/payment_methods": "CustomerPaymentMethodListParams",
    "GET /v1/payment_methods": "PaymentMethodListParams",
    "POST /v1/payment_methods": "PaymentMethodCreateParams",
    "GET /v1/payment_methods/{id}": "PaymentMethodRetrieveParams",
    "POST /v1/payment_methods/{id}": "PaymentMethodUpdateParams",
    "POST /v1/payment_methods/{id}/attach": "PaymentMethodAttachParams",
    "POST /v1/setup_intents": "SetupIntentCreateParams",
    "GET /v1/setup_intents/{id}": "SetupIntentRetrieveParams",
    "POST /v1/payment_methods/{id}/detach": "PaymentMethodDetachParams",
    "GET /v1/subscription_schedules": "SubscriptionScheduleListParams",
    "POST /v1/subscription_schedules": "SubscriptionScheduleCreateParams",
    "GET /v1/subscription_schedules/{id}": "SubscriptionScheduleRetrieveParams",
    "POST /v1/subscription_schedules/{id}": "SubscriptionScheduleUpdateParams",
    "POST /v1/subscription_schedules/{id}/cancel": "SubscriptionScheduleCancelParams",
    "POST /v1/subscription_schedules/{id}/release": "SubscriptionScheduleReleaseParams",
    "POST /v1/invoices/{id}": "InvoiceUpdateParams",
    "DELETE /v1/invoices/{id}": "InvoiceDeleteParams",
    "POST /v1/invoices/{id}/send": "InvoiceSendInvoiceParams",
    "DELETE /v1/invoiceitems/{id}": "InvoiceItemDeleteParams",
    "GET /v1/credit_notes": "CreditNoteListParams",
    "POST /v1/credit_notes": "CreditNoteCreateParams",
    "GET /v1/credit_notes/{id}": "CreditNoteRetrieveParams",
    "POST /v1/credit_notes/{id}": "CreditNoteUpdateParams",
    "POST /v1/credit_notes/{id}/void": "CreditNoteVoidCreditNoteParams",
    "GET /v1/credit_notes/{id}/lines": "CreditNoteLineItemListParams",
    "GET /v1/quotes": "QuoteListParams",
    "POST /v1/quotes": "QuoteCreateParams",
    "GET /v1/quotes/{id}": "QuoteRetrieveParams",
    "GET /v1/quotes/{id}/line_items": "QuoteLineItemListParams",
    "POST /v1/quotes/{id}/finalize": "QuoteFinalizeQuoteParams",
    "POST /v1/quotes/{id}/accept": "QuoteAcceptParams",
    "POST /v1/quotes/{id}/cancel": "QuoteCancelParams",
    "GET /v1/payment_intents": "PaymentIntentListParams",
    "POST /v1/payment_intents": "PaymentIntentCreateParams",
    "GET /v1/payment_intents/{id}": "PaymentIntentRetrieveParams",
    "GET /v1/charges": "ChargeListParams",
    "GET /v1/charges/{id}": "ChargeRetrieveParams",
    "GET /v1/refunds": "RefundListParams",
    "POST /v1/refunds": "RefundCreateParams",
    "GET /v1/refunds/{id}": "RefundRetrieveParams",
    "GET /v1/test_helpers/test_clocks": "test_helpers.TestClockListParams",
    "POST /v1/test_helpers/test_clocks": "test_helpers.TestClockCreateParams",
    "GET /v1/test_helpers/test_clocks/{id}": "test_helpers.TestClockRetrieveParams",
    "DELETE /v1/test_helpers/test_clocks/{id}": "test_helpers.TestClockDeleteParams",
    "POST /v1/test_helpers/test_clocks/{id}/advance": "test_helpers.TestClockAdvanceParams",
}
# The sandbox's documented extension: choose a webhook endpoint's signing secret.
EXTENSIONS = {"POST /v1/webhook_endpoints": {"secret"}}


def _sdk_params(name: str) -> type:
    """One of the SDK's parameter types, by its name under ``stripe.params`` (``test_helpers.…``)."""
    found: Any = stripe.params
    for part in name.split("."):
        found = getattr(found, part)
    return found  # type: ignore[no-any-return]


def test_every_implemented_parameter_is_one_stripe_defines_for_that_route() -> None:
    assert set(ROUTE_PARAMS) == set(SUPPORTED_PARAMS)
    for route, names in SUPPORTED_PARAMS.items():
        reference = set(_sdk_params(ROUTE_PARAMS[route]).__annotations__)
        invented = set(names) - reference - EXTENSIONS.get(route, set())
        assert not invented, (route, invented)


# --- a type checker of this test's own, over the SDK's annotations ---------------------------------


class Mismatch(AssertionError):
    pass


def sdk_class(kind: str) -> type:
    """The stripe package's resource class for an ``object`` value."""
    return get_object_class("V1", kind)


def check_resource(value: dict[str, Any], path: str) -> None:
    """A top-level object (an event with its ``data.object`` too) against its SDK class."""
    check_object(value, sdk_class(value["object"]), path)
    if value["object"] == "event":
        inner = value["data"]["object"]
        check_object(inner, sdk_class(inner["object"]), f"{path}.data.object")


def _is_class_var(annotation: Any) -> bool:
    origin: Any = typing.get_origin(annotation)
    return bool(origin is typing.ClassVar)


def _fields(cls: type) -> dict[str, Any]:
    return {k: v for k, v in inspect.get_annotations(cls).items() if not _is_class_var(v)}


def _resolve(name: str) -> type:
    """A resource class named in a forward reference (``"Customer"``, ``"TestClock"``, ...)."""
    found = getattr(stripe, name, None) if name in dir(stripe) else None
    if found is None:
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("stripe.") and inspect.isclass(getattr(module, name, None)):
                found = getattr(module, name)
                break
    if found is None:
        raise Mismatch(f"cannot resolve {name}")
    return found  # type: ignore[no-any-return]


def check_object(value: Any, cls: type, path: str) -> None:
    if not isinstance(value, dict):
        raise Mismatch(f"{path}: expected a {cls.__name__} object, got {type(value).__name__}")
    if value.get("deleted") is True and value.get("object") in OBJECT_CLASSES:
        if set(value) != {"id", "object", "deleted"}:
            raise Mismatch(f"{path}: a deleted object has id, object and deleted only: {sorted(value)}")
        return
    expected = _fields(cls)
    missing, extra = set(expected) - set(value), set(value) - set(expected)
    if missing or extra:
        raise Mismatch(
            f"{path} ({cls.__name__}): missing {sorted(missing)}, not in this version {sorted(extra)}"
        )
    for name, annotation in expected.items():
        check(value[name], annotation, f"{path}.{name}")


def check(value: Any, annotation: Any, path: str) -> None:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return
    if origin in (Union, types.UnionType):
        failures = []
        for option in args:
            try:
                check(value, option, path)
                return
            except Mismatch as exc:
                failures.append(str(exc))
        raise Mismatch(f"{path}: {value!r:.80} matches none of {failures}")
    if annotation is type(None):
        if value is not None:
            raise Mismatch(f"{path}: expected null")
        return
    if origin is Literal:
        if value not in args:
            raise Mismatch(f"{path}: {value!r} is not one of {args[:5]}")
        return
    if isinstance(annotation, ForwardRef | str):
        name = annotation.__forward_arg__ if isinstance(annotation, ForwardRef) else annotation
        check_object(value, _resolve(name), path)
        return
    if annotation is Decimal:  # a decimal string on the wire
        if not isinstance(value, str):
            raise Mismatch(f"{path}: expected a decimal string, got {value!r:.40}")
        Decimal(value)
        return
    if annotation is bool:
        if not isinstance(value, bool):
            raise Mismatch(f"{path}: expected a boolean, got {value!r:.40}")
        return
    if annotation in (int, float):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (annotation is int and isinstance(value, float))
        ):
            raise Mismatch(f"{path}: expected {annotation.__name__}, got {value!r:.40}")
        return
    if annotation is str:
        if not isinstance(value, str):
            raise Mismatch(f"{path}: expected a string, got {value!r:.40}")
        return
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            raise Mismatch(f"{path}: expected a list")
        for index, item in enumerate(value):
            check(item, args[0], f"{path}[{index}]")
        return
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            raise Mismatch(f"{path}: expected a map")
        return
    if inspect.isclass(origin) and issubclass(origin, ListObject):
        if (
            not isinstance(value, dict)
            or value.get("object") != "list"
            or not isinstance(value.get("data"), list)
        ):
            raise Mismatch(f"{path}: expected a list object")
        for index, item in enumerate(value["data"]):
            check(
                item,
                args[0] if not isinstance(args[0], str) else ForwardRef(args[0]),
                f"{path}.data[{index}]",
            )
        return
    if inspect.isclass(origin) and issubclass(origin, StripeObject):  # UntypedStripeObject[...]
        if not isinstance(value, dict):
            raise Mismatch(f"{path}: expected a map")
        return
    if inspect.isclass(annotation) and issubclass(annotation, StripeObject):
        if annotation.__name__.startswith("Untyped"):
            if not isinstance(value, dict):
                raise Mismatch(f"{path}: expected a map")
            return
        check_object(value, annotation, path)
        return
    raise Mismatch(f"{path}: the checker does not know {annotation!r}")


def stripe_objects(value: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every top-level Stripe object in an answer (the list wrapper is not one)."""
    if isinstance(value, dict):
        if value.get("object") in OBJECT_CLASSES and value["object"] not in ("list", "search_result"):
            yield path, value
            return
        for key, child in value.items():
            yield from stripe_objects(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from stripe_objects(child, f"{path}[{index}]")


# --- the sandbox, driven through its whole surface -------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[tuple[str, SandboxApp]]:
    server, app = serve(free_port())
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        app.stop()


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": url, "connect": url}, max_network_retries=0)


def _answers(url: str) -> list[tuple[str, Any]]:
    """Exercise every route revsync or a user's script uses; return each raw JSON answer."""
    client = _client(url)
    answers: list[tuple[str, Any]] = []

    def call(method: str, path: str, **params: Any) -> Any:
        data = client.raw_request(method, path, **params).data
        answers.append((f"{method} {path}", data))
        return data

    product = call("post", "/v1/products", name="Pro")
    monthly = call(
        "post",
        "/v1/prices",
        product=product["id"],
        currency="usd",
        unit_amount=4000,
        recurring={"interval": "month"},
    )
    tiered = call(
        "post",
        "/v1/prices",
        product_data={"name": "Seats"},
        currency="usd",
        billing_scheme="tiered",
        tiers_mode="graduated",
        recurring={"interval": "year"},
        tiers=[{"up_to": 5, "unit_amount": 1000}, {"up_to": "inf", "unit_amount": 800, "flat_amount": 500}],
    )
    coupon = call("post", "/v1/coupons", percent_off=20, duration="forever")
    customer = call("post", "/v1/customers", email="ada@example.com", metadata={"app_id": "u-1"})
    http(
        "POST",
        f"{url}/_sandbox/customers/{customer['id']}/discount",
        {"coupon": coupon["id"]},
        {"Authorization": f"Bearer {KEY}"},
    )
    call("post", f"/v1/customers/{customer['id']}", name="Ada")
    items = [{"price": monthly["id"], "quantity": 2}] + [{"price": tiered["id"], "quantity": 3}] * 11
    sub = call(
        "post",
        "/v1/subscriptions",
        customer=customer["id"],
        items=items,
        discounts=[{"coupon": coupon["id"]}],
    )
    call("get", f"/v1/subscriptions/{sub['id']}", expand=["discounts"])
    call("get", "/v1/subscription_items", subscription=sub["id"], limit=5)
    call("post", f"/v1/subscriptions/{sub['id']}", cancel_at_period_end=True)
    sent = call(
        "post",
        "/v1/subscriptions",
        customer=customer["id"],
        items=[{"price": monthly["id"]}],
        collection_method="send_invoice",
        days_until_due=14,
    )
    open_invoice = call("get", "/v1/invoices", subscription=sent["id"])["data"][0]
    call("post", f"/v1/invoices/{open_invoice['id']}/pay", paid_out_of_band=True)
    call(
        "post", "/v1/invoiceitems", customer=customer["id"], amount=1500, currency="usd", description="Setup"
    )
    draft = call(
        "post", "/v1/invoices", customer=customer["id"], collection_method="send_invoice", days_until_due=30
    )
    call("get", f"/v1/invoices/{draft['id']}/lines")
    call("post", f"/v1/invoices/{draft['id']}/finalize")
    call("post", f"/v1/invoices/{draft['id']}/mark_uncollectible")
    call("post", "/v1/invoiceitems", customer=customer["id"], amount=700, currency="usd")
    second = call("post", "/v1/invoices", customer=customer["id"])
    call("post", f"/v1/invoices/{second['id']}/finalize")
    call("post", f"/v1/invoices/{second['id']}/void")
    call("delete", f"/v1/subscriptions/{sent['id']}")
    call("get", f"/v1/customers/{customer['id']}")
    call("delete", f"/v1/customers/{customer['id']}/discount")
    call("delete", f"/v1/customers/{customer['id']}")
    call("get", f"/v1/customers/{customer['id']}")
    call("get", "/v1/invoices", limit=100)
    call("get", "/v1/prices")
    call("get", "/v1/coupons")
    call("get", "/v1/products")
    call("get", "/v1/account")
    _answers_of_later_routes(call)
    events = client.raw_request("get", "/v1/events", limit=100)
    answers.append(("GET /v1/events", events.data))
    while events.data["has_more"]:
        events = client.raw_request(
            "get", "/v1/events", limit=100, starting_after=events.data["data"][-1]["id"]
        )
        answers.append(("GET /v1/events", events.data))
    return answers


def _answers_of_later_routes(call: Any) -> None:
    """Test clocks, payment methods and cards, schedules, quotes, credit notes, payments, plans."""
    clock = call("post", "/v1/test_helpers/test_clocks", frozen_time=1_700_000_000, name="contract")
    customer = call(
        "post",
        "/v1/customers",
        test_clock=clock["id"],
        payment_method="pm_card_visa",
        invoice_settings={"default_payment_method": "pm_card_visa"},
    )
    card = call("post", f"/v1/customers/{customer['id']}/sources", source="tok_mastercard")
    call("post", f"/v1/customers/{customer['id']}/sources/{card['id']}", metadata={"k": "v"}, name="Ada")
    call("get", f"/v1/customers/{customer['id']}/sources/{card['id']}")
    call("get", f"/v1/customers/{customer['id']}/payment_methods", type="card")
    created = call("post", "/v1/payment_methods", type="card", card={"token": "tok_visa"})
    call("post", f"/v1/payment_methods/{created['id']}/attach", customer=customer["id"])
    call("post", f"/v1/payment_methods/{created['id']}/detach")
    call("get", "/v1/payment_methods", customer=customer["id"])
    plan = call(
        "post", "/v1/plans", currency="usd", interval="month", amount=2000, product={"name": "Legacy"}
    )
    call("post", f"/v1/plans/{plan['id']}", metadata={"k": "v"}, nickname="Legacy")
    call("get", "/v1/plans", active="true")
    product = call("post", "/v1/products", name="Gone")
    call("post", f"/v1/products/{product['id']}", metadata={"k": "v"}, description="d")
    call("delete", f"/v1/products/{product['id']}")
    call("post", f"/v1/prices/{plan['id']}", metadata={"k": "v"})
    coupon = call("post", "/v1/coupons", percent_off=5, duration="once")
    call("post", f"/v1/coupons/{coupon['id']}", name="Five")
    call("delete", f"/v1/coupons/{coupon['id']}")
    schedule = call(
        "post",
        "/v1/subscription_schedules",
        customer=customer["id"],
        start_date="now",
        end_behavior="release",
        phases=[
            {"items": [{"price": plan["id"], "quantity": 1}], "iterations": 1},
            {"items": [{"price": plan["id"], "quantity": 2}], "iterations": 1},
        ],
    )
    call("post", f"/v1/subscription_schedules/{schedule['id']}", metadata={"k": "v"})
    # What risk signals read: a schedule's phases with their prices, customers with their default
    # card, a card saved by a setup intent then renewed (by API, then by its network), a failed payment.
    call("get", f"/v1/subscription_schedules/{schedule['id']}", expand=["phases.items.price"])
    call("get", "/v1/subscriptions", status="all", expand=["data.schedule"], limit=100)
    call("get", "/v1/customers", expand=["data.invoice_settings.default_payment_method"], limit=100)
    setup = call(
        "post", "/v1/setup_intents", customer=customer["id"], payment_method="pm_card_visa", confirm="true"
    )
    call("get", f"/v1/setup_intents/{setup['id']}")
    renewed = {"exp_month": 4, "exp_year": 2031}
    call("post", f"/v1/payment_methods/{setup['payment_method']}", card=renewed, metadata={"k": "v"})
    call(
        "post",
        f"/_sandbox/payment_methods/{setup['payment_method']}/card_updated",
        exp_month=5,
        exp_year=2032,
    )
    declined = call(
        "post",
        "/v1/customers",
        payment_method="pm_card_chargeCustomerFail",
        invoice_settings={"default_payment_method": "pm_card_chargeCustomerFail"},
    )
    call("post", "/v1/subscriptions", customer=declined["id"], items=[{"price": plan["id"]}])
    call("get", "/v1/invoices", customer=declined["id"], status="open")
    call(
        "post", f"/v1/test_helpers/test_clocks/{clock['id']}/advance", frozen_time=1_700_000_000 + 31 * 86_400
    )
    call("get", f"/v1/test_helpers/test_clocks/{clock['id']}")
    call("get", "/v1/test_helpers/test_clocks")
    call("get", "/v1/subscription_schedules", customer=customer["id"])
    call("post", f"/v1/subscription_schedules/{schedule['id']}/release")
    other = call(
        "post",
        "/v1/subscription_schedules",
        customer=customer["id"],
        phases=[{"items": [{"price": plan["id"]}]}],
    )
    call("post", f"/v1/subscription_schedules/{other['id']}/cancel", invoice_now="false", prorate="false")
    paid = call("get", "/v1/invoices", customer=customer["id"], expand=["data.payments"])["data"][0]
    note = call(
        "post",
        "/v1/credit_notes",
        invoice=paid["id"],
        lines=[{"type": "custom_line_item", "unit_amount": 300, "quantity": 1, "description": "Sorry"}],
        refund_amount=300,
    )
    call("post", f"/v1/credit_notes/{note['id']}", memo="Goodwill")
    call("get", f"/v1/credit_notes/{note['id']}/lines")
    call("get", "/v1/credit_notes", invoice=paid["id"])
    call("post", "/v1/invoiceitems", customer=customer["id"], amount=900, currency="usd")
    draft = call(
        "post", "/v1/invoices", customer=customer["id"], collection_method="send_invoice", days_until_due=5
    )
    call("post", f"/v1/invoices/{draft['id']}", metadata={"k": "v"}, description="Setup")
    call("post", f"/v1/invoices/{draft['id']}/send")
    void = call("post", "/v1/credit_notes", invoice=draft["id"], amount=100)
    call("post", f"/v1/credit_notes/{void['id']}/void")
    item = call("post", "/v1/invoiceitems", customer=customer["id"], amount=50, currency="usd")
    call("delete", f"/v1/invoiceitems/{item['id']}")
    scrap = call("post", "/v1/invoices", customer=customer["id"])
    call("delete", f"/v1/invoices/{scrap['id']}")
    quote = call(
        "post", "/v1/quotes", customer=customer["id"], line_items=[{"price": plan["id"], "quantity": 3}]
    )
    call("get", f"/v1/quotes/{quote['id']}/line_items")
    call("post", f"/v1/quotes/{quote['id']}/finalize")
    call("post", f"/v1/quotes/{quote['id']}/accept")
    call("get", "/v1/quotes", customer=customer["id"], test_clock=clock["id"])
    dropped = call("post", "/v1/quotes", customer=customer["id"], line_items=[{"price": plan["id"]}])
    call("post", f"/v1/quotes/{dropped['id']}/cancel")
    intent = call(
        "post",
        "/v1/payment_intents",
        amount=700,
        currency="usd",
        payment_method="pm_card_visa",
        confirm="true",
    )
    call("get", f"/v1/payment_intents/{intent['id']}")
    refund = call("post", "/v1/refunds", payment_intent=intent["id"], amount=200)
    call("get", f"/v1/refunds/{refund['id']}")
    call("get", f"/v1/charges/{refund['charge']}")
    call("get", "/v1/charges", payment_intent=intent["id"])
    call("get", "/v1/refunds", charge=refund["charge"])
    # The backfill's lists: refunds with their charges expanded, credit notes, by creation time.
    call("get", "/v1/refunds", created={"gte": 0}, expand=["data.charge"], limit=100)
    call("get", "/v1/credit_notes", created={"gte": 0}, limit=100)
    call("get", "/v1/payment_intents")
    call("post", f"/v1/plans/{plan['id']}", active="false")
    call("delete", f"/v1/plans/{plan['id']}")
    call("delete", f"/v1/test_helpers/test_clocks/{clock['id']}")


def test_every_object_the_sandbox_returns_or_delivers_has_exactly_its_versions_fields(
    sandbox: tuple[str, SandboxApp],
) -> None:
    answers = _answers(sandbox[0])
    seen: dict[str, int] = {}
    failures: list[str] = []
    for route, answer in answers:
        for path, obj in stripe_objects(answer):
            seen[obj["object"]] = seen.get(obj["object"], 0) + 1
            try:
                check_resource(obj, f"{route} {path}")
            except Mismatch as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures[:20])
    # The scenario reached every kind revsync reads, and the events it delivers.
    assert {
        "account",
        "customer",
        "subscription",
        "invoice",
        "event",
        "price",
        "coupon",
        "product",
        "invoiceitem",
    } <= set(seen)
    events = [e for route, answer in answers if route == "GET /v1/events" for e in answer["data"]]
    delivered = {e["data"]["object"]["object"] for e in events}
    assert {
        "card",
        "charge",
        "credit_note",
        "credit_note_line_item",
        "discount",
        "invoice_payment",
        "item",
        "line_item",
        "payment_intent",
        "payment_method",
        "plan",
        "quote",
        "refund",
        "setup_intent",
        "subscription_item",
        "subscription_schedule",
        "test_helpers.test_clock",
    } <= set(seen) | delivered
    assert {e["api_version"] for e in events} == {API_VERSION}
    types_seen = {e["type"] for e in events}
    assert {
        "invoice.sent",
        "invoice.paid",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.finalized",
        "customer.discount.created",
        "customer.discount.deleted",
        "customer.deleted",
        "invoice.payment_failed",
        "payment_method.updated",
        "payment_method.automatically_updated",
        "setup_intent.succeeded",
    } <= types_seen


def test_the_checker_catches_what_the_sandbox_must_not_do() -> None:
    """Guard: the checker fails on a missing field, an extra field and a wrongly typed value."""
    good = dict.fromkeys(_fields(stripe.Coupon))
    good.update(
        object="coupon",
        id="co_1",
        created=1,
        livemode=False,
        metadata={},
        valid=True,
        duration="forever",
        times_redeemed=0,
    )
    check_object(good, stripe.Coupon, "coupon")
    with pytest.raises(Mismatch, match="missing"):
        check_object({k: v for k, v in good.items() if k != "valid"}, stripe.Coupon, "coupon")
    with pytest.raises(Mismatch, match="not in this version"):
        check_object({**good, "coupon": "co_1"}, stripe.Coupon, "coupon")
    with pytest.raises(Mismatch):
        check_object({**good, "created": "yesterday"}, stripe.Coupon, "coupon")


def test_unknown_parameters_are_refused_as_stripe_refuses_them(sandbox: tuple[str, SandboxApp]) -> None:
    client = _client(sandbox[0])
    customer = client.v1.customers.create(params={"email": "x@example.com"})
    for path, params in [
        ("/v1/customers", {"coupon": "co_x"}),  # removed by Stripe in 2025-03-31.basil
        (f"/v1/customers/{customer.id}", {"nickname": "x"}),
        (
            "/v1/subscriptions",
            {"customer": customer.id, "proration_behavior": "none"},
        ),  # real, not implemented
    ]:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.raw_request("post", path, **params)
        error = refused.value.error
        assert refused.value.http_status == 400
        assert error is not None
        assert (error.type, error.code, error.param) == (
            "invalid_request_error",
            "parameter_unknown",
            next(iter(params.keys() - {"customer"})),
        )
        assert error.message is not None
        assert error.message.startswith("Received unknown parameter")
    with pytest.raises(stripe.InvalidRequestError):
        client.raw_request("get", "/v1/events", type="invoice.paid", delivery_success="true")
