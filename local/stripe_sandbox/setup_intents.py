"""Setup intents: saving a payment method for later payments. Confirmed with a customer, the payment
method is attached to it (``payment_method.attached``) and the intent succeeds; a declined test card
fails it, as Stripe's testing page says. The sandbox confirms at creation (``confirm=true``) or not at
all: the Stripe CLI's ``payment_method.updated`` trigger saves its card this way."""

from __future__ import annotations

from local.stripe_sandbox import payment_methods
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    customer_id = params.get("customer")
    if customer_id:
        customer = account.table("customer").get(str(customer_id))
        if customer is None or customer.get("deleted"):
            raise not_found("customer", str(customer_id))
    usage = params.get("usage") or "off_session"
    if usage not in ("off_session", "on_session"):
        raise StripeError(400, f"Invalid usage: {usage}", param="usage")
    confirm = as_bool(params.get("confirm", False))
    spec = str(params.get("payment_method") or "")
    if confirm and not spec:
        raise StripeError(400, "You cannot confirm this SetupIntent because it's missing a payment method.")
    if spec and customer_id:
        payment_methods.check_attachable(account, spec)
    intent = sb.put(
        account,
        {
            "id": sb.new_id("seti"),
            "object": "setup_intent",
            "created": sb.now(),
            "customer": customer_id or None,
            "description": params.get("description"),
            "metadata": dict(params.get("metadata") or {}),
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
            "usage": usage,
            "livemode": False,
            "client_secret": None,
        },
    )
    intent["client_secret"] = f"{intent['id']}_secret_{sb.new_id('cs')[-10:]}"
    emit(sb, account, "setup_intent.created", intent)
    if not spec:
        return intent
    payment_method = payment_methods.resolve(sb, account, spec)
    intent.update(payment_method=payment_method["id"], status="requires_confirmation")
    if confirm:
        if customer_id:
            payment_methods.attach(sb, account, {"customer": customer_id}, payment_method["id"])
        intent["status"] = "succeeded"
        emit(sb, account, "setup_intent.succeeded", intent)
    return intent


def retrieve(sb: Sandbox, account: Account, params: Obj, intent_id: str) -> Obj:
    return sb.get(account, "setup_intent", intent_id)
