"""Customers: create (on a test clock, with a payment method or a card source), update, delete (which
ends their subscriptions), and the sandbox's failing customers (``/_sandbox/customers/{id}/
payment_failure``: their charges are declined)."""

from __future__ import annotations

import secrets

from local.stripe_sandbox import payment_methods, subscriptions
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_int


def matches(customer: Obj, params: Obj) -> bool:
    """``GET /v1/customers``'s filters: ``email``; ``test_clock`` (a test clock's customers are listed
    only for it, as Stripe lists them)."""
    if params.get("email") and customer.get("email") != params["email"]:
        return False
    return bool(customer.get("test_clock") == (params.get("test_clock") or None))


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    clock = params.get("test_clock") or None
    if clock is not None:
        sb.get(account, "test_helpers.test_clock", str(clock))
    # Everything checked before anything is made: a refused request changes nothing.
    payment_method = str(params.get("payment_method") or "") or None
    if payment_method is not None:
        payment_methods.check_attachable(account, payment_method)
    default = (params.get("invoice_settings") or {}).get("default_payment_method")
    if default and default != payment_method:
        raise payment_methods.not_attached(str(default))
    if params.get("source"):
        payment_methods.check_token(str(params["source"]))
    customer = sb.put(
        account,
        {
            "id": params.get("id") or sb.new_id("cus"),
            "object": "customer",
            "created": sb.now(),
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
            "test_clock": clock,
            "default_source": None,
            "invoice_settings": {"default_payment_method": None, "custom_fields": None, "footer": None},
        },
    )
    attached = None
    if payment_method is not None:  # attached to it (made its default by invoice_settings only)
        attached = payment_methods.resolve(sb, account, payment_method)
        if default:
            customer["invoice_settings"]["default_payment_method"] = attached["id"]
    card = (
        payment_methods.new_card(sb, account, customer, str(params["source"]))
        if params.get("source")
        else None
    )
    if card is not None:
        customer["default_source"] = card["id"]
    emit(sb, account, "customer.created", customer)
    if attached is not None:
        payment_methods.attach(sb, account, {"customer": customer["id"]}, attached["id"])
    if card is not None:
        emit(sb, account, "customer.source.created", card)
    return customer


def live(sb: Sandbox, account: Account, customer_id: str) -> Obj:
    """The customer, unless it does not exist or was deleted (both a 404, as Stripe answers)."""
    customer = sb.get(account, "customer", customer_id)
    if customer.get("deleted"):
        raise not_found("customer", customer_id)
    return customer


def update(sb: Sandbox, account: Account, params: Obj, customer_id: str) -> Obj:
    customer = live(sb, account, customer_id)
    # Everything checked before anything changes: a refused request changes nothing.
    if params.get("source"):
        payment_methods.check_token(str(params["source"]))
    source = params.get("default_source")
    if source and source != customer["default_source"]:
        chosen = account.table("card").get(str(source))
        if chosen is None or chosen["customer"] != customer_id:
            raise StripeError(
                400, f"No such source: '{source}'", code="resource_missing", param="default_source"
            )
    settings = params.get("invoice_settings") or {}
    default = (
        settings.get("default_payment_method")
        if "default_payment_method" in settings
        else customer["invoice_settings"]["default_payment_method"]
    )
    if default:
        default = payment_methods.default_for(sb, account, customer, str(default), None)
    if params.get("source"):  # a new card, made the default source
        source = payment_methods.add_card(sb, account, customer, str(params["source"]))["id"]
    previous: Obj = {}
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
    if source and source != customer["default_source"]:
        previous["default_source"], customer["default_source"] = customer["default_source"], source
    current = customer["invoice_settings"]["default_payment_method"]
    if (default or None) != current:
        previous["invoice_settings"] = {"default_payment_method": current}
        customer["invoice_settings"]["default_payment_method"] = default or None
    if previous:
        emit(sb, account, "customer.updated", customer, previous)
    return customer


def delete(sb: Sandbox, account: Account, params: Obj, customer_id: str) -> Obj:
    live(sb, account, customer_id)
    customer = account.table("customer")[customer_id]
    for subscription in list(account.table("subscription").values()):
        if subscription["customer"] == customer_id and subscription["status"] not in subscriptions.ENDED:
            subscriptions.end(sb, account, subscription, sb.now())
    emit(sb, account, "customer.deleted", customer)
    account.table("customer")[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}
    return {"id": customer_id, "object": "customer", "deleted": True}


def set_payment_failure(sb: Sandbox, account: Account, customer_id: str, failing: bool) -> None:
    sb.get(account, "customer", customer_id)
    (account.failing_customers.add if failing else account.failing_customers.discard)(customer_id)
