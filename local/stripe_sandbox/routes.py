"""Every route of Stripe's API the sandbox serves: its method, path, handler and the parameters it
implements, one declaration each.

The parameters are checked against the stripe SDK's own parameter types for that endpoint
(tests/unit/test_sandbox_contract.py); any other parameter is Stripe's 400 ``parameter_unknown``,
never silently ignored. ``secret`` on webhook endpoints is the sandbox's one extension.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from local.stripe_sandbox import (
    catalog,
    clocks,
    connect,
    credit_notes,
    customers,
    discounts,
    events,
    invoices,
    payment_methods,
    payments,
    quotes,
    schedules,
    setup_intents,
    subscriptions,
)
from local.stripe_sandbox.rest import Handler, collection, retrieve


class Removed(NamedTuple):
    """A parameter Stripe removed in an API version before the sandbox's (from Stripe's changelog):
    refused with ``code`` and a message that says so."""

    version: str
    code: str = "parameter_unknown"


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as Stripe documents it, ids in braces: /v1/customers/{id}
    handler: Handler
    params: frozenset[str]
    removed: Mapping[str, Removed] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``POST /v1/customers/{id}``: how limits, stats and the contract test name the endpoint."""
        return f"{self.method} {self.path}"

    @property
    def ids(self) -> list[str]:
        """The names of the path's ids, in order (the handler takes them in that order)."""
        return re.findall(r"\{(\w+)\}", self.path)


def _p(*names: str, base: Iterable[str] = ()) -> frozenset[str]:
    return frozenset(names) | frozenset(base)


NONE: frozenset[str] = frozenset()
EXPAND = frozenset({"expand"})
PAGE = _p("limit", "starting_after", "ending_before", base=EXPAND)  # an embedded list's pages
LIST = _p("created", base=PAGE)  # a list of the account's objects
# 2025-03-31.basil removed the singular coupon and promotion_code (discounts replace them).
NO_COUPONS = {"coupon": Removed("2025-03-31.basil"), "promotion_code": Removed("2025-03-31.basil")}
# 2026-09-30.endive removed payment_method_types from payment intents (dynamic payment methods).
NO_PAYMENT_METHOD_TYPES = {
    "payment_method_types": Removed("2026-09-30.endive", "payment_method_types_no_longer_supported")
}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/account", connect.retrieve_account, EXPAND),
    # --- the catalog: products, prices, plans, coupons ---
    Route("GET", "/v1/products", collection("product"), LIST),
    Route(
        "POST",
        "/v1/products",
        catalog.create_product,
        _p("id", "name", "description", "metadata", base=EXPAND),
    ),
    Route("GET", "/v1/products/{id}", retrieve("product"), EXPAND),
    Route(
        "POST",
        "/v1/products/{id}",
        catalog.update_product,
        _p("name", "description", "active", "default_price", "metadata", base=EXPAND),
    ),
    Route("DELETE", "/v1/products/{id}", catalog.delete_product, NONE),
    Route("GET", "/v1/prices", collection("price"), LIST),
    Route(
        "POST",
        "/v1/prices",
        catalog.create_price,
        _p(
            "product",
            "product_data",
            "currency",
            "unit_amount",
            "recurring",
            "billing_scheme",
            "tiers",
            "tiers_mode",
            "transform_quantity",
            "lookup_key",
            "metadata",
            "nickname",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/prices/{id}", retrieve("price"), EXPAND),
    Route(
        "POST",
        "/v1/prices/{id}",
        catalog.update_price,
        _p("nickname", "active", "lookup_key", "metadata", base=EXPAND),
    ),
    Route("GET", "/v1/plans", collection("plan", catalog.plan_matches), _p("active", "product", base=LIST)),
    Route(
        "POST",
        "/v1/plans",
        catalog.create_plan,
        _p(
            "id",
            "currency",
            "interval",
            "interval_count",
            "amount",
            "amount_decimal",
            "product",
            "nickname",
            "metadata",
            "active",
            "usage_type",
            "billing_scheme",
            "trial_period_days",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/plans/{id}", retrieve("plan"), EXPAND),
    Route(
        "POST",
        "/v1/plans/{id}",
        catalog.update_plan,
        _p("nickname", "active", "product", "trial_period_days", "metadata", base=EXPAND),
    ),
    Route("DELETE", "/v1/plans/{id}", catalog.delete_plan, NONE),
    Route("GET", "/v1/coupons", collection("coupon"), LIST),
    Route(
        "POST",
        "/v1/coupons",
        catalog.create_coupon,
        _p(
            "id",
            "percent_off",
            "amount_off",
            "currency",
            "duration",
            "duration_in_months",
            "metadata",
            "name",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/coupons/{id}", retrieve("coupon"), EXPAND),
    Route("POST", "/v1/coupons/{id}", catalog.update_coupon, _p("name", "metadata", base=EXPAND)),
    Route("DELETE", "/v1/coupons/{id}", catalog.delete_coupon, NONE),
    # --- customers, their cards and payment methods ---
    Route(
        "GET",
        "/v1/customers",
        collection("customer", customers.matches),
        _p("email", "test_clock", base=LIST),
    ),
    Route(
        "POST",
        "/v1/customers",
        customers.create,
        _p(
            "email",
            "name",
            "description",
            "metadata",
            "balance",
            "payment_method",
            "invoice_settings",
            "source",
            "test_clock",
            base=EXPAND,
        ),
        NO_COUPONS,
    ),
    Route("GET", "/v1/customers/{id}", retrieve("customer"), EXPAND),
    Route(
        "POST",
        "/v1/customers/{id}",
        customers.update,
        _p(
            "email",
            "name",
            "description",
            "metadata",
            "balance",
            "invoice_settings",
            "default_source",
            "source",
            base=EXPAND,
        ),
        NO_COUPONS,
    ),
    Route("DELETE", "/v1/customers/{id}", customers.delete, NONE),
    Route("DELETE", "/v1/customers/{id}/discount", discounts.delete_customer_discount, NONE),
    Route(
        "POST",
        "/v1/customers/{id}/sources",
        payment_methods.create_source,
        _p("source", "metadata", base=EXPAND),
    ),
    Route("GET", "/v1/customers/{id}/sources/{source}", payment_methods.retrieve_source, EXPAND),
    Route(
        "POST",
        "/v1/customers/{id}/sources/{source}",
        payment_methods.update_source,
        _p(
            "metadata",
            "name",
            "exp_month",
            "exp_year",
            "address_city",
            "address_country",
            "address_line1",
            "address_line2",
            "address_state",
            "address_zip",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/customers/{id}/payment_methods", payment_methods.of_customer, _p("type", base=PAGE)),
    Route(
        "GET",
        "/v1/payment_methods",
        collection("payment_method", payment_methods.matches),
        _p("customer", "type", base=PAGE),
    ),
    Route("POST", "/v1/payment_methods", payment_methods.create, _p("type", "card", "metadata", base=EXPAND)),
    Route("GET", "/v1/payment_methods/{id}", payment_methods.retrieve, EXPAND),
    Route("POST", "/v1/payment_methods/{id}", payment_methods.update, _p("card", "metadata", base=EXPAND)),
    Route("POST", "/v1/payment_methods/{id}/attach", payment_methods.attach, _p("customer", base=EXPAND)),
    Route("POST", "/v1/payment_methods/{id}/detach", payment_methods.detach, EXPAND),
    Route(
        "POST",
        "/v1/setup_intents",
        setup_intents.create,
        _p("customer", "payment_method", "confirm", "description", "usage", "metadata", base=EXPAND),
    ),
    Route("GET", "/v1/setup_intents/{id}", setup_intents.retrieve, EXPAND),
    # --- subscriptions and their schedules ---
    Route(
        "GET",
        "/v1/subscriptions",
        collection("subscription", subscriptions.matches),
        _p("status", "customer", "test_clock", base=LIST),
    ),
    Route(
        "POST",
        "/v1/subscriptions",
        subscriptions.create,
        _p(
            "customer",
            "items",
            "trial_end",
            "trial_period_days",
            "trial_settings",
            "cancel_at_period_end",
            "cancel_at",
            "metadata",
            "discounts",
            "collection_method",
            "days_until_due",
            "default_payment_method",
            base=EXPAND,
        ),
        NO_COUPONS,
    ),
    Route("GET", "/v1/subscriptions/{id}", retrieve("subscription"), EXPAND),
    Route(
        "POST",
        "/v1/subscriptions/{id}",
        subscriptions.update,
        _p(
            "items",
            "cancel_at_period_end",
            "cancel_at",
            "metadata",
            "pause_collection",
            "trial_end",
            "discounts",
            "collection_method",
            "days_until_due",
            "default_payment_method",
            base=EXPAND,
        ),
        NO_COUPONS,
    ),
    Route("DELETE", "/v1/subscriptions/{id}", subscriptions.cancel, NONE),
    Route("POST", "/v1/subscriptions/{id}/resume", subscriptions.resume, EXPAND),
    Route("GET", "/v1/subscription_items", subscriptions.list_items, _p("subscription", base=PAGE)),
    Route("GET", "/v1/subscription_items/{id}", retrieve("subscription_item"), EXPAND),
    Route(
        "GET",
        "/v1/subscription_schedules",
        collection("subscription_schedule", schedules.matches),
        _p("customer", base=LIST),
    ),
    Route(
        "POST",
        "/v1/subscription_schedules",
        schedules.create,
        _p("customer", "start_date", "end_behavior", "phases", "metadata", base=EXPAND),
        NO_COUPONS,
    ),
    Route("GET", "/v1/subscription_schedules/{id}", retrieve("subscription_schedule"), EXPAND),
    Route(
        "POST",
        "/v1/subscription_schedules/{id}",
        schedules.update,
        _p("metadata", "end_behavior", base=EXPAND),
    ),
    Route(
        "POST",
        "/v1/subscription_schedules/{id}/cancel",
        schedules.cancel,
        _p("invoice_now", "prorate", base=EXPAND),
    ),
    Route(
        "POST",
        "/v1/subscription_schedules/{id}/release",
        schedules.release,
        _p("preserve_cancel_date", base=EXPAND),
    ),
    # --- invoices, invoice items, credit notes, quotes ---
    Route(
        "GET",
        "/v1/invoices",
        collection("invoice", invoices.matches),
        _p("customer", "status", "subscription", base=LIST),
    ),
    Route(
        "POST",
        "/v1/invoices",
        invoices.create,
        _p(
            "customer",
            "collection_method",
            "days_until_due",
            "auto_advance",
            "description",
            "metadata",
            "currency",
            "pending_invoice_items_behavior",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/invoices/{id}", retrieve("invoice"), EXPAND),
    Route(
        "POST",
        "/v1/invoices/{id}",
        invoices.update,
        _p(
            "description",
            "auto_advance",
            "collection_method",
            "days_until_due",
            "default_payment_method",
            "due_date",
            "metadata",
            base=EXPAND,
        ),
    ),
    Route("DELETE", "/v1/invoices/{id}", invoices.delete, NONE),
    Route("GET", "/v1/invoices/{id}/lines", invoices.lines, PAGE),
    Route("POST", "/v1/invoices/{id}/finalize", invoices.finalize, EXPAND),
    Route(
        "POST",
        "/v1/invoices/{id}/pay",
        invoices.pay,
        _p("paid_out_of_band", "payment_method", "source", base=EXPAND),
    ),
    Route("POST", "/v1/invoices/{id}/send", invoices.send, EXPAND),
    Route("POST", "/v1/invoices/{id}/void", invoices.void, EXPAND),
    Route("POST", "/v1/invoices/{id}/mark_uncollectible", invoices.mark_uncollectible, EXPAND),
    Route(
        "GET",
        "/v1/invoiceitems",
        collection("invoiceitem", invoices.item_matches),
        _p("customer", "invoice", "pending", base=LIST),
    ),
    Route(
        "POST",
        "/v1/invoiceitems",
        invoices.create_item,
        _p("customer", "amount", "currency", "description", "invoice", "metadata", "period", base=EXPAND),
    ),
    Route("GET", "/v1/invoiceitems/{id}", retrieve("invoiceitem"), EXPAND),
    Route("DELETE", "/v1/invoiceitems/{id}", invoices.delete_item, NONE),
    Route(
        "GET",
        "/v1/credit_notes",
        collection("credit_note", credit_notes.matches),
        _p("customer", "invoice", base=LIST),
    ),
    Route(
        "POST",
        "/v1/credit_notes",
        credit_notes.create,
        _p(
            "invoice",
            "lines",
            "amount",
            "credit_amount",
            "refund_amount",
            "out_of_band_amount",
            "memo",
            "metadata",
            "reason",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/credit_notes/{id}", retrieve("credit_note"), EXPAND),
    Route("POST", "/v1/credit_notes/{id}", credit_notes.update, _p("memo", "metadata", base=EXPAND)),
    Route("POST", "/v1/credit_notes/{id}/void", credit_notes.void, EXPAND),
    Route("GET", "/v1/credit_notes/{id}/lines", credit_notes.lines, PAGE),
    Route(
        "GET",
        "/v1/quotes",
        collection("quote", quotes.matches),
        _p("customer", "status", "test_clock", base=PAGE),
    ),
    Route(
        "POST",
        "/v1/quotes",
        quotes.create,
        _p(
            "customer",
            "line_items",
            "description",
            "header",
            "footer",
            "metadata",
            "collection_method",
            "expires_at",
            "test_clock",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/quotes/{id}", retrieve("quote"), EXPAND),
    Route("GET", "/v1/quotes/{id}/line_items", quotes.line_items, PAGE),
    Route("POST", "/v1/quotes/{id}/finalize", quotes.finalize, _p("expires_at", base=EXPAND)),
    Route("POST", "/v1/quotes/{id}/accept", quotes.accept, EXPAND),
    Route("POST", "/v1/quotes/{id}/cancel", quotes.cancel, EXPAND),
    # --- payments: payment intents, charges, refunds ---
    Route(
        "GET",
        "/v1/payment_intents",
        collection("payment_intent", payments.intent_matches),
        _p("customer", base=LIST),
    ),
    Route(
        "POST",
        "/v1/payment_intents",
        payments.create_intent,
        _p(
            "amount",
            "currency",
            "customer",
            "description",
            "metadata",
            "payment_method",
            "confirm",
            "off_session",
            base=EXPAND,
        ),
        NO_PAYMENT_METHOD_TYPES,
    ),
    Route("GET", "/v1/payment_intents/{id}", retrieve("payment_intent"), EXPAND),
    Route(
        "GET",
        "/v1/charges",
        collection("charge", payments.charge_matches),
        _p("customer", "payment_intent", base=LIST),
    ),
    Route("GET", "/v1/charges/{id}", retrieve("charge"), EXPAND),
    Route(
        "GET",
        "/v1/refunds",
        collection("refund", payments.refund_matches),
        _p("charge", "payment_intent", base=LIST),
    ),
    Route(
        "POST",
        "/v1/refunds",
        payments.create_refund,
        _p("charge", "payment_intent", "amount", "reason", "metadata", base=EXPAND),
    ),
    Route("GET", "/v1/refunds/{id}", retrieve("refund"), EXPAND),
    # --- test clocks ---
    Route("GET", "/v1/test_helpers/test_clocks", collection(clocks.KIND), PAGE),
    Route("POST", "/v1/test_helpers/test_clocks", clocks.create, _p("frozen_time", "name", base=EXPAND)),
    Route("GET", "/v1/test_helpers/test_clocks/{id}", clocks.retrieve, EXPAND),
    Route("DELETE", "/v1/test_helpers/test_clocks/{id}", clocks.delete, NONE),
    Route(
        "POST", "/v1/test_helpers/test_clocks/{id}/advance", clocks.advance, _p("frozen_time", base=EXPAND)
    ),
    # --- events and webhook endpoints ---
    Route(
        "GET",
        "/v1/events",
        events.list_events,
        _p("type", "types", base=LIST),
    ),
    Route("GET", "/v1/events/{id}", events.retrieve_event, EXPAND),
    Route(
        "GET",
        "/v1/webhook_endpoints",
        collection("webhook_endpoint", source=lambda sb, a: list(a.endpoints.values())),
        PAGE,
    ),
    Route(
        "POST",
        "/v1/webhook_endpoints",
        events.create_endpoint,
        _p("url", "enabled_events", "connect", "description", "secret", base=EXPAND),
    ),
    Route("GET", "/v1/webhook_endpoints/{id}", events.retrieve_endpoint, EXPAND),
    Route("DELETE", "/v1/webhook_endpoints/{id}", events.delete_endpoint, NONE),
)

# The parameters each route implements, by its key: what the contract test checks.
SUPPORTED_PARAMS: dict[str, frozenset[str]] = {route.key: route.params for route in ROUTES}
