"""Invoices, their lines and invoice items: a subscription's period billed (``bill``), one-off drafts
holding a customer's pending invoice items, and the lifecycle draft → open → paid / void /
uncollectible (update, delete and send included).

An invoice is collected through a payment intent (``payments``): each attempt charges the invoice's
payment method, else its customer's default. A subscription's invoice that fails is retried on the
account's retry schedule (``next_payment_attempt``, run when a clock passes it: ``due``); each
attempt's outcome moves its subscription (``subscriptions.after_payment``).
"""

from __future__ import annotations

from local.stripe_sandbox import discounts, payment_methods, payments, subscriptions
from local.stripe_sandbox.catalog import DAY, item_amount
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int


def matches(invoice: Obj, params: Obj) -> bool:
    """``GET /v1/invoices``'s filters: ``customer``, ``status``, ``subscription``."""
    if params.get("customer") and invoice["customer"] != params["customer"]:
        return False
    if params.get("status") and invoice["status"] != params["status"]:
        return False
    return not params.get("subscription") or subscription_of(invoice) == params["subscription"]


def subscription_of(invoice: Obj) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


def lines(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> list[Obj]:
    return list(sb.get(account, "invoice", invoice_id)["lines"]["data"])


def collection_method(params: Obj) -> str:
    method = params.get("collection_method") or "charge_automatically"
    if method not in ("charge_automatically", "send_invoice"):
        raise StripeError(400, f"Invalid collection_method: {method}", param="collection_method")
    return str(method)


def _new(
    sb: Sandbox,
    account: Account,
    customer: Obj,
    invoice_lines: list[Obj],
    *,
    status: str,
    reason: str,
    method: str,
    currency: str,
    parent: Obj | None,
    subtotal: int,
    total: int,
    period: tuple[int, int],
) -> Obj:
    now = sb.now()
    invoice_id = sb.new_id("in")
    for line in invoice_lines:
        line["invoice"] = invoice_id
    return sb.put(
        account,
        {
            "id": invoice_id,
            "object": "invoice",
            "customer": customer["id"],
            "created": now,
            "currency": currency,
            "status": status,
            "amount_due": total,
            "amount_paid": 0,
            "amount_remaining": total,
            "subtotal": subtotal,
            "total": total,
            "billing_reason": reason,
            "period_start": period[0],
            "period_end": period[1],
            "livemode": False,
            "description": None,
            "metadata": {},
            "lines": {
                "object": "list",
                "data": invoice_lines,
                "has_more": False,
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "parent": parent,
            "status_transitions": {
                "finalized_at": now if status == "open" else None,
                "paid_at": None,
                "marked_uncollectible_at": None,
                "voided_at": None,
            },
            "attempt_count": 0,
            "attempted": False,
            "collection_method": method,
            "due_date": None,
            "auto_advance": True,
            "default_payment_method": None,
            "next_payment_attempt": None,
            "payments": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/invoices/{invoice_id}/payments",
            },
            "pre_payment_credit_notes_amount": 0,
            "post_payment_credit_notes_amount": 0,
            "test_clock": customer.get("test_clock"),
        },
    )


# --- a subscription's period -----------------------------------------------------------------------


def bill(sb: Sandbox, account: Account, subscription: Obj, reason: str) -> Obj:
    """Invoice the subscription's current period (finalized at once), then collect it: charged
    (``charge_automatically``; not attempted while the subscription is unpaid) or sent
    (``send_invoice``, paid later)."""
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
    items = subscription["items"]["data"]
    customer = sb.get(account, "customer", subscription["customer"])
    invoice = _new(
        sb,
        account,
        customer,
        invoice_lines,
        status="open",
        reason=reason,
        method=subscription["collection_method"],
        currency=subscription["currency"],
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": subscription["id"], "metadata": {}},
        },
        subtotal=subtotal,
        total=total,
        period=(items[0]["current_period_start"], items[0]["current_period_end"]) if items else (now, now),
    )
    invoice["default_payment_method"] = subscription.get("default_payment_method")
    subscription["latest_invoice"] = invoice["id"]
    emit(sb, account, "invoice.created", invoice)
    emit(sb, account, "invoice.finalized", invoice)
    if subscription["collection_method"] == "send_invoice":
        # Sent to the customer, paid later (``POST /v1/invoices/{id}/pay``, or out of band).
        invoice["due_date"] = now + DAY * int(subscription.get("days_until_due") or 30)
        emit(sb, account, "invoice.sent", invoice)
        return invoice
    if subscription["status"] == "unpaid":  # invoices keep coming, no payment is attempted
        invoice["auto_advance"] = False
        return invoice
    attempt(sb, account, invoice, None, off_session=True)
    return invoice


def attempt(
    sb: Sandbox, account: Account, invoice: Obj, paying_with_id: str | None, *, off_session: bool
) -> bool:
    """One attempt to collect ``invoice``; True when it is paid. A failed automatic attempt of a
    subscription's invoice schedules the next retry (none after the last)."""
    invoice.update(attempt_count=invoice["attempt_count"] + 1, attempted=True)
    if invoice["amount_remaining"] <= 0:
        _paid(sb, account, invoice)
        return True
    paying_with = payment_methods.instrument(
        sb, account, invoice["customer"], paying_with_id or invoice.get("default_payment_method")
    )
    records = invoice["payments"]["data"]
    intent = account.table("payment_intent").get(records[0]["payment"]["payment_intent"]) if records else None
    if intent is None:
        intent = payments.new_intent(
            sb,
            account,
            amount=invoice["amount_remaining"],
            currency=invoice["currency"],
            customer=invoice["customer"],
            description="Subscription creation"
            if invoice["billing_reason"] == "subscription_create"
            else None,
        )
        records.append(_payment_record(sb, account, invoice, intent))
    payments.collect(sb, account, intent, paying_with, off_session=off_session)
    if intent["status"] == "succeeded":
        _paid(sb, account, invoice, records[0])
        return True
    retry_days = list(sb.settings["payment_retry_days"] or [])
    automatic = off_session and subscription_of(invoice) is not None
    if automatic:
        retry = invoice["attempt_count"] - 1
        invoice["next_payment_attempt"] = (
            sb.now() + DAY * int(retry_days[retry]) if retry < len(retry_days) else None
        )
    emit(
        sb,
        account,
        "invoice.payment_action_required"
        if intent["status"] == "requires_action"
        else "invoice.payment_failed",
        invoice,
    )
    if automatic:
        subscriptions.after_payment(sb, account, invoice)
    return False


def _payment_record(sb: Sandbox, account: Account, invoice: Obj, intent: Obj) -> Obj:
    return sb.put(
        account,
        {
            "id": sb.new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": intent["amount"],
            "created": sb.now(),
            "currency": invoice["currency"],
            "invoice": invoice["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": intent["id"], "charge": None},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        },
    )


def _paid(
    sb: Sandbox, account: Account, invoice: Obj, record: Obj | None = None, *, out_of_band: bool = False
) -> None:
    previous = {"status": invoice["status"]}
    now = sb.now()
    if record is not None:
        record.update(status="paid", amount_paid=record["amount_requested"])
        record["status_transitions"]["paid_at"] = now
        emit(sb, account, "invoice_payment.paid", record)
    invoice.update(
        status="paid", amount_paid=invoice["amount_remaining"], amount_remaining=0, next_payment_attempt=None
    )
    invoice["status_transitions"]["paid_at"] = now
    emit(sb, account, "invoice.paid", invoice, previous)
    if not out_of_band:
        emit(sb, account, "invoice.payment_succeeded", invoice, previous)
    if subscription_of(invoice) is not None:
        subscriptions.after_payment(sb, account, invoice)


def due(sb: Sandbox, account: Account, invoice: Obj) -> tuple[int, str] | None:
    """The next retry of a failed subscription invoice, while its subscription lasts."""
    if invoice["status"] != "open" or invoice.get("next_payment_attempt") is None:
        return None
    subscription = account.table("subscription").get(subscription_of(invoice) or "")
    if subscription is None or subscription["status"] in subscriptions.ENDED:
        return None
    return int(invoice["next_payment_attempt"]), "retry"


def run_due(sb: Sandbox, account: Account, invoice: Obj, action: str) -> None:
    attempt(sb, account, invoice, None, off_session=True)


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
            "test_clock": customer.get("test_clock"),
        },
    )
    emit(sb, account, "invoiceitem.created", invoice_item)
    return invoice_item


def delete_item(sb: Sandbox, account: Account, params: Obj, item_id: str) -> Obj:
    """An invoice item can be deleted while pending or on a draft (it leaves the draft's lines)."""
    invoice_item = sb.get(account, "invoiceitem", item_id)
    if invoice_item.get("deleted"):
        raise not_found("invoiceitem", item_id)
    invoice = account.table("invoice").get(invoice_item["invoice"] or "")
    if invoice is not None and invoice["status"] != "draft":
        raise StripeError(400, "You can only delete invoice items that are pending or on a draft invoice.")
    if invoice is not None:
        _remove_line(invoice, item_id)
    emit(sb, account, "invoiceitem.deleted", invoice_item)
    account.table("invoiceitem")[item_id] = {"id": item_id, "object": "invoiceitem", "deleted": True}
    return {"id": item_id, "object": "invoiceitem", "deleted": True}


def _remove_line(invoice: Obj, item_id: str) -> None:
    kept = [
        line
        for line in invoice["lines"]["data"]
        if ((line.get("parent") or {}).get("invoice_item_details") or {}).get("invoice_item") != item_id
    ]
    invoice["lines"]["data"] = kept
    total = sum(line["amount"] for line in kept)
    invoice.update(subtotal=total, total=total, amount_due=total, amount_remaining=total)


def item_matches(invoice_item: Obj, params: Obj) -> bool:
    """``GET /v1/invoiceitems``'s filters: ``customer``, ``invoice``, ``pending``."""
    if params.get("customer") and invoice_item["customer"] != params["customer"]:
        return False
    if params.get("invoice") and invoice_item["invoice"] != params["invoice"]:
        return False
    return "pending" not in params or as_bool(params["pending"]) == (invoice_item["invoice"] is None)


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    """A draft for a customer, holding its pending invoice items (``pending_invoice_items_behavior``
    ``include``, Stripe's default for a customer's first draft)."""
    customer = sb.get(account, "customer", str(params.get("customer")))
    now = sb.now()
    pending = [
        i
        for i in account.table("invoiceitem").values()
        if not i.get("deleted") and i["customer"] == customer["id"] and not i["invoice"]
    ]
    if params.get("pending_invoice_items_behavior") == "exclude":
        pending = []
    invoice_lines = [
        {
            "id": sb.new_id("il"),
            "object": "line_item",
            "amount": invoice_item["amount"],
            "currency": invoice_item["currency"],
            "description": invoice_item["description"],
            "discountable": True,
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
        for invoice_item in pending
    ]
    total = sum(line["amount"] for line in invoice_lines)
    method = collection_method(params)
    invoice = _new(
        sb,
        account,
        customer,
        invoice_lines,
        status="draft",
        reason="manual",
        method=method,
        currency=params.get("currency") or customer["currency"] or "usd",
        parent=None,
        subtotal=total,
        total=total,
        period=(now, now),
    )
    for invoice_item in pending:
        invoice_item["invoice"] = invoice["id"]
    invoice.update(
        description=params.get("description"),
        metadata=params.get("metadata", {}),
        due_date=now + DAY * int(params.get("days_until_due") or 30) if method == "send_invoice" else None,
        auto_advance=as_bool(params.get("auto_advance", False)),
    )
    emit(sb, account, "invoice.created", invoice)
    return invoice


# --- the lifecycle ---------------------------------------------------------------------------------


def _in_status(sb: Sandbox, account: Account, invoice_id: str, *statuses: str) -> Obj:
    invoice = sb.get(account, "invoice", invoice_id)
    if invoice.get("deleted"):
        raise not_found("invoice", invoice_id)
    if invoice["status"] not in statuses:
        raise StripeError(
            400,
            f"This invoice is {invoice['status']}; this action needs it to be {' or '.join(statuses)}.",
            code="invoice_unexpected_state",
        )
    return invoice


_DRAFT_FIELDS = (
    "description",
    "auto_advance",
    "collection_method",
    "days_until_due",
    "default_payment_method",
    "due_date",
)


def update(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    """``POST /v1/invoices/{id}``: metadata on any invoice; the rest while it is a draft."""
    invoice = _in_status(sb, account, invoice_id, "draft", "open", "paid", "uncollectible", "void")
    asked = [key for key in _DRAFT_FIELDS if key in params]
    if asked and invoice["status"] != "draft":  # checked first: a refused update changes nothing
        raise StripeError(400, f"You can only update {asked[0]} on a draft invoice.", param=asked[0])
    changes: Obj = {}
    for key in asked:
        if key == "auto_advance":
            changes[key] = as_bool(params[key])
        elif key == "collection_method":
            changes[key] = collection_method(params)
        elif key == "days_until_due":
            changes["due_date"] = sb.now() + DAY * int(params[key])
        elif key == "due_date":
            changes[key] = as_int(params[key])
        elif key == "default_payment_method":
            spec = params[key]
            changes[key] = payment_methods.resolve(sb, account, str(spec))["id"] if spec else None
        else:
            changes[key] = params[key] or None
    if "metadata" in params:
        merged = {**invoice["metadata"], **(params["metadata"] or {})}
        changes["metadata"] = {k: v for k, v in merged.items() if v not in ("", None)}
    previous = {k: invoice[k] for k, v in changes.items() if invoice[k] != v}
    invoice.update(changes)
    if previous:
        emit(sb, account, "invoice.updated", invoice, previous)
    return invoice


def delete(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    """Only a draft can be deleted; its invoice items are pending again."""
    invoice = sb.get(account, "invoice", invoice_id)
    if invoice.get("deleted"):
        raise not_found("invoice", invoice_id)
    if invoice["status"] != "draft":
        raise StripeError(400, "You can only delete draft invoices.", code="invoice_not_editable")
    for invoice_item in account.table("invoiceitem").values():
        if invoice_item.get("invoice") == invoice_id:
            invoice_item["invoice"] = None
    emit(sb, account, "invoice.deleted", invoice)
    account.table("invoice")[invoice_id] = {"id": invoice_id, "object": "invoice", "deleted": True}
    return {"id": invoice_id, "object": "invoice", "deleted": True}


def finalize(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    invoice = _in_status(sb, account, invoice_id, "draft")
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = sb.now()
    emit(sb, account, "invoice.finalized", invoice, {"status": "draft"})
    return invoice


def send(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    """``POST /v1/invoices/{id}/send``: e-mail a ``send_invoice`` invoice (a draft is finalized first)."""
    invoice = _in_status(sb, account, invoice_id, "draft", "open")
    if invoice["collection_method"] != "send_invoice":
        raise StripeError(
            400,
            "You can only manually send an invoice if its collection method is 'send_invoice'.",
            code="invoice_not_editable",
        )
    if invoice["status"] == "draft":
        finalize(sb, account, {}, invoice_id)
    emit(sb, account, "invoice.sent", invoice)
    return invoice


def pay(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    """Charge it now (with ``payment_method`` or ``source`` if given), or record a payment made
    outside Stripe (``paid_out_of_band``). A declined charge is Stripe's 402 ``card_error``."""
    invoice = _in_status(sb, account, invoice_id, "draft", "open")
    if invoice["status"] == "draft":
        finalize(sb, account, {}, invoice_id)
    if as_bool(params.get("paid_out_of_band", False)):
        _paid(sb, account, invoice, out_of_band=True)
        return invoice
    paying_with = params.get("payment_method") or params.get("source")
    if attempt(sb, account, invoice, str(paying_with) if paying_with else None, off_session=False):
        return invoice
    intent = sb.get(account, "payment_intent", invoice["payments"]["data"][0]["payment"]["payment_intent"])
    if intent["status"] == "requires_action":
        raise StripeError(
            402,
            "This invoice's payment requires the customer's authentication.",
            type_="card_error",
            code="invoice_payment_intent_requires_action",
        )
    raise payments.card_error(intent)


def void(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    invoice = _in_status(sb, account, invoice_id, "open")
    invoice["status"] = "void"
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["voided_at"] = sb.now()
    emit(sb, account, "invoice.voided", invoice, {"status": "open"})
    return invoice


def mark_uncollectible(sb: Sandbox, account: Account, params: Obj, invoice_id: str) -> Obj:
    invoice = _in_status(sb, account, invoice_id, "open")
    invoice["status"] = "uncollectible"
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["marked_uncollectible_at"] = sb.now()
    emit(sb, account, "invoice.marked_uncollectible", invoice, {"status": "open"})
    return invoice
