"""What a customer got back of what it paid: refunds and credit notes against paid invoices.

The rule (``total_refunded``), per paid invoice, from the stored credit notes and charges, each
keyed by its id, so however often and in whatever order their events come, each counts once:

* an issued credit note counts its post-payment part (``post_payment_amount``), which Stripe splits
  into what it refunded on the invoice's charge (``refunds[].amount_refunded``), what it credited to
  the customer's balance and what was returned out of band; a void one counts nothing;
* a charge that paid the invoice (``charge.invoice``, or its payment intent among the invoice's
  payments) counts its ``amount_refunded``: every refund of it, the credit notes' included, since a
  credit note's refund is a refund of that charge (Stripe's ``charge.refunded`` describes the same
  money as the ``credit_note.created`` that made it);
* so an invoice's refunded amount is what its credit notes credited other than by refund, plus the
  larger of their refunds and its charges' refunds: ``credited - refunds + max(refunds, charged)``.
  Before the charge is observed, the credit note's refund counts; after, the charge's total, which
  includes it: never both.

Charges that paid no paid invoice revsync knows (a one-off charge) count nothing, as their payments
are not in ``total_paid`` either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from revsync.domain.snapshots import ChargeSnapshot, CreditNoteSnapshot, InvoiceSnapshot


def total_refunded(
    invoices: Iterable[InvoiceSnapshot],
    credit_notes: Iterable[CreditNoteSnapshot],
    charges: Iterable[ChargeSnapshot],
) -> int:
    """Refunds and credit notes against paid invoices, in minor units, each counted once."""
    paid = [i for i in invoices if i["status"] == "paid"]
    by_intent = {intent: i["id"] for i in paid for intent in i.get("payment_intents", ())}
    credited: dict[str | None, int] = defaultdict(int)
    note_refunds: dict[str | None, int] = defaultdict(int)
    for note in credit_notes:
        if note["status"] != "void":
            credited[note["invoice"]] += note["post_payment"]
            note_refunds[note["invoice"]] += note["refunded"]
    charged: dict[str | None, int] = defaultdict(int)
    for charge in charges:
        invoice = charge["invoice"] or by_intent.get(charge["payment_intent"] or "")
        if invoice is not None:
            charged[invoice] += charge["amount_refunded"]
    return sum(
        credited[invoice] - note_refunds[invoice] + max(note_refunds[invoice], charged[invoice])
        for invoice in {*credited, *charged}
    )
