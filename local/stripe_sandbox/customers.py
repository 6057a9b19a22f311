"""Customers: create, update, delete (which ends their subscriptions), and the sandbox's failing
customers (``/_sandbox/customers/{id}/payment_failure``: their charges are declined)."""

from __future__ import annotations

import secrets

from local.stripe_sandbox import subscriptions
from local.stripe_sandbox.core import Account, Obj, Sandbox, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_int


def matches(customer: Obj, params: Obj) -> bool:
    """``GET /v1/customers``'s filter: ``email``."""
    return not params.get("email") or customer.get("email") == params["email"]


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
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
            "test_clock": None,
            "default_source": None,
            "invoice_settings": {"default_payment_method": params.get("payment_method")},
        },
    )
    emit(sb, account, "customer.created", customer)
    return customer


def live(sb: Sandbox, account: Account, customer_id: str) -> Obj:
    """The customer, unless it does not exist or was deleted (both a 404, as Stripe answers)."""
    customer = sb.get(account, "customer", customer_id)
    if customer.get("deleted"):
        raise not_found("customer", customer_id)
    return customer


def update(sb: Sandbox, account: Account, params: Obj, customer_id: str) -> Obj:
    customer = live(sb, account, customer_id)
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
