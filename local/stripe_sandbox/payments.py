"""Payments: payment intents, their charges and refunds.

A payment intent confirmed with a payment method makes one charge per attempt (``collect``); how the
attempt goes is the payment method's test card's doing (``payment_methods.outcome``). Invoices collect
through here too, so a paid invoice has a payment intent and a charge to refund. A refund lowers its
charge's ``amount_refunded`` (``refunded`` once all of it is), and is answered at once as
``succeeded``, as test-mode card refunds are.
"""

from __future__ import annotations

import secrets

from local.stripe_sandbox import payment_methods
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int


def new_intent(
    sb: Sandbox,
    account: Account,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    description: str | None,
) -> Obj:
    intent_id = sb.new_id("pi")
    intent = sb.put(
        account,
        {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": sb.now(),
            "currency": currency,
            "customer": customer,
            "description": description,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
            "last_payment_error": None,
            "next_action": None,
        },
    )
    emit(sb, account, "payment_intent.created", intent)
    return intent


def collect(
    sb: Sandbox, account: Account, intent: Obj, paying_with: Obj | None, *, off_session: bool
) -> Obj | None:
    """One attempt to collect ``intent`` with ``paying_with``: a charge succeeds or fails, or the
    customer must authenticate. Returns the charge (None when no charge was made)."""
    intent["payment_method"] = paying_with["id"] if paying_with else None
    result = payment_methods.outcome(account, intent["customer"], paying_with, off_session=off_session)
    if result.status == "requires_action":
        intent.update(
            status="requires_action",
            next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {}},
            last_payment_error=None,
        )
        emit(sb, account, "payment_intent.requires_action", intent)
        return None
    charge = sb.put(
        account,
        {
            "id": sb.new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if result.status == "succeeded" else 0,
            "amount_refunded": 0,
            "captured": result.status == "succeeded",
            "created": sb.now(),
            "currency": intent["currency"],
            "customer": intent["customer"],
            "description": intent["description"],
            "livemode": False,
            "metadata": {},
            "paid": result.status == "succeeded",
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "payment_method_details": payment_methods.details(paying_with),
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""},
            "status": result.status,
            "failure_code": result.code if result.status == "failed" else None,
            "failure_message": result.message if result.status == "failed" else None,
            "outcome": {
                "type": "authorized" if result.status == "succeeded" else "issuer_declined",
                "network_status": "approved_by_network"
                if result.status == "succeeded"
                else "declined_by_network",
                "reason": None if result.status == "succeeded" else result.decline_code,
                "risk_level": "normal",
                "seller_message": "Payment complete."
                if result.status == "succeeded"
                else "The bank declined the payment.",
            },
        },
    )
    charge["refunds"]["url"] = f"/v1/charges/{charge['id']}/refunds"
    intent["latest_charge"] = charge["id"]
    if result.status == "succeeded":
        intent.update(
            status="succeeded", amount_received=intent["amount"], last_payment_error=None, next_action=None
        )
        emit(sb, account, "charge.succeeded", charge)
        emit(sb, account, "payment_intent.succeeded", intent)
        return charge
    intent.update(
        status="requires_payment_method",
        last_payment_error={
            "type": "card_error",
            "code": result.code,
            "decline_code": result.decline_code,
            "message": result.message,
            "charge": charge["id"],
        },
    )
    emit(sb, account, "charge.failed", charge)
    emit(sb, account, "payment_intent.payment_failed", intent)
    return charge


def card_error(intent: Obj) -> StripeError:
    """The 402 Stripe answers for an attempt that did not succeed."""
    error = intent.get("last_payment_error") or {}
    if intent["status"] == "requires_action":
        return StripeError(
            402,
            "This payment requires additional user action before it can be completed successfully.",
            type_="card_error",
            code="authentication_required",
        )
    return StripeError(
        402, str(error.get("message")), type_="card_error", code=error.get("code") or "card_declined"
    )


# --- the API ---------------------------------------------------------------------------------------


def create_intent(sb: Sandbox, account: Account, params: Obj) -> Obj:
    amount, currency = as_int(params.get("amount")), params.get("currency")
    if amount is None:
        raise StripeError(400, "Missing required param: amount.", param="amount")
    if not currency:
        raise StripeError(400, "Missing required param: currency.", param="currency")
    customer = params.get("customer") or None
    if customer is not None:
        sb.get(account, "customer", str(customer))
    intent = new_intent(
        sb,
        account,
        amount=amount,
        currency=str(currency),
        customer=customer,
        description=params.get("description"),
    )
    intent["metadata"] = dict(params.get("metadata") or {})
    paying_with = (
        payment_methods.instrument(sb, account, customer, str(params["payment_method"]))
        if params.get("payment_method")
        else None
    )
    if paying_with is not None:
        intent["payment_method"] = paying_with["id"]
        intent["status"] = "requires_confirmation"
    if as_bool(params.get("confirm", False)):
        if paying_with is None:
            raise StripeError(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                param="payment_method",
            )
        collect(sb, account, intent, paying_with, off_session=as_bool(params.get("off_session", False)))
        if intent["status"] not in ("succeeded", "requires_action"):
            raise card_error(intent)
    return intent


def charge_of(sb: Sandbox, account: Account, intent_id: str) -> Obj:
    """The succeeded charge of a payment intent (what a refund of it refunds)."""
    intent = sb.get(account, "payment_intent", intent_id)
    charge = account.table("charge").get(intent["latest_charge"] or "")
    if charge is None or charge["status"] != "succeeded":
        raise StripeError(
            400,
            f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
            code="charge_not_refundable",
        )
    return charge


def refund(
    sb: Sandbox, account: Account, charge: Obj, amount: int | None, reason: str | None, metadata: Obj
) -> Obj:
    remaining = charge["amount"] - charge["amount_refunded"]
    amount = remaining if amount is None else amount
    if amount <= 0 or amount > remaining:
        raise StripeError(
            400,
            f"Refund amount ({amount}) is greater than the unrefunded amount on the charge ({remaining}).",
            code="amount_too_large",
            param="amount",
        )
    created = sb.put(
        account,
        {
            "id": sb.new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": sb.now(),
            "currency": charge["currency"],
            "metadata": dict(metadata),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "succeeded",
        },
    )
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    charge["refunds"]["data"].insert(0, created)
    emit(sb, account, "charge.refunded", charge, previous)
    emit(sb, account, "refund.created", created)
    return created


def create_refund(sb: Sandbox, account: Account, params: Obj) -> Obj:
    if params.get("charge"):
        charge = sb.get(account, "charge", str(params["charge"]))
    elif params.get("payment_intent"):
        charge = charge_of(sb, account, str(params["payment_intent"]))
    else:
        raise StripeError(400, "One of charge or payment_intent is required.", param="charge")
    return refund(
        sb, account, charge, as_int(params.get("amount")), params.get("reason"), params.get("metadata") or {}
    )


def charge_matches(charge: Obj, params: Obj) -> bool:
    """``GET /v1/charges``'s filters: ``customer``, ``payment_intent``."""
    return all(not params.get(key) or charge[key] == params[key] for key in ("customer", "payment_intent"))


def refund_matches(refund_: Obj, params: Obj) -> bool:
    """``GET /v1/refunds``'s filters: ``charge``, ``payment_intent``."""
    return all(not params.get(key) or refund_[key] == params[key] for key in ("charge", "payment_intent"))


def intent_matches(intent: Obj, params: Obj) -> bool:
    """``GET /v1/payment_intents``'s filter: ``customer``."""
    return not params.get("customer") or intent["customer"] == params["customer"]
