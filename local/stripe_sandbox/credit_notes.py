"""Credit notes: an amount credited back on an open or a paid invoice.

On an open invoice (``pre_payment``) the credit lowers what is due; an invoice credited in full is
paid. On a paid invoice (``post_payment``) it lowers what was paid: ``refund_amount`` is refunded on
the invoice's charge (``payments.refund``), ``credit_amount`` goes to the customer's balance,
``out_of_band_amount`` was returned outside Stripe; what none of them names is credited to the
balance. Voiding a credit note undoes its credit (one with refunds cannot be voided: a refund stays).
"""

from __future__ import annotations

import copy

from local.stripe_sandbox import payments
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_int


def matches(note: Obj, params: Obj) -> bool:
    """``GET /v1/credit_notes``'s filters: ``customer``, ``invoice``."""
    return all(not params.get(key) or note[key] == params[key] for key in ("customer", "invoice"))


def _lines(sb: Sandbox, account: Account, invoice: Obj, specs: list[Obj]) -> list[Obj]:
    lines: list[Obj] = []
    for index, spec in enumerate(specs):
        kind = spec.get("type") or "custom_line_item"
        quantity = as_int(spec.get("quantity"), 1) or 1
        if kind == "custom_line_item":
            unit = as_int(spec.get("unit_amount"))
            if unit is None:
                raise StripeError(400, f"Missing required param: lines[{index}][unit_amount].", param="lines")
            amount, line_item = unit * quantity, None
        elif kind == "invoice_line_item":
            line_item = str(spec.get("invoice_line_item") or "")
            line = next((line for line in invoice["lines"]["data"] if line["id"] == line_item), None)
            if line is None:
                raise StripeError(400, f"No such invoice line item: '{line_item}'", param="lines")
            amount = as_int(spec.get("amount"), line["amount"]) or 0
            unit = amount // quantity
        else:
            raise StripeError(400, f"Invalid lines[{index}][type]: {kind}", param="lines")
        lines.append(
            {
                "id": sb.new_id("cnli"),
                "object": "credit_note_line_item",
                "amount": amount,
                "description": spec.get("description"),
                "quantity": quantity,
                "type": kind,
                "unit_amount": unit,
                "unit_amount_decimal": str(unit),
                "invoice_line_item": line_item,
                "discount_amount": 0,
                "discount_amounts": [],
                "livemode": False,
                "metadata": {},
                "tax_rates": [],
                "taxes": [],
                "pretax_credit_amounts": [],
            }
        )
    return lines


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    invoice = sb.get(account, "invoice", str(params.get("invoice")))
    if invoice.get("deleted") or invoice["status"] not in ("open", "paid"):
        raise StripeError(
            400,
            f"Credit notes are for open or paid invoices; this one is {invoice.get('status', 'deleted')}.",
            code="invoice_not_editable",
            param="invoice",
        )
    note_id = sb.new_id("cn")
    lines = _lines(sb, account, invoice, params.get("lines") or [])
    amount = sum(line["amount"] for line in lines) if lines else as_int(params.get("amount"))
    if not amount or amount <= 0:
        raise StripeError(400, "A credit note needs lines or an amount.", param="lines")
    refund_amount = as_int(params.get("refund_amount"), 0) or 0
    out_of_band = as_int(params.get("out_of_band_amount"), 0) or 0
    pre_payment = invoice["status"] == "open"
    if pre_payment:
        if refund_amount or out_of_band or params.get("credit_amount"):
            raise StripeError(
                400, "An open invoice's credit note lowers what is due: no refund or credit amounts."
            )
        if amount > invoice["amount_remaining"]:
            raise StripeError(
                400, "The credit note's amount is more than the invoice's amount remaining.", param="lines"
            )
        credit_amount = 0
    else:
        credited = invoice["post_payment_credit_notes_amount"]
        if amount > invoice["amount_paid"] - credited:
            raise StripeError(
                400,
                "The credit note's amount is more than the invoice's amount paid left to credit.",
                param="lines",
            )
        credit_amount = as_int(params.get("credit_amount"), amount - refund_amount - out_of_band) or 0
        if credit_amount + refund_amount + out_of_band != amount:
            raise StripeError(
                400,
                "refund_amount, credit_amount and out_of_band_amount must add up to the credit note's total.",
            )
    refunds = []
    if refund_amount:
        charge = _charge_of(account, invoice)
        refund = payments.refund(sb, account, charge, refund_amount, None, {})
        refunds.append(
            {
                "refund": refund["id"],
                "amount_refunded": refund_amount,
                "type": "refund",
                "payment_record_refund": None,
            }
        )
    note = sb.put(
        account,
        {
            "id": note_id,
            "object": "credit_note",
            "amount": amount,
            "amount_shipping": 0,
            "created": sb.now(),
            "currency": invoice["currency"],
            "customer": invoice["customer"],
            "effective_at": sb.now(),
            "invoice": invoice["id"],
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "url": f"/v1/credit_notes/{note_id}/lines",
            },
            "livemode": False,
            "memo": params.get("memo"),
            "metadata": params.get("metadata") or {},
            "number": f"{invoice['id'][-8:].upper()}-CN-{len(account.table('credit_note')) + 1:02d}",
            "out_of_band_amount": out_of_band or None,
            "post_payment_amount": 0 if pre_payment else amount,
            "pre_payment_amount": amount if pre_payment else 0,
            "reason": params.get("reason"),
            "refunds": refunds,
            "status": "issued",
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "total": amount,
            "total_excluding_tax": amount,
            "type": "pre_payment" if pre_payment else "post_payment",
            "voided_at": None,
            "_credit_amount": credit_amount,
        },
    )
    emit(sb, account, "credit_note.created", note)
    _apply(sb, account, note, invoice, 1)
    return note


def _charge_of(account: Account, invoice: Obj) -> Obj:
    for record in invoice["payments"]["data"]:
        intent = account.table("payment_intent").get(record["payment"]["payment_intent"] or "")
        charge = account.table("charge").get((intent or {}).get("latest_charge") or "")
        if charge is not None and charge["status"] == "succeeded":
            return charge
    raise StripeError(
        400,
        "This invoice was not paid with a charge to refund: use credit_amount or out_of_band_amount.",
        param="refund_amount",
    )


def _apply(sb: Sandbox, account: Account, note: Obj, invoice: Obj, sign: int) -> None:
    """The note's effect on its invoice and customer (``sign`` -1 undoes it)."""
    before = copy.deepcopy(invoice)
    amount = sign * note["amount"]
    if note["type"] == "pre_payment":
        invoice["pre_payment_credit_notes_amount"] += amount
        invoice["amount_due"] -= amount
        invoice["amount_remaining"] -= amount
    else:
        invoice["post_payment_credit_notes_amount"] += amount
    previous = {k: before[k] for k in invoice if invoice[k] != before[k]}
    if invoice["status"] == "open" and invoice["amount_remaining"] == 0:
        invoice["status"] = "paid"
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["paid_at"] = sb.now()
        emit(sb, account, "invoice.paid", invoice, {**previous, "status": "open"})
    elif previous:
        emit(sb, account, "invoice.updated", invoice, previous)
    credit = sign * note["_credit_amount"]
    customer = account.table("customer").get(note["customer"])
    if credit and customer is not None and not customer.get("deleted"):
        previous_balance = customer["balance"]
        customer["balance"] -= credit  # a negative balance is credit the customer's next invoices use
        emit(sb, account, "customer.updated", customer, {"balance": previous_balance})


def update(sb: Sandbox, account: Account, params: Obj, note_id: str) -> Obj:
    note = sb.get(account, "credit_note", note_id)
    previous: Obj = {}
    if "memo" in params and params["memo"] != note["memo"]:
        previous["memo"], note["memo"] = note["memo"], params["memo"] or None
    if "metadata" in params:
        merged = {
            k: v for k, v in {**note["metadata"], **(params["metadata"] or {})}.items() if v not in ("", None)
        }
        if merged != note["metadata"]:
            previous["metadata"], note["metadata"] = note["metadata"], merged
    if previous:
        emit(sb, account, "credit_note.updated", note, previous)
    return note


def void(sb: Sandbox, account: Account, params: Obj, note_id: str) -> Obj:
    note = sb.get(account, "credit_note", note_id)
    if note["status"] != "issued":
        raise StripeError(400, "This credit note is already void.", code="credit_note_unexpected_state")
    if note["refunds"]:
        raise StripeError(400, "A credit note with refunds cannot be voided: its refunds stand.")
    invoice = sb.get(account, "invoice", note["invoice"])
    if note["type"] == "pre_payment" and invoice["status"] != "open":
        raise StripeError(400, "This credit note's invoice is no longer open: it cannot be voided.")
    note.update(status="void", voided_at=sb.now())
    emit(sb, account, "credit_note.voided", note, {"status": "issued"})
    _apply(sb, account, note, invoice, -1)
    return note


def lines(sb: Sandbox, account: Account, params: Obj, note_id: str) -> list[Obj]:
    return list(sb.get(account, "credit_note", note_id)["lines"]["data"])
