"""The sandbox's Stripe: accounts, objects, billing, events. Plain dicts in Stripe's current shapes.

Simplifications, by design: every interval is a fixed number of days (month = 30), payments succeed
unless a customer is set to fail, and an invoice bills the subscription's items with its discounts.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local.stripe_sandbox.forms import as_bool, as_int
from local.stripe_sandbox.shapes import API_VERSION, public

DAY = 86_400
INTERVAL_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
HIDDEN_BY_DEFAULT = ("canceled", "incomplete_expired")  # subscription list without status=all


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        rate_limited_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.rate_limited_reason = rate_limited_reason  # a 429's Stripe-Rate-Limited-Reason

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


def not_found(kind: str, object_id: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param="id")


@dataclass
class Account:
    id: str
    key: str | None = None  # the secret key that owns it; None for accounts created by OAuth
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # kind -> id -> object
    events: list[dict[str, Any]] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    platform: str | None = None  # the platform account it is connected to (OAuth)
    failing_customers: set[str] = field(default_factory=set)

    def table(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(kind, {})

    def find(self, object_id: str) -> dict[str, Any] | None:
        for table in self.objects.values():
            if object_id in table:
                return table[object_id]
        return None


@dataclass
class Delivery:
    due: float
    endpoint: dict[str, Any]
    event: dict[str, Any]
    attempt: int = 0


class Sandbox:
    """All accounts and their state; every public method runs under one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.by_key: dict[str, Account] = {}
        self.clock_offset = 0
        self.codes: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] = {
            "rate_limit_per_second": None,  # the account's global limit (Stripe: 100 live, 25 test)
            "endpoint_rate_limit_per_second": None,  # each endpoint's (Stripe's default: 25)
            "endpoint_rate_limits": {},  # per endpoint, e.g. {"GET /v1/invoices": 50}
            "concurrency_limit": None,  # requests in flight per account
            "latency_ms": 0,
            "delivery_delay_ms": 0,
            "delivery_duplicate_ratio": 0.0,
            "delivery_reorder": False,
            "oauth_auto_approve": True,
            "fail_next_requests": 0,  # answer this many API requests with a 500 (an outage)
            # Share of webhook deliveries lost (the event stays listable at /v1/events).
            "delivery_drop_ratio": 0.0,
        }
        self.outbox: list[Delivery] = []
        self.delivery_listeners: list[Callable[[], None]] = []
        self.stats: dict[str, int] = {}
        self._seq = itertools.count(1)

    # --- identity -------------------------------------------------------------------------------

    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._seq):06d}{secrets.token_hex(5)}"

    def account_for_key(self, key: str) -> Account:
        if not key.startswith(("sk_test_", "rk_test_", "sk_live_", "rk_live_")):
            raise StripeError(
                401, "Invalid API Key provided", type_="invalid_request_error", code="api_key_invalid"
            )
        account = self.by_key.get(key)
        if account is None:
            account = Account(id="acct_" + hashlib.sha256(key.encode()).hexdigest()[:16], key=key)
            self.by_key[key] = account
            self.accounts[account.id] = account
        return account

    def resolve(self, key: str, stripe_account: str | None) -> Account:
        caller = self.account_for_key(key)
        if not stripe_account:
            return caller
        connected = self.accounts.get(stripe_account)
        if connected is None or connected.platform != caller.id:
            raise StripeError(
                403,
                "The provided key does not have access to account "
                f"'{stripe_account}' (or that account does not exist).",
                type_="invalid_request_error",
                code="account_invalid",
            )
        return connected

    # --- events and delivery --------------------------------------------------------------------

    def emit(
        self, account: Account, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": obj}
        if previous:
            data["previous_attributes"] = previous
        event: dict[str, Any] = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "type": event_type,
            "request": {"id": None, "idempotency_key": None},
        }
        if account.platform:
            event["account"] = account.id
        event = public(event)  # a copy, shaped as the claimed version defines it
        account.events.append(event)
        for endpoint in self._endpoints_for(account):
            if "*" in endpoint["enabled_events"] or event_type in endpoint["enabled_events"]:
                self._schedule(endpoint, event)
        return event

    def _endpoints_for(self, account: Account) -> list[dict[str, Any]]:
        own = [e for e in account.endpoints.values() if not e["connect"]]
        platform = self.accounts.get(account.platform) if account.platform else None
        connect = [e for e in platform.endpoints.values() if e["connect"]] if platform else []
        return [e for e in own + connect if e["status"] == "enabled"]

    def _schedule(self, endpoint: dict[str, Any], event: dict[str, Any]) -> None:
        import random  # noqa: PLC0415 (only delivery uses it)

        if random.random() < float(self.settings["delivery_drop_ratio"]):  # noqa: S311
            self.stats["deliveries dropped"] = self.stats.get("deliveries dropped", 0) + 1
            return
        delay = self.settings["delivery_delay_ms"] / 1000
        copies = 2 if random.random() < float(self.settings["delivery_duplicate_ratio"]) else 1  # noqa: S311
        for _ in range(copies):
            jitter = random.uniform(0, max(delay, 0.05)) if self.settings["delivery_reorder"] else 0  # noqa: S311
            self.outbox.append(Delivery(time.monotonic() + delay + jitter, endpoint, event))
        for listener in self.delivery_listeners:
            listener()

    # --- generic object handling ----------------------------------------------------------------

    def get(self, account: Account, kind: str, object_id: str) -> dict[str, Any]:
        obj = account.table(kind).get(object_id)
        if obj is None:
            raise not_found(kind, object_id)
        return obj

    def put(self, account: Account, obj: dict[str, Any]) -> dict[str, Any]:
        account.table(obj["object"])[obj["id"]] = obj
        return obj

    # --- products, prices, coupons --------------------------------------------------------------

    def create_product(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return self.put(
            account,
            {
                "id": params.get("id") or self.new_id("prod"),
                "object": "product",
                "name": params.get("name", "Product"),
                "active": True,
                "created": self.now(),
                "metadata": params.get("metadata", {}),
                "livemode": False,
                "default_price": None,
                "description": params.get("description"),
                "type": "service",
            },
        )

    def create_price(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        product = params.get("product")
        if not product and isinstance(params.get("product_data"), dict):
            product = self.create_product(account, params["product_data"])["id"]
        if not product:
            raise StripeError(400, "Missing required param: product.", param="product")
        recurring = params.get("recurring") or {}
        tiers = [
            {
                "up_to": None if t.get("up_to") in (None, "inf") else int(t["up_to"]),
                "unit_amount": as_int(t.get("unit_amount")),
                "unit_amount_decimal": t.get("unit_amount"),
                "flat_amount": as_int(t.get("flat_amount")),
                "flat_amount_decimal": t.get("flat_amount"),
            }
            for t in params.get("tiers", [])
        ]
        transform = params.get("transform_quantity")
        unit = as_int(params.get("unit_amount"))
        return self.put(
            account,
            {
                "id": params.get("id") or self.new_id("price"),
                "object": "price",
                "active": True,
                "billing_scheme": params.get("billing_scheme", "per_unit"),
                "currency": params.get("currency", "usd"),
                "created": self.now(),
                "livemode": False,
                "lookup_key": params.get("lookup_key"),
                "metadata": params.get("metadata", {}),
                "nickname": params.get("nickname"),
                "product": product,
                "recurring": {
                    "interval": recurring.get("interval", "month"),
                    "interval_count": as_int(recurring.get("interval_count"), 1),
                    "usage_type": recurring.get("usage_type", "licensed"),
                    "meter": None,
                    "trial_period_days": None,
                }
                if recurring or params.get("type") != "one_time"
                else None,
                "tax_behavior": "unspecified",
                "tiers_mode": params.get("tiers_mode"),
                "tiers": tiers or None,
                "transform_quantity": {"divide_by": int(transform["divide_by"]), "round": transform["round"]}
                if transform
                else None,
                "type": "recurring",
                "unit_amount": unit,
                "unit_amount_decimal": None if unit is None else str(unit),
            },
        )

    def create_coupon(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        percent = params.get("percent_off")
        duration = params.get("duration", "once")
        return self.put(
            account,
            {
                "id": params.get("id") or self.new_id("co"),
                "object": "coupon",
                "created": self.now(),
                "amount_off": as_int(params.get("amount_off")),
                "currency": params.get("currency"),
                "duration": duration,
                "duration_in_months": as_int(params.get("duration_in_months")),
                "percent_off": float(percent) if percent is not None else None,
                "livemode": False,
                "valid": True,
                "metadata": params.get("metadata", {}),
                "name": params.get("name"),
                "times_redeemed": 0,
                "max_redemptions": None,
                "redeem_by": None,
            },
        )

    def _discount(
        self, account: Account, coupon_id: str, customer: str, subscription: str | None
    ) -> dict[str, Any]:
        coupon = self.get(account, "coupon", coupon_id)
        start = self.now()
        end = (
            start + 30 * DAY * int(coupon["duration_in_months"] or 0)
            if coupon["duration"] == "repeating"
            else None
        )
        return self.put(
            account,
            {
                "id": self.new_id("di"),
                "object": "discount",
                "customer": customer,
                "subscription": subscription,
                "subscription_item": None,
                "invoice": None,
                "invoice_item": None,
                "promotion_code": None,
                "checkout_session": None,
                "customer_account": None,
                "source": {"type": "coupon", "coupon": coupon_id},
                "start": start,
                "end": end,
            },
        )

    # --- customers ------------------------------------------------------------------------------

    def create_customer(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.put(
            account,
            {
                "id": params.get("id") or self.new_id("cus"),
                "object": "customer",
                "created": self.now(),
                "email": params.get("email"),
                "name": params.get("name"),
                "description": params.get("description"),
                "metadata": dict(params.get("metadata", {})),
                "currency": None,
                "balance": as_int(params.get("balance"), 0),
                "delinquent": False,
                "discount": None,
                "livemode": False,
                "phone": None,
                "address": None,
                "invoice_prefix": secrets.token_hex(4).upper(),
                "tax_exempt": "none",
                "test_clock": None,
                "default_source": None,
                "invoice_settings": {"default_payment_method": params.get("payment_method")},
            },
        )
        self.emit(account, "customer.created", customer)
        return customer

    def set_customer_coupon(self, account: Account, customer: dict[str, Any], coupon_id: str) -> None:
        previous = {"discount": copy.deepcopy(customer["discount"])}
        discount = self._discount(account, coupon_id, customer["id"], None)
        customer["discount"] = discount
        self.emit(account, "customer.discount.created", discount)
        self.emit(account, "customer.updated", customer, previous)

    def update_customer(self, account: Account, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.get(account, "customer", customer_id)
        if customer.get("deleted"):
            raise not_found("customer", customer_id)
        previous: dict[str, Any] = {}
        for key in ("email", "name", "description", "balance"):
            if key in params:
                value = as_int(params[key]) if key == "balance" else (params[key] or None)
                if customer[key] != value:
                    previous[key], customer[key] = customer[key], value
        if "metadata" in params:
            new = dict(customer["metadata"])
            for key, value in (params["metadata"] or {}).items():
                if value in ("", None):
                    new.pop(key, None)
                else:
                    new[key] = value
            if new != customer["metadata"]:
                previous["metadata"] = {
                    k: customer["metadata"].get(k)
                    for k in set(new) | set(customer["metadata"])
                    if new.get(k) != customer["metadata"].get(k)
                }
                customer["metadata"] = new
        if previous:
            self.emit(account, "customer.updated", customer, previous)

        return customer

    def delete_customer_discount(self, account: Account, customer_id: str) -> dict[str, Any]:
        customer = self.get(account, "customer", customer_id)
        discount = customer["discount"]
        if discount is None:
            raise StripeError(404, "No active discount for this customer.", code="resource_missing")
        customer["discount"] = None
        self.emit(account, "customer.discount.deleted", discount)
        self.emit(account, "customer.updated", customer, {"discount": discount})
        return {"object": "discount", "deleted": True, "id": discount["id"]}

    def delete_customer(self, account: Account, customer_id: str) -> dict[str, Any]:
        customer = self.get(account, "customer", customer_id)
        if customer.get("deleted"):
            raise not_found("customer", customer_id)
        for subscription in list(account.table("subscription").values()):
            if subscription["customer"] == customer_id and subscription["status"] not in HIDDEN_BY_DEFAULT:
                self._end(account, subscription, self.now())
        self.emit(account, "customer.deleted", customer)
        account.table("customer")[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}
        return {"id": customer_id, "object": "customer", "deleted": True}

    def set_payment_failure(self, account: Account, customer_id: str, failing: bool) -> None:
        self.get(account, "customer", customer_id)
        (account.failing_customers.add if failing else account.failing_customers.discard)(customer_id)

    # --- subscriptions --------------------------------------------------------------------------

    def _item(
        self, account: Account, sub_id: str, spec: dict[str, Any], period: tuple[int, int]
    ) -> dict[str, Any]:
        price = self.get(account, "price", spec["price"])
        return {
            "id": self.new_id("si"),
            "object": "subscription_item",
            "created": self.now(),
            "subscription": sub_id,
            "price": copy.deepcopy(price),
            "plan": _plan_of(price),
            "quantity": as_int(spec.get("quantity"), 1),
            "current_period_start": period[0],
            "current_period_end": period[1],
            "discounts": [],
            "metadata": spec.get("metadata", {}),
            "tax_rates": [],
            "billing_thresholds": None,
        }

    def create_subscription(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.get(account, "customer", str(params.get("customer")))
        if customer.get("deleted"):
            raise not_found("customer", customer["id"])
        specs = params.get("items") or []
        if not specs:
            raise StripeError(400, "Missing required param: items.", param="items")
        now = self.now()
        trial_end = as_int(params.get("trial_end"))
        if params.get("trial_period_days"):
            trial_end = now + DAY * int(params["trial_period_days"])
        sub_id = self.new_id("sub")
        first_price = self.get(account, "price", specs[0]["price"])
        period = (now, trial_end if trial_end else now + _period_seconds(first_price))
        subscription: dict[str, Any] = {
            "id": sub_id,
            "object": "subscription",
            "customer": customer["id"],
            "created": now,
            "start_date": now,
            "status": "trialing" if trial_end else "active",
            "currency": first_price["currency"],
            "trial_start": now if trial_end else None,
            "trial_end": trial_end,
            "cancel_at_period_end": as_bool(params.get("cancel_at_period_end", False)),
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "discounts": [],
            "metadata": params.get("metadata", {}),
            "livemode": False,
            "latest_invoice": None,
            "pause_collection": None,
            "billing_cycle_anchor": now,
            "collection_method": _collection_method(params),
            "days_until_due": as_int(params.get("days_until_due")),
            "test_clock": None,
            "trial_settings": {
                "end_behavior": {
                    "missing_payment_method": (params.get("trial_settings") or {})
                    .get("end_behavior", {})
                    .get("missing_payment_method", "create_invoice")
                }
            },
            "items": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
        }
        subscription["items"]["data"] = [self._item(account, sub_id, spec, period) for spec in specs]
        self.put(account, subscription)
        if customer["currency"] is None:
            customer["currency"] = subscription["currency"]
            self.emit(account, "customer.updated", customer, {"currency": None})
        for coupon_id in _coupon_ids(params):
            subscription["discounts"].append(self._discount(account, coupon_id, customer["id"], sub_id)["id"])
        self.emit(account, "customer.subscription.created", subscription)
        if subscription["status"] == "active":
            self._bill(account, subscription, "subscription_create")
        return subscription

    def update_subscription(self, account: Account, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        subscription = self.get(account, "subscription", sub_id)
        if subscription["status"] in HIDDEN_BY_DEFAULT:
            raise StripeError(
                400, "A canceled subscription can only update its cancellation_details and metadata."
            )
        before = copy.deepcopy(subscription)
        items = subscription["items"]["data"]
        period = (
            (items[0]["current_period_start"], items[0]["current_period_end"])
            if items
            else (self.now(), self.now())
        )
        for spec in params.get("items", []):
            existing = next((i for i in items if i["id"] == spec.get("id")), None)
            if existing is None:
                items.append(self._item(account, sub_id, spec, period))
            elif as_bool(spec.get("deleted", False)):
                items.remove(existing)
            else:
                if spec.get("price"):
                    price = self.get(account, "price", spec["price"])
                    existing["price"], existing["plan"] = copy.deepcopy(price), _plan_of(price)
                if spec.get("quantity") is not None:
                    existing["quantity"] = int(spec["quantity"])
        if "cancel_at_period_end" in params:
            subscription["cancel_at_period_end"] = as_bool(params["cancel_at_period_end"])
            subscription["canceled_at"] = self.now() if subscription["cancel_at_period_end"] else None
        if "metadata" in params:
            subscription["metadata"] = {**subscription["metadata"], **params["metadata"]}
        if "pause_collection" in params:
            subscription["pause_collection"] = params["pause_collection"] or None
        if "collection_method" in params:
            subscription["collection_method"] = _collection_method(params)
        if "days_until_due" in params:
            subscription["days_until_due"] = as_int(params["days_until_due"])
        if params.get("trial_end") == "now" and subscription["status"] == "trialing":
            self._end_trial(account, subscription)
            return subscription
        added = [self._discount(account, c, subscription["customer"], sub_id) for c in _coupon_ids(params)]
        subscription["discounts"].extend(d["id"] for d in added)
        for discount in added:
            self.emit(account, "customer.discount.created", discount)
        previous = {k: before[k] for k in subscription if subscription[k] != before.get(k)}
        if previous:
            self.emit(account, "customer.subscription.updated", subscription, previous)
        return subscription

    def cancel_subscription(self, account: Account, sub_id: str) -> dict[str, Any]:
        subscription = self.get(account, "subscription", sub_id)
        if subscription["status"] in HIDDEN_BY_DEFAULT:
            raise StripeError(400, "This subscription is already canceled.")
        self._end(account, subscription, self.now())
        return subscription

    def resume_subscription(self, account: Account, sub_id: str) -> dict[str, Any]:
        subscription = self.get(account, "subscription", sub_id)
        if subscription["status"] != "paused":
            raise StripeError(400, "Only a paused subscription can be resumed.")
        previous = {"status": "paused"}
        subscription["status"] = "active"
        self._start_period(subscription, self.now())
        self.emit(account, "customer.subscription.resumed", subscription, previous)
        self._bill(account, subscription, "subscription_cycle")
        return subscription

    def _end(self, account: Account, subscription: dict[str, Any], at: int) -> None:
        previous = {"status": subscription["status"]}
        subscription.update(status="canceled", ended_at=at, canceled_at=subscription["canceled_at"] or at)
        self.emit(account, "customer.subscription.deleted", subscription, previous)

    def _start_period(self, subscription: dict[str, Any], start: int) -> None:
        for item in subscription["items"]["data"]:
            item["current_period_start"] = start
            item["current_period_end"] = start + _period_seconds(item["price"])

    def _end_trial(self, account: Account, subscription: dict[str, Any]) -> None:
        previous = {"status": "trialing", "trial_end": subscription["trial_end"]}
        now = self.now()
        customer = self.get(account, "customer", subscription["customer"])
        no_payment_method = not customer["invoice_settings"].get("default_payment_method")
        pause = subscription["trial_settings"]["end_behavior"]["missing_payment_method"] == "pause"
        subscription["trial_end"] = min(subscription["trial_end"] or now, now)
        if pause and no_payment_method:
            subscription["status"] = "paused"
            self.emit(account, "customer.subscription.paused", subscription, previous)
            return
        subscription["status"] = "active"
        self._start_period(subscription, subscription["trial_end"])
        self.emit(account, "customer.subscription.updated", subscription, previous)
        self._bill(account, subscription, "subscription_cycle")

    # --- invoices -------------------------------------------------------------------------------

    def _bill(self, account: Account, subscription: dict[str, Any], reason: str) -> dict[str, Any]:
        now = self.now()
        lines, subtotal = [], 0
        for item in subscription["items"]["data"]:
            amount = _item_amount(item)
            subtotal += amount
            lines.append(
                {
                    "id": self.new_id("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": subscription["currency"],
                    "description": item["price"].get("nickname"),
                    "discountable": True,
                    "livemode": False,
                    "metadata": {},
                    "quantity": item["quantity"],
                    "period": {"start": item["current_period_start"], "end": item["current_period_end"]},
                    "parent": {
                        "type": "subscription_item_details",
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "subscription": subscription["id"],
                            "subscription_item": item["id"],
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                        },
                    },
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": item["price"]["id"], "product": item["price"]["product"]},
                        "unit_amount_decimal": item["price"]["unit_amount_decimal"],
                    },
                }
            )
        total = max(0, round(self._discounted(account, subscription, subtotal)))
        invoice_id = self.new_id("in")
        for line in lines:
            line["invoice"] = invoice_id
        items = subscription["items"]["data"]
        invoice = self.put(
            account,
            {
                "id": invoice_id,
                "object": "invoice",
                "customer": subscription["customer"],
                "created": now,
                "currency": subscription["currency"],
                "status": "open",
                "amount_due": total,
                "amount_paid": 0,
                "amount_remaining": total,
                "subtotal": subtotal,
                "total": total,
                "billing_reason": reason,
                "period_start": items[0]["current_period_start"] if items else now,
                "period_end": items[0]["current_period_end"] if items else now,
                "livemode": False,
                "metadata": {},
                "lines": {
                    "object": "list",
                    "data": lines,
                    "has_more": False,
                    "url": f"/v1/invoices/{invoice_id}/lines",
                },
                "parent": {
                    "type": "subscription_details",
                    "quote_details": None,
                    "subscription_details": {"subscription": subscription["id"], "metadata": {}},
                },
                "status_transitions": {
                    "finalized_at": now,
                    "paid_at": None,
                    "marked_uncollectible_at": None,
                    "voided_at": None,
                },
                "attempt_count": 0,
                "attempted": False,
                "collection_method": subscription["collection_method"],
                "due_date": None,
                "auto_advance": True,
            },
        )
        subscription["latest_invoice"] = invoice_id
        self.emit(account, "invoice.created", invoice)
        self.emit(account, "invoice.finalized", invoice)
        if subscription["collection_method"] == "send_invoice":
            # Sent to the customer, paid later (``POST /v1/invoices/{id}/pay``, or out of band).
            invoice["due_date"] = now + DAY * int(subscription.get("days_until_due") or 30)
            self.emit(account, "invoice.sent", invoice)
            return invoice
        invoice.update(attempt_count=1, attempted=True)
        if subscription["customer"] in account.failing_customers and total > 0:
            self.emit(account, "invoice.payment_failed", invoice)
            if subscription["status"] == "active":
                subscription["status"] = "past_due"
                self.emit(account, "customer.subscription.updated", subscription, {"status": "active"})
            return invoice
        invoice.update(status="paid", amount_paid=total, amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = now
        self.emit(account, "invoice.paid", invoice)
        self.emit(account, "invoice.payment_succeeded", invoice)
        if subscription["status"] == "past_due":
            subscription["status"] = "active"
            self.emit(account, "customer.subscription.updated", subscription, {"status": "past_due"})
        return invoice

    def _discounted(self, account: Account, subscription: dict[str, Any], amount: float) -> float:
        now = self.now()
        customer = self.get(account, "customer", subscription["customer"])
        discounts = [
            account.table("discount")[d] for d in subscription["discounts"] if d in account.table("discount")
        ]
        if customer.get("discount"):
            discounts.append(customer["discount"])
        for discount in discounts:
            coupon = account.table("coupon").get(discount["source"]["coupon"])
            if coupon is None or (discount["end"] is not None and discount["end"] <= now):
                continue
            if coupon["percent_off"] is not None:
                amount -= amount * coupon["percent_off"] / 100
            elif coupon["amount_off"] is not None:
                amount -= coupon["amount_off"]
        return amount

    # --- one-off invoices and the invoice lifecycle ----------------------------------------------

    def create_invoice_item(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        customer = self.get(account, "customer", str(params.get("customer")))
        amount = as_int(params.get("amount"))
        if amount is None:
            raise StripeError(400, "Missing required param: amount.", param="amount")
        now = self.now()
        period = params.get("period") or {}
        item = self.put(
            account,
            {
                "id": self.new_id("ii"),
                "object": "invoiceitem",
                "customer": customer["id"],
                "amount": amount,
                "currency": params.get("currency") or customer["currency"] or "usd",
                "description": params.get("description"),
                "date": now,
                "invoice": params.get("invoice"),
                "livemode": False,
                "metadata": params.get("metadata", {}),
                "period": {"start": as_int(period.get("start"), now), "end": as_int(period.get("end"), now)},
                "quantity": 1,
                "quantity_decimal": "1",
            },
        )
        self.emit(account, "invoiceitem.created", item)
        return item

    def create_invoice(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """A draft for a customer, holding its pending invoice items (``pending_invoice_items_behavior``
        ``include``, Stripe's default for a customer's first draft)."""
        customer = self.get(account, "customer", str(params.get("customer")))
        now = self.now()
        invoice_id = self.new_id("in")
        pending = [
            i
            for i in account.table("invoiceitem").values()
            if i["customer"] == customer["id"] and not i["invoice"]
        ]
        if params.get("pending_invoice_items_behavior") == "exclude":
            pending = []
        lines = []
        for item in pending:
            item["invoice"] = invoice_id
            lines.append(
                {
                    "id": self.new_id("il"),
                    "object": "line_item",
                    "amount": item["amount"],
                    "currency": item["currency"],
                    "description": item["description"],
                    "discountable": True,
                    "invoice": invoice_id,
                    "livemode": False,
                    "metadata": {},
                    "quantity": 1,
                    "period": item["period"],
                    "parent": {
                        "type": "invoice_item_details",
                        "invoice_item_details": {"invoice_item": item["id"], "subscription": None},
                        "subscription_item_details": None,
                    },
                    "pricing": None,
                }
            )
        total = sum(line["amount"] for line in lines)
        method = _collection_method(params)
        invoice = self.put(
            account,
            {
                "id": invoice_id,
                "object": "invoice",
                "customer": customer["id"],
                "created": now,
                "currency": params.get("currency") or customer["currency"] or "usd",
                "status": "draft",
                "amount_due": total,
                "amount_paid": 0,
                "amount_remaining": total,
                "subtotal": total,
                "total": total,
                "billing_reason": "manual",
                "period_start": now,
                "period_end": now,
                "livemode": False,
                "description": params.get("description"),
                "metadata": params.get("metadata", {}),
                "lines": {
                    "object": "list",
                    "data": lines,
                    "has_more": False,
                    "url": f"/v1/invoices/{invoice_id}/lines",
                },
                "parent": None,
                "status_transitions": {
                    "finalized_at": None,
                    "paid_at": None,
                    "marked_uncollectible_at": None,
                    "voided_at": None,
                },
                "attempt_count": 0,
                "attempted": False,
                "collection_method": method,
                "due_date": now + DAY * int(params.get("days_until_due") or 30)
                if method == "send_invoice"
                else None,
                "auto_advance": as_bool(params.get("auto_advance", False)),
            },
        )
        self.emit(account, "invoice.created", invoice)
        return invoice

    def _invoice_in(self, account: Account, invoice_id: str, *statuses: str) -> dict[str, Any]:
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] not in statuses:
            raise StripeError(
                400,
                f"This invoice is {invoice['status']}; this action needs it to be {' or '.join(statuses)}.",
                code="invoice_unexpected_state",
            )
        return invoice

    def finalize_invoice(self, account: Account, invoice_id: str) -> dict[str, Any]:
        invoice = self._invoice_in(account, invoice_id, "draft")
        invoice["status"] = "open"
        invoice["status_transitions"]["finalized_at"] = self.now()
        self.emit(account, "invoice.finalized", invoice, {"status": "draft"})
        return invoice

    def pay_invoice(self, account: Account, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Charge it (or record a payment made outside Stripe: ``paid_out_of_band``)."""
        invoice = self.get(account, "invoice", invoice_id)
        if invoice["status"] == "draft":
            self.finalize_invoice(account, invoice_id)
        invoice = self._invoice_in(account, invoice_id, "open")
        out_of_band = as_bool(params.get("paid_out_of_band", False))
        if not out_of_band and invoice["customer"] in account.failing_customers and invoice["amount_due"] > 0:
            invoice["attempt_count"] += 1
            invoice["attempted"] = True
            self.emit(account, "invoice.payment_failed", invoice)
            raise StripeError(402, "Your card was declined.", type_="card_error", code="card_declined")
        previous = {"status": "open"}
        invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
        invoice["status_transitions"]["paid_at"] = self.now()
        if not out_of_band:
            invoice.update(attempt_count=invoice["attempt_count"] + 1, attempted=True)
        self.emit(account, "invoice.paid", invoice, previous)
        if not out_of_band:
            self.emit(account, "invoice.payment_succeeded", invoice, previous)
        return invoice

    def void_invoice(self, account: Account, invoice_id: str) -> dict[str, Any]:
        invoice = self._invoice_in(account, invoice_id, "open")
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = self.now()
        self.emit(account, "invoice.voided", invoice, {"status": "open"})
        return invoice

    def mark_uncollectible(self, account: Account, invoice_id: str) -> dict[str, Any]:
        invoice = self._invoice_in(account, invoice_id, "open")
        invoice["status"] = "uncollectible"
        invoice["status_transitions"]["marked_uncollectible_at"] = self.now()
        self.emit(account, "invoice.marked_uncollectible", invoice, {"status": "open"})
        return invoice

    # --- the clock ------------------------------------------------------------------------------

    def advance(self, seconds: int) -> int:
        """Move time forward: trials end, periods renew (and bill), scheduled cancellations happen,
        repeating discounts expire. Each account is processed in order of due time."""
        self.clock_offset += seconds
        now = self.now()
        for account in list(self.accounts.values()):
            for subscription in list(account.table("subscription").values()):
                self._catch_up(account, subscription, now)
            for discount in list(account.table("discount").values()):
                if discount["end"] is not None and discount["end"] <= now and not discount.get("expired"):
                    self._expire(account, discount)
        return now

    def _catch_up(self, account: Account, subscription: dict[str, Any], now: int) -> None:
        for _ in range(1000):
            if subscription["status"] in (*HIDDEN_BY_DEFAULT, "paused", "incomplete"):
                return
            if subscription["status"] == "trialing":
                if subscription["trial_end"] is None or subscription["trial_end"] > now:
                    return
                self._end_trial(account, subscription)
                continue
            period_end = subscription["items"]["data"][0]["current_period_end"]
            if period_end > now:
                return
            if subscription["cancel_at_period_end"]:
                self._end(account, subscription, period_end)
                return
            before = copy.deepcopy(subscription["items"])
            self._start_period(subscription, period_end)
            self.emit(account, "customer.subscription.updated", subscription, {"items": before})
            self._bill(account, subscription, "subscription_cycle")

    def _expire(self, account: Account, discount: dict[str, Any]) -> None:
        discount["expired"] = True
        if discount["subscription"]:
            subscription = account.table("subscription").get(discount["subscription"])
            if subscription and discount["id"] in subscription["discounts"]:
                subscription["discounts"].remove(discount["id"])
                self.emit(account, "customer.discount.deleted", _public(discount))
                self.emit(
                    account,
                    "customer.subscription.updated",
                    subscription,
                    {"discounts": [*subscription["discounts"], discount["id"]]},
                )
            return
        customer = account.table("customer").get(discount["customer"])
        if customer and customer.get("discount") and customer["discount"]["id"] == discount["id"]:
            customer["discount"] = None
            self.emit(account, "customer.discount.deleted", _public(discount))
            self.emit(account, "customer.updated", customer, {"discount": _public(discount)})

    # --- bulk history (benchmarks, large tests) -------------------------------------------------

    def seed(
        self, account: Account, count: int, start: int, end: int, unit_amount: int = 1000
    ) -> dict[str, int]:
        """``count`` customers created evenly over [start, end), each with an active monthly
        subscription and its paid first invoice: existing history, so no events are sent."""
        price = self.create_price(
            account,
            {
                "currency": "usd",
                "unit_amount": str(unit_amount),
                "recurring": {"interval": "month"},
                "product_data": {"name": "Seeded"},
                "nickname": "Seeded",
            },
        )
        step = max(1, (end - start) // max(1, count))
        for index in range(count):
            created = start + index * step
            customer_id = self.new_id("cus")
            self.put(
                account,
                {
                    "id": customer_id,
                    "object": "customer",
                    "created": created,
                    "email": f"seed{index}@example.com",
                    "name": f"Seed {index}",
                    "description": None,
                    "metadata": {"app_id": f"seed-{index}"},
                    "currency": "usd",
                    "balance": 0,
                    "delinquent": False,
                    "discount": None,
                    "livemode": False,
                    "phone": None,
                    "address": None,
                    "invoice_prefix": "SEED",
                    "tax_exempt": "none",
                    "test_clock": None,
                    "default_source": None,
                    "invoice_settings": {"default_payment_method": "pm_seed"},
                },
            )
            sub_id = self.new_id("sub")
            period = (created, created + _period_seconds(price))
            item = self._item(account, sub_id, {"price": price["id"]}, period)
            subscription = self.put(
                account,
                {
                    "id": sub_id,
                    "object": "subscription",
                    "customer": customer_id,
                    "created": created,
                    "start_date": created,
                    "status": "active",
                    "currency": "usd",
                    "trial_start": None,
                    "trial_end": None,
                    "cancel_at_period_end": False,
                    "cancel_at": None,
                    "canceled_at": None,
                    "ended_at": None,
                    "discounts": [],
                    "metadata": {},
                    "livemode": False,
                    "latest_invoice": None,
                    "pause_collection": None,
                    "billing_cycle_anchor": created,
                    "collection_method": "charge_automatically",
                    "test_clock": None,
                    "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
                    "items": {
                        "object": "list",
                        "data": [item],
                        "has_more": False,
                        "url": "/v1/subscription_items",
                    },
                },
            )
            events, account.events = account.events, []
            endpoints, account.endpoints = account.endpoints, {}
            invoice = self._bill(account, subscription, "subscription_create")
            account.events, account.endpoints = events, endpoints  # history: nothing is delivered
            invoice["created"] = created
        return {"customers": count, "subscriptions": count, "invoices": count}

    # --- OAuth (Connect) ------------------------------------------------------------------------

    def authorize(self, client_id: str, account_hint: str | None) -> str:
        """Approve a Connect authorization: returns a single-use code for a new (or hinted) account."""
        account = self.accounts.get(account_hint) if account_hint else None
        if account is None:
            account = Account(id=account_hint or "acct_" + secrets.token_hex(8))
            self.accounts[account.id] = account
        code = "ac_" + secrets.token_hex(12)
        self.codes[code] = {"client_id": client_id, "account": account.id, "expires": time.time() + 300}
        return code

    def exchange(self, platform: Account, code: str) -> dict[str, Any]:
        grant = self.codes.pop(code, None)
        if grant is None or grant["expires"] < time.time():
            raise OAuthError("invalid_grant", f"Authorization code does not exist: {code}")
        account = self.accounts[grant["account"]]
        if account.platform not in (None, platform.id):
            raise OAuthError("invalid_grant", "This account is connected to another platform.")
        account.platform = platform.id
        return {
            "access_token": "sk_test_oauth_" + secrets.token_hex(8),
            "livemode": False,
            "refresh_token": "rt_" + secrets.token_hex(8),
            "scope": "read_write",
            "stripe_publishable_key": "pk_test_" + secrets.token_hex(8),
            "stripe_user_id": account.id,
            "token_type": "bearer",
        }

    def deauthorize(self, platform: Account, client_id: str, account_id: str) -> dict[str, Any]:
        account = self.accounts.get(account_id)
        if account is None or account.platform != platform.id:
            raise OAuthError("invalid_client", f"No such account connected: {account_id}")
        self.emit(
            account,
            "account.application.deauthorized",
            {"id": client_id, "object": "application", "name": "revsync"},
        )
        account.platform = None
        return {"stripe_user_id": account_id}


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def _collection_method(params: dict[str, Any]) -> str:
    method = params.get("collection_method") or "charge_automatically"
    if method not in ("charge_automatically", "send_invoice"):
        raise StripeError(400, f"Invalid collection_method: {method}", param="collection_method")
    return str(method)


def _public(discount: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in discount.items() if k != "expired"}


def _coupon_ids(params: dict[str, Any]) -> list[str]:
    return [d["coupon"] for d in params.get("discounts", []) if isinstance(d, dict) and d.get("coupon")]


def _plan_of(price: dict[str, Any]) -> dict[str, Any]:
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": True,
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1),
        "usage_type": recurring.get("usage_type", "licensed"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": price["transform_quantity"],
        "livemode": False,
        "metadata": {},
        "meter": None,
        "trial_period_days": None,
        "created": price["created"],
    }


def _period_seconds(price: dict[str, Any]) -> int:
    recurring = price.get("recurring") or {"interval": "month", "interval_count": 1}
    return DAY * INTERVAL_DAYS[recurring["interval"]] * int(recurring.get("interval_count") or 1)


def _item_amount(item: dict[str, Any]) -> int:
    price, quantity = item["price"], int(item["quantity"])
    if (price.get("recurring") or {}).get("usage_type") == "metered":
        return 0
    transform = price.get("transform_quantity")
    if transform:
        divided = quantity / transform["divide_by"]
        quantity = int(-(-divided // 1)) if transform["round"] == "up" else int(divided)
    if price["billing_scheme"] == "tiered":
        tiers = price["tiers"] or []
        if price["tiers_mode"] == "volume":
            tier = next((t for t in tiers if t["up_to"] is None or quantity <= t["up_to"]), None)
            return (
                0
                if tier is None or quantity == 0
                else quantity * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
            )
        total, lower = 0, 0
        for tier in tiers:
            upper = tier["up_to"] if tier["up_to"] is not None else quantity
            units = min(quantity, upper) - lower
            if units <= 0:
                break
            total += units * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
            lower = upper
        return total
    return quantity * int(price["unit_amount"] or 0)
