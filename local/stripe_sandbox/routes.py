"""Every route of Stripe's API the sandbox serves: its method, path, handler and the parameters it
implements, one declaration each.

The parameters are checked against the stripe SDK's own parameter types for that endpoint
(tests/unit/test_sandbox_contract.py); any other parameter is Stripe's 400 ``parameter_unknown``,
never silently ignored. ``secret`` on webhook endpoints is the sandbox's one extension.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from local.stripe_sandbox import (
    catalog,
    connect,
    customers,
    discounts,
    events,
    invoices,
    subscriptions,
)
from local.stripe_sandbox.rest import Handler, collection, retrieve


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as Stripe documents it, ids in braces: /v1/customers/{id}
    handler: Handler
    params: frozenset[str]

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


EXPAND = frozenset({"expand"})
PAGE = _p("limit", "starting_after", "ending_before", base=EXPAND)  # an embedded list's pages
LIST = _p("created", base=PAGE)  # a list of the account's objects


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/account", connect.retrieve_account, EXPAND),
    # --- the catalog ---
    Route("GET", "/v1/products", collection("product"), LIST),
    Route(
        "POST",
        "/v1/products",
        catalog.create_product,
        _p("id", "name", "description", "metadata", base=EXPAND),
    ),
    Route("GET", "/v1/products/{id}", retrieve("product"), EXPAND),
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
    # --- customers ---
    Route("GET", "/v1/customers", collection("customer", customers.matches), _p("email", base=LIST)),
    Route(
        "POST",
        "/v1/customers",
        customers.create,
        _p("email", "name", "description", "metadata", "balance", "payment_method", base=EXPAND),
    ),
    Route("GET", "/v1/customers/{id}", retrieve("customer"), EXPAND),
    Route(
        "POST",
        "/v1/customers/{id}",
        customers.update,
        _p("email", "name", "description", "metadata", "balance", base=EXPAND),
    ),
    Route("DELETE", "/v1/customers/{id}", customers.delete, frozenset()),
    Route("DELETE", "/v1/customers/{id}/discount", discounts.delete_customer_discount, frozenset()),
    # --- subscriptions ---
    Route(
        "GET",
        "/v1/subscriptions",
        collection("subscription", subscriptions.matches),
        _p("status", "customer", base=LIST),
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
            "metadata",
            "discounts",
            "collection_method",
            "days_until_due",
            base=EXPAND,
        ),
    ),
    Route("GET", "/v1/subscriptions/{id}", retrieve("subscription"), EXPAND),
    Route(
        "POST",
        "/v1/subscriptions/{id}",
        subscriptions.update,
        _p(
            "items",
            "cancel_at_period_end",
            "metadata",
            "pause_collection",
            "trial_end",
            "discounts",
            "collection_method",
            "days_until_due",
            base=EXPAND,
        ),
    ),
    Route("DELETE", "/v1/subscriptions/{id}", subscriptions.cancel, frozenset()),
    Route("POST", "/v1/subscriptions/{id}/resume", subscriptions.resume, EXPAND),
    Route("GET", "/v1/subscription_items", subscriptions.list_items, _p("subscription", base=PAGE)),
    Route("GET", "/v1/subscription_items/{id}", retrieve("subscription_item"), EXPAND),
    # --- invoices ---
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
    Route("GET", "/v1/invoices/{id}/lines", invoices.lines, PAGE),
    Route("POST", "/v1/invoices/{id}/finalize", invoices.finalize, EXPAND),
    Route("POST", "/v1/invoices/{id}/pay", invoices.pay, _p("paid_out_of_band", base=EXPAND)),
    Route("POST", "/v1/invoices/{id}/void", invoices.void, EXPAND),
    Route("POST", "/v1/invoices/{id}/mark_uncollectible", invoices.mark_uncollectible, EXPAND),
    Route("GET", "/v1/invoiceitems", collection("invoiceitem"), LIST),
    Route(
        "POST",
        "/v1/invoiceitems",
        invoices.create_item,
        _p("customer", "amount", "currency", "description", "invoice", "metadata", "period", base=EXPAND),
    ),
    Route("GET", "/v1/invoiceitems/{id}", retrieve("invoiceitem"), EXPAND),
    # --- events and webhook endpoints ---
    Route(
        "GET",
        "/v1/events",
        collection("event", events.matches, lambda sb, a: list(a.events)),
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
    Route("DELETE", "/v1/webhook_endpoints/{id}", events.delete_endpoint, frozenset()),
)

# The parameters each route implements, by its key: what the contract test checks.
SUPPORTED_PARAMS: dict[str, frozenset[str]] = {route.key: route.params for route in ROUTES}
