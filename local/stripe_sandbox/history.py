"""Bulk history for benchmarks and large tests: customers that existed before anyone listened."""

from __future__ import annotations

from local.stripe_sandbox import catalog, invoices, subscriptions
from local.stripe_sandbox.core import Account, Sandbox

# An account is opened some weeks before its first customer (and nothing in it is older).
OPENED_BEFORE_FIRST_CUSTOMER_SECONDS = 30 * 86_400


def seed(
    sb: Sandbox, account: Account, count: int, start: int, end: int, unit_amount: int = 1000
) -> dict[str, int]:
    """``count`` customers created evenly over [start, end), each with an active monthly
    subscription and its paid first invoice: existing history, so no events are sent. The account
    is then as old as such a history makes it."""
    account.created = min(account.created, start - OPENED_BEFORE_FIRST_CUSTOMER_SECONDS)
    events, account.events = account.events, []
    endpoints, account.endpoints = account.endpoints, {}
    try:
        _seed(sb, account, count, start, end, unit_amount)
    finally:
        account.events, account.endpoints = events, endpoints  # history: nothing is delivered
    return {"customers": count, "subscriptions": count, "invoices": count}


def _seed(sb: Sandbox, account: Account, count: int, start: int, end: int, unit_amount: int) -> None:
    price = catalog.create_price(
        sb,
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
        customer_id = sb.new_id("cus")
        sb.put(
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
        sub_id = sb.new_id("sub")
        period = (created, created + catalog.period_seconds(price))
        item = subscriptions.item(sb, account, sub_id, {"price": price["id"]}, period)
        subscription = sb.put(
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
        with sb.at(created):
            invoices.bill(sb, account, subscription, "subscription_create")
