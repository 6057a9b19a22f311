"""Quotes: a draft offer of prices to a customer, finalized (open), then accepted or canceled.

Accepting a quote creates what it offers: a subscription of its recurring prices (billed as any
subscription), and an invoice of its one-time prices. An open quote not accepted by ``expires_at``
(30 days by default) is canceled when a clock passes it.
"""

from __future__ import annotations

from local.stripe_sandbox import invoices, subscriptions
from local.stripe_sandbox.catalog import DAY
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_int

EXPIRES_AFTER = 30 * DAY  # Stripe's default


def matches(quote: Obj, params: Obj) -> bool:
    """``GET /v1/quotes``'s filters: ``customer``, ``status``, ``test_clock`` (a test clock's quotes
    are listed only for it)."""
    if params.get("customer") and quote["customer"] != params["customer"]:
        return False
    if params.get("status") and quote["status"] != params["status"]:
        return False
    return bool(quote.get("test_clock") == (params.get("test_clock") or None))


def _line_items(sb: Sandbox, account: Account, quote_id: str, specs: list[Obj]) -> list[Obj]:
    items = []
    for spec in specs:
        price = sb.get(account, "price", str(spec.get("price")))
        quantity = as_int(spec.get("quantity"), 1) or 1
        amount = quantity * int(price["unit_amount"] or 0)
        items.append(
            {
                "id": sb.new_id("li"),
                "object": "item",
                "price": price,
                "quantity": quantity,
                "currency": price["currency"],
                "description": price.get("nickname"),
                "amount_subtotal": amount,
                "amount_total": amount,
                "amount_discount": 0,
                "amount_tax": 0,
                "metadata": {},
            }
        )
    return items


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    customer_id = params.get("customer")
    customer = sb.get(account, "customer", str(customer_id)) if customer_id else None
    if customer is not None and customer.get("deleted"):
        raise not_found("customer", str(customer_id))
    now = sb.now()
    quote_id = sb.new_id("qt")
    items = _line_items(sb, account, quote_id, params.get("line_items") or [])
    total = sum(i["amount_total"] for i in items)
    recurring = [i for i in items if i["price"].get("recurring")]
    quote = sb.put(
        account,
        {
            "id": quote_id,
            "object": "quote",
            "created": now,
            "customer": customer_id or None,
            "description": params.get("description"),
            "header": params.get("header"),
            "footer": params.get("footer"),
            "metadata": params.get("metadata") or {},
            "status": "draft",
            "currency": items[0]["currency"] if items else "usd",
            "amount_subtotal": total,
            "amount_total": total,
            "line_items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/quotes/{quote_id}/line_items",
            },
            "computed": {
                "recurring": {
                    "amount_subtotal": sum(i["amount_subtotal"] for i in recurring),
                    "amount_total": sum(i["amount_total"] for i in recurring),
                    "interval": recurring[0]["price"]["recurring"]["interval"],
                    "interval_count": recurring[0]["price"]["recurring"]["interval_count"],
                }
                if recurring
                else None,
                "upfront": {"amount_subtotal": total, "amount_total": total},
            },
            "collection_method": invoices.collection_method(params),
            "expires_at": as_int(params.get("expires_at"), now + EXPIRES_AFTER),
            "status_transitions": {"accepted_at": None, "canceled_at": None, "finalized_at": None},
            "subscription": None,
            "invoice": None,
            "number": None,
            "livemode": False,
            "test_clock": params.get("test_clock") or (customer or {}).get("test_clock"),
        },
    )
    emit(sb, account, "quote.created", quote)
    return quote


def line_items(sb: Sandbox, account: Account, params: Obj, quote_id: str) -> list[Obj]:
    return list(sb.get(account, "quote", quote_id)["line_items"]["data"])


def _in_status(sb: Sandbox, account: Account, quote_id: str, *statuses: str) -> Obj:
    quote = sb.get(account, "quote", quote_id)
    if quote["status"] not in statuses:
        raise StripeError(
            400,
            f"This quote is {quote['status']}; this action needs it to be {' or '.join(statuses)}.",
            code="quote_unexpected_state",
        )
    return quote


def finalize(sb: Sandbox, account: Account, params: Obj, quote_id: str) -> Obj:
    quote = _in_status(sb, account, quote_id, "draft")
    if not quote["customer"]:
        raise StripeError(400, "A quote needs a customer before it can be finalized.", param="customer")
    if not quote["line_items"]["data"]:
        raise StripeError(400, "A quote needs line items before it can be finalized.", param="line_items")
    if params.get("expires_at"):
        quote["expires_at"] = int(params["expires_at"])
    quote.update(status="open", number=f"QT-{quote_id[-8:].upper()}")
    quote["status_transitions"]["finalized_at"] = sb.now()
    emit(sb, account, "quote.finalized", quote, {"status": "draft"})
    return quote


def accept(sb: Sandbox, account: Account, params: Obj, quote_id: str) -> Obj:
    """Accepted: its subscription (recurring prices) and invoice (one-time prices) are created."""
    quote = _in_status(sb, account, quote_id, "open")
    items = quote["line_items"]["data"]
    recurring = [i for i in items if i["price"].get("recurring")]
    one_time = [i for i in items if not i["price"].get("recurring")]
    if recurring:
        subscription = subscriptions.create(
            sb,
            account,
            {
                "customer": quote["customer"],
                "items": [{"price": i["price"]["id"], "quantity": i["quantity"]} for i in recurring],
                "collection_method": quote["collection_method"],
                "metadata": dict(quote["metadata"]),
            },
        )
        quote["subscription"] = subscription["id"]
    if one_time:
        for entry in one_time:
            invoices.create_item(
                sb,
                account,
                {
                    "customer": quote["customer"],
                    "amount": entry["amount_total"],
                    "currency": entry["currency"],
                    "description": entry["description"],
                },
            )
        invoice = invoices.create(
            sb,
            account,
            {
                "customer": quote["customer"],
                "collection_method": quote["collection_method"],
                "auto_advance": "true",
            },
        )
        invoices.finalize(sb, account, {}, invoice["id"])
        if quote["collection_method"] == "charge_automatically":
            invoices.attempt(sb, account, invoice, None, off_session=True)
        quote["invoice"] = invoice["id"]
    quote["status"] = "accepted"
    quote["status_transitions"]["accepted_at"] = sb.now()
    emit(sb, account, "quote.accepted", quote, {"status": "open"})
    return quote


def cancel(sb: Sandbox, account: Account, params: Obj, quote_id: str) -> Obj:
    quote = _in_status(sb, account, quote_id, "draft", "open")
    _cancel(sb, account, quote)
    return quote


def _cancel(sb: Sandbox, account: Account, quote: Obj) -> None:
    previous = {"status": quote["status"]}
    quote["status"] = "canceled"
    quote["status_transitions"]["canceled_at"] = sb.now()
    emit(sb, account, "quote.canceled", quote, previous)


def due(sb: Sandbox, account: Account, quote: Obj) -> tuple[int, str] | None:
    return (int(quote["expires_at"]), "expire") if quote["status"] == "open" else None


def run_due(sb: Sandbox, account: Account, quote: Obj, action: str) -> None:
    _cancel(sb, account, quote)
