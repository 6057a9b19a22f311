"""Invoices, their lines and invoice items: a subscription's period billed (``bill``), one-off drafts
holding a customer's pending invoice items, and the lifecycle draft → open → paid / void /
uncollectible.

Payments succeed unless the customer is a failing one (``customers.set_payment_failure``); an invoice
bills its subscription's items less its discounts.
"""

from __future__ import annotations

from local.stripe_sandbox import discounts
from local.stripe_sandbox.catalog import DAY, item_amount
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int


def matches(invoice: Obj, params: Obj) -> bool:
    """``GET /v1/invoices``'s filters: ``customer``, ``status``, ``subscription``."""
    if params.get("customer") and invoice["customer"] != params["customer"]:
        return False
    if params.get("status") and invoice["status"] != params["status"]:
        return False
    subscription = (invoice.get("parent") or {}).get("subscription_details", {}).get("subscription")
    return not params.get("subscription") or subscription == params["subscription"]


def lines(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> list[Obj]:
    return list(sb.get(account, "invoice", invoice_id)["lines"]["data"])


def collection_method(params: Obj) -> str:
    method = params.get("collection_method") or "charge_automatically"
    if method not in ("charge_automatically", "send_invoice"):
        raise StripeError(400, f"Invalid collection_method: {method}", param="collection_method")
    return str(method)


# --- a subscription's period -----------------------------------------------------------------------


def bill(sb: Sandbox, account: Account, subscription: Obj, reason: str) -> Obj:
    """Invoice the subscription's current period (finalized at once), then collect it: charged
    (paid, or failed: the subscription falls past due) or sent (``send_invoice``, paid later)."""
    now = sb.now()
    invoice_lines, subtotal = [], 0
    for entry in subscription["items"]["data"]:
        amount = item_amount(entry)
        subtotal += amount
        invoice_lines.append(
            {
                "id": sb.new_id("il"),
                "object": "line_item",
                "amount": amount,
                "currency": subscription["currency"],
                "description": entry["price"].get("nickname"),
                "discountable": True,
                "livemode": False,
                "metadata": {},
                "quantity": entry["quantity"],
                "period": {"start": entry["current_period_start"], "end": entry["current_period_end"]},
                "parent": {
                    "type": "subscription_item_details",
                    "invoice_item_details": None,
                    "subscription_item_details": {
                        "subscription": subscription["id"],
                        "subscription_item": entry["id"],
                        "invoice_item": None,
                        "proration": False,
                        "proration_details": {"credited_items": None},
                    },
                },
                "pricing": {
                    "type": "price_details",
                    "price_details": {"price": entry["price"]["id"], "product": entry["price"]["product"]},
                    "unit_amount_decimal": entry["price"]["unit_amount_decimal"],
                },
            }
        )
    total = max(0, round(discounts.discounted(sb, account, subscription, subtotal)))
    invoice_id = sb.new_id("in")
    for line in invoice_lines:
        line["invoice"] = invoice_id
    items = subscription["items"]["data"]
    invoice = sb.put(
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
                "data": invoice_lines,
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
    emit(sb, account, "invoice.created", invoice)
    emit(sb, account, "invoice.finalized", invoice)
    if subscription["collection_method"] == "send_invoice":
        # Sent to the customer, paid later (``POST /v1/invoices/{id}/pay``, or out of band).
        invoice["due_date"] = now + DAY * int(subscription.get("days_until_due") or 30)
        emit(sb, account, "invoice.sent", invoice)
        return invoice
    invoice.update(attempt_count=1, attempted=True)
    if subscription["customer"] in account.failing_customers and total > 0:
        emit(sb, account, "invoice.payment_failed", invoice)
        if subscription["status"] == "active":
            subscription["status"] = "past_due"
            emit(sb, account, "customer.subscription.updated", subscription, {"status": "active"})
        return invoice
    invoice.update(status="paid", amount_paid=total, amount_remaining=0)
    invoice["status_transitions"]["paid_at"] = now
    emit(sb, account, "invoice.paid", invoice)
    emit(sb, account, "invoice.payment_succeeded", invoice)
    if subscription["status"] == "past_due":
        subscription["status"] = "active"
        emit(sb, account, "customer.subscription.updated", subscription, {"status": "past_due"})
    return invoice


# --- one-off invoices ------------------------------------------------------------------------------


def create_item(sb: Sandbox, account: Account, params: Obj) -> Obj:
    customer = sb.get(account, "customer", str(params.get("customer")))
    amount = as_int(params.get("amount"))
    if amount is None:
        raise StripeError(400, "Missing required param: amount.", param="amount")
    now = sb.now()
    period = params.get("period") or {}
    invoice_item = sb.put(
        account,
        {
            "id": sb.new_id("ii"),
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
    emit(sb, account, "invoiceitem.created", invoice_item)
    return invoice_item


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    """A draft for a customer, holding its pending invoice items (``pending_invoice_items_behavior``
    ``include``, Stripe's default for a customer's first draft)."""
    customer = sb.get(account, "customer", str(params.get("customer")))
    now = sb.now()
    invoice_id = sb.new_id("in")
    pending = [
        i
        for i in account.table("invoiceitem").values()
        if i["customer"] == customer["id"] and not i["invoice"]
    ]
    if params.get("pending_invoice_items_behavior") == "exclude":
        pending = []
    invoice_lines = []
    for invoice_item in pending:
        invoice_item["invoice"] = invoice_id
        invoice_lines.append(
            {
                "id": sb.new_id("il"),
                "object": "line_item",
                "amount": invoice_item["amount"],
                "currency": invoice_item["currency"],
                "description": invoice_item["description"],
                "discountable": True,
                "invoice": invoice_id,
                "livemode": False,
                "metadata": {},
                "quantity": 1,
                "period": invoice_item["period"],
                "parent": {
                    "type": "invoice_item_details",
                    "invoice_item_details": {"invoice_item": invoice_item["id"], "subscription": None},
                    "subscription_item_details": None,
                },
                "pricing": None,
            }
        )
    total = sum(line["amount"] for line in invoice_lines)
    method = collection_method(params)
    invoice = sb.put(
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
                "data": invoice_lines,
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
    emit(sb, account, "invoice.created", invoice)
    return invoice


# --- the lifecycle ---------------------------------------------------------------------------------


def _in_status(sb: Sandbox, account: Account, invoice_id: str, *statuses: str) -> Obj:
    invoice = sb.get(account, "invoice", invoice_id)
    if invoice["status"] not in statuses:
        raise StripeError(
            400,
            f"This invoice is {invoice['status']}; this action needs it to be {' or '.join(statuses)}.",
            code="invoice_unexpected_state",
        )
    return invoice


def finalize(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    invoice = _in_status(sb, account, invoice_id, "draft")
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = sb.now()
    emit(sb, account, "invoice.finalized", invoice, {"status": "draft"})
    return invoice


def pay(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    """Charge it (or record a payment made outside Stripe: ``paid_out_of_band``)."""
    invoice = sb.get(account, "invoice", invoice_id)
    if invoice["status"] == "draft":
        finalize(sb, account, {}, invoice_id)
    invoice = _in_status(sb, account, invoice_id, "open")
    out_of_band = as_bool(params.get("paid_out_of_band", False))
    if not out_of_band and invoice["customer"] in account.failing_customers and invoice["amount_due"] > 0:
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        emit(sb, account, "invoice.payment_failed", invoice)
        raise StripeError(402, "Your card was declined.", type_="card_error", code="card_declined")
    previous = {"status": "open"}
    invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0)
    invoice["status_transitions"]["paid_at"] = sb.now()
    if not out_of_band:
        invoice.update(attempt_count=invoice["attempt_count"] + 1, attempted=True)
    emit(sb, account, "invoice.paid", invoice, previous)
    if not out_of_band:
        emit(sb, account, "invoice.payment_succeeded", invoice, previous)
    return invoice


def void(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    invoice = _in_status(sb, account, invoice_id, "open")
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = sb.now()
    emit(sb, account, "invoice.voided", invoice, {"status": "open"})
    return invoice


def mark_uncollectible(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    invoice = _in_status(sb, account, invoice_id, "open")
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = sb.now()
    emit(sb, account, "invoice.marked_uncollectible", invoice, {"status": "open"})
    return invoice
