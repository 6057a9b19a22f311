"""Payment methods and cards: Stripe's test payment methods and tokens, attaching them to customers,
a customer's card sources, and how a charge to each goes.

Stripe's test ids name a test card: ``pm_card_visa`` (a payment method), ``tok_visa`` (a token, which
becomes a card source or a payment method). Attaching ``pm_card_visa`` attaches a new payment method
made from that card (its own ``pm_…`` id), as Stripe does. What a charge to each card does follows
Stripe's testing page: most succeed; ``chargeCustomerFail`` attaches but every charge is declined;
``chargeDeclined…`` cards are declined when attached and when charged; ``threeDSecure2Required`` and
``authenticationRequired`` need the customer's authentication, which an off-session charge cannot get.
A customer without any payment method is charged successfully (the sandbox's simplification), unless
it is one of the sandbox's failing customers (``/_sandbox/customers/{id}/payment_failure``).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import NamedTuple

from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit


class TestCard(NamedTuple):
    brand: str  # a payment method's brand; a card source shows it capitalized (``source_brand``)
    last4: str
    funding: str
    outcome: str  # "succeeded", "fails_charges", "declined", "requires_action"
    decline_code: str = "generic_decline"

    @property
    def source_brand(self) -> str:
        return {"amex": "American Express", "mastercard": "MasterCard"}.get(self.brand, self.brand.title())


TEST_CARDS: dict[str, TestCard] = {
    "visa": TestCard("visa", "4242", "credit", "succeeded"),
    "visa_debit": TestCard("visa", "5556", "debit", "succeeded"),
    "mastercard": TestCard("mastercard", "4444", "credit", "succeeded"),
    "amex": TestCard("amex", "0005", "credit", "succeeded"),
    "discover": TestCard("discover", "1117", "credit", "succeeded"),
    "chargeCustomerFail": TestCard("visa", "0341", "credit", "fails_charges"),
    "chargeDeclined": TestCard("visa", "0002", "credit", "declined"),
    "chargeDeclinedInsufficientFunds": TestCard("visa", "9995", "credit", "declined", "insufficient_funds"),
    "chargeDeclinedExpiredCard": TestCard("visa", "0069", "credit", "declined", "expired_card"),
    "threeDSecure2Required": TestCard("visa", "3220", "credit", "requires_action"),
    "authenticationRequired": TestCard("visa", "3155", "credit", "requires_action"),
}
_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}


class Outcome(NamedTuple):
    """How one charge goes: ``status`` is "succeeded", "failed" or "requires_action"."""

    status: str
    code: str | None = None  # card_declined, ...
    decline_code: str | None = None

    @property
    def message(self) -> str:
        if self.status == "requires_action":
            return "This payment requires the customer's authentication."
        return _DECLINE_MESSAGES.get(self.decline_code or "generic_decline", "Your card was declined.")


def test_card(test_id: str) -> TestCard | None:
    """The test card a ``pm_card_…`` or ``tok_…`` id names, if any."""
    for prefix in ("pm_card_", "tok_"):
        if test_id.startswith(prefix):
            return TEST_CARDS.get(test_id.removeprefix(prefix))
    return None


def _declined(card: TestCard) -> StripeError:
    return StripeError(
        402,
        _DECLINE_MESSAGES.get(card.decline_code, "Your card was declined."),
        type_="card_error",
        code="card_declined",
    )


def _card_details(sb: Sandbox, card: TestCard, name: str) -> Obj:
    expires = datetime.datetime.fromtimestamp(sb.now(), datetime.UTC)
    return {
        "brand": card.brand,
        "display_brand": card.brand,
        "last4": card.last4,
        "funding": card.funding,
        "country": "US",
        "exp_month": expires.month,
        "exp_year": expires.year + 1,
        "fingerprint": hashlib.sha256(name.encode()).hexdigest()[:16],
        "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
        "networks": {"available": [card.brand], "preferred": None},
        "_test_card": name,
    }


# --- payment methods -------------------------------------------------------------------------------


def _new_payment_method(sb: Sandbox, account: Account, name: str, card: TestCard) -> Obj:
    return sb.put(
        account,
        {
            "id": sb.new_id("pm"),
            "object": "payment_method",
            "type": "card",
            "card": _card_details(sb, card, name),
            "created": sb.now(),
            "customer": None,
            "livemode": False,
            "metadata": {},
            "allow_redisplay": "unspecified",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        },
    )


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    """``POST /v1/payment_methods``: a card payment method from a test token (``card[token]``)."""
    if params.get("type") != "card":
        raise StripeError(400, "The sandbox creates card payment methods only: type=card.", param="type")
    token = str((params.get("card") or {}).get("token") or "")
    card = test_card(token)
    if card is None:
        raise StripeError(
            400,
            f"No such token: '{token}'. Use one of Stripe's test tokens (tok_visa, …).",
            param="card[token]",
        )
    payment_method = _new_payment_method(sb, account, token.removeprefix("tok_"), card)
    payment_method["metadata"] = dict(params.get("metadata") or {})
    return payment_method


def resolve(sb: Sandbox, account: Account, payment_method_id: str) -> Obj:
    """A stored payment method, or a new one made from a test id (``pm_card_visa``)."""
    stored = account.table("payment_method").get(payment_method_id)
    if stored is not None:
        return stored
    card = test_card(payment_method_id)
    if card is None or not payment_method_id.startswith("pm_card_"):
        raise StripeError(
            404,
            f"No such PaymentMethod: '{payment_method_id}'",
            code="resource_missing",
            param="payment_method",
        )
    return _new_payment_method(sb, account, payment_method_id.removeprefix("pm_card_"), card)


def retrieve(sb: Sandbox, account: Account, params: Obj, payment_method_id: str) -> Obj:
    return resolve(sb, account, payment_method_id)


def check_attachable(account: Account, payment_method_id: str) -> None:
    """Refuse what ``attach`` would refuse, before anything is made."""
    stored = account.table("payment_method").get(payment_method_id)
    card = TEST_CARDS.get(stored["card"]["_test_card"]) if stored else test_card(payment_method_id)
    if stored is None and (card is None or not payment_method_id.startswith("pm_card_")):
        raise StripeError(
            404,
            f"No such PaymentMethod: '{payment_method_id}'",
            code="resource_missing",
            param="payment_method",
        )
    if stored is not None and stored["customer"] is not None:
        raise StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    if card is not None and card.outcome == "declined":
        raise _declined(card)


def check_token(token: str) -> TestCard:
    card = test_card(token)
    if card is None or not token.startswith("tok_"):
        raise StripeError(400, f"No such token: '{token}'", code="resource_missing", param="source")
    if card.outcome == "declined":
        raise _declined(card)
    return card


def not_attached(spec: str) -> StripeError:
    return StripeError(
        400,
        f"The customer does not have a payment method with the ID {spec}. The payment method must be "
        "attached to the customer.",
        code="resource_missing",
        param="invoice_settings[default_payment_method]",
    )


def attach(sb: Sandbox, account: Account, params: Obj, payment_method_id: str) -> Obj:
    customer_id = str(params.get("customer") or "")
    customer = account.table("customer").get(customer_id)
    if customer is None or customer.get("deleted"):
        raise not_found("customer", customer_id)
    payment_method = resolve(sb, account, payment_method_id)
    if payment_method["customer"] == customer_id:
        return payment_method
    if payment_method["customer"] is not None:
        raise StripeError(
            400,
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    card = TEST_CARDS[payment_method["card"]["_test_card"]]
    if card.outcome == "declined":
        raise _declined(card)
    payment_method["customer"] = customer_id
    emit(sb, account, "payment_method.attached", payment_method)
    return payment_method


def detach(sb: Sandbox, account: Account, params: Obj, payment_method_id: str) -> Obj:
    payment_method = sb.get(account, "payment_method", payment_method_id)
    if payment_method["customer"] is None:
        raise StripeError(
            400,
            "The payment method you provided is not attached to a customer.",
            code="payment_method_unexpected_state",
        )
    previous = {"customer": payment_method["customer"]}
    payment_method["customer"] = None
    emit(sb, account, "payment_method.detached", payment_method, previous)
    return payment_method


def update(sb: Sandbox, account: Account, params: Obj, payment_method_id: str) -> Obj:
    """``POST /v1/payment_methods/{id}``: a card's expiry (``card[exp_month]``, ``card[exp_year]``)
    and metadata, on a payment method attached to a customer (Stripe refuses the others)."""
    payment_method = sb.get(account, "payment_method", payment_method_id)
    if payment_method["customer"] is None:
        raise StripeError(
            400,
            "You must save this PaymentMethod to a customer before you can update it.",
            code="payment_method_unexpected_state",
        )
    previous: Obj = {}
    card_params = params.get("card") or {}
    expiry = _expiry(card_params, payment_method["card"])
    if expiry != (payment_method["card"]["exp_month"], payment_method["card"]["exp_year"]):
        previous["card"] = _old_expiry(payment_method["card"])
        payment_method["card"].update(exp_month=expiry[0], exp_year=expiry[1])
    if "metadata" in params:
        merged = {**payment_method["metadata"], **(params["metadata"] or {})}
        metadata = {k: v for k, v in merged.items() if v not in ("", None)}
        if metadata != payment_method["metadata"]:
            previous["metadata"] = dict(payment_method["metadata"])
            payment_method["metadata"] = metadata
    if previous:
        emit(sb, account, "payment_method.updated", payment_method, previous)
    return payment_method


def _old_expiry(card: Obj) -> Obj:
    return {"exp_month": card["exp_month"], "exp_year": card["exp_year"]}


def _expiry(card_params: Obj, card: Obj) -> tuple[int, int]:
    month = int(card_params.get("exp_month") or card["exp_month"])
    year = int(card_params.get("exp_year") or card["exp_year"])
    if not 1 <= month <= 12:
        raise StripeError(
            400,
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param="card[exp_month]",
        )
    if year < 100:
        year += 2000  # Stripe takes two digits too
    return month, year


def automatically_update(
    sb: Sandbox, account: Account, payment_method_id: str, exp_month: int, exp_year: int
) -> Obj:
    """The card network's updater renewed a saved card (Stripe's card account updater): its new
    expiry, announced by ``payment_method.automatically_updated``. No API call does this on Stripe;
    the sandbox's control route ``/_sandbox/payment_methods/{id}/card_updated`` stands for it."""
    payment_method = sb.get(account, "payment_method", payment_method_id)
    if payment_method["type"] != "card" or payment_method["customer"] is None:
        raise StripeError(400, "Only a card saved to a customer is updated by its network.")
    previous = {"card": _old_expiry(payment_method["card"])}
    month, year = _expiry({"exp_month": exp_month, "exp_year": exp_year}, payment_method["card"])
    payment_method["card"].update(exp_month=month, exp_year=year)
    emit(sb, account, "payment_method.automatically_updated", payment_method, previous)
    return payment_method


def matches(payment_method: Obj, params: Obj) -> bool:
    """``GET /v1/payment_methods``'s filters: ``customer``, ``type``."""
    if params.get("customer") and payment_method["customer"] != params["customer"]:
        return False
    return not params.get("type") or payment_method["type"] == params["type"]


def of_customer(sb: Sandbox, account: Account, params: Obj, customer_id: str) -> list[Obj]:
    """``GET /v1/customers/{id}/payment_methods``."""
    sb.get(account, "customer", customer_id)
    found = [p for p in account.table("payment_method").values() if p["customer"] == customer_id]
    return [p for p in reversed(found) if matches(p, params)]


def default_for(sb: Sandbox, account: Account, customer: Obj, spec: str, attached: Obj | None) -> str:
    """The payment method ``invoice_settings[default_payment_method]`` names: one attached to the
    customer (a test id names the one just attached from it)."""
    if attached is not None and spec in (attached["id"], f"pm_card_{attached['card']['_test_card']}"):
        return str(attached["id"])
    payment_method = account.table("payment_method").get(spec)
    if payment_method is None or payment_method["customer"] != customer["id"]:
        raise not_attached(spec)
    return spec


# --- card sources (the Sources API: tok_visa on a customer) ----------------------------------------


def add_card(sb: Sandbox, account: Account, customer: Obj, token: str, metadata: Obj | None = None) -> Obj:
    """A card source from a test token, the customer's default source if it has none."""
    card = new_card(sb, account, customer, token, metadata)
    emit(sb, account, "customer.source.created", card)
    if customer.get("default_source") is None:
        customer["default_source"] = card["id"]
        emit(sb, account, "customer.updated", customer, {"default_source": None})
    return card


def new_card(sb: Sandbox, account: Account, customer: Obj, token: str, metadata: Obj | None = None) -> Obj:
    """A card source made from a test token, on the customer's ``sources`` (no event yet)."""
    card_spec = check_token(token)
    details = _card_details(sb, card_spec, token.removeprefix("tok_"))
    card = sb.put(
        account,
        {
            "id": sb.new_id("card"),
            "object": "card",
            "customer": customer["id"],
            "brand": card_spec.source_brand,
            "last4": details["last4"],
            "funding": details["funding"],
            "country": details["country"],
            "exp_month": details["exp_month"],
            "exp_year": details["exp_year"],
            "fingerprint": details["fingerprint"],
            "cvc_check": "pass",
            "metadata": dict(metadata or {}),
            "tokenization_method": None,
            "_test_card": details["_test_card"],
        },
    )
    customer.setdefault("sources", _empty_sources(customer["id"]))["data"].append(card)
    return card


def _empty_sources(customer_id: str) -> Obj:
    return {"object": "list", "data": [], "has_more": False, "url": f"/v1/customers/{customer_id}/sources"}


def create_source(sb: Sandbox, account: Account, params: Obj, customer_id: str) -> Obj:
    """``POST /v1/customers/{id}/sources``."""
    customer = account.table("customer").get(customer_id)
    if customer is None or customer.get("deleted"):
        raise not_found("customer", customer_id)
    return add_card(sb, account, customer, str(params.get("source") or ""), params.get("metadata"))


def _card_of(sb: Sandbox, account: Account, customer_id: str, card_id: str) -> Obj:
    card = account.table("card").get(card_id)
    if card is None or card["customer"] != customer_id:
        raise StripeError(404, f"No such source: '{card_id}'", code="resource_missing", param="id")
    return card


def retrieve_source(sb: Sandbox, account: Account, params: Obj, customer_id: str, card_id: str) -> Obj:
    return _card_of(sb, account, customer_id, card_id)


_CARD_FIELDS = (
    "name",
    "exp_month",
    "exp_year",
    "address_city",
    "address_country",
    "address_line1",
    "address_line2",
    "address_state",
    "address_zip",
)


def update_source(sb: Sandbox, account: Account, params: Obj, customer_id: str, card_id: str) -> Obj:
    """``POST /v1/customers/{id}/sources/{source}``: a card's holder, expiry, address or metadata."""
    card = _card_of(sb, account, customer_id, card_id)
    previous: Obj = {}
    for key in _CARD_FIELDS:
        if key in params:
            value = int(params[key]) if key.startswith("exp_") else (params[key] or None)
            if card.get(key) != value:
                previous[key], card[key] = card.get(key), value
    if "metadata" in params:
        new = {
            k: v for k, v in {**card["metadata"], **(params["metadata"] or {})}.items() if v not in ("", None)
        }
        if new != card["metadata"]:
            previous["metadata"] = dict(card["metadata"])
            card["metadata"] = new
    if previous:
        emit(sb, account, "customer.source.updated", card, previous)
    return card


# --- charging --------------------------------------------------------------------------------------


def instrument(sb: Sandbox, account: Account, customer_id: str | None, explicit: str | None) -> Obj | None:
    """What a charge is made with: the payment method (or card) asked for, else the customer's
    default payment method, else its default source; None when there is none."""
    if explicit:
        card = account.table("card").get(explicit)
        return card if card is not None else resolve(sb, account, explicit)
    customer = account.table("customer").get(customer_id or "")
    if customer is None or customer.get("deleted"):
        return None
    default = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if default:
        return account.table("payment_method").get(default) or {"id": default, "object": "payment_method"}
    source = customer.get("default_source")
    return account.table("card").get(source) if source else None


def outcome(
    account: Account, customer_id: str | None, paying_with: Obj | None, *, off_session: bool
) -> Outcome:
    """How a charge made with ``paying_with`` goes (see the module's description)."""
    if customer_id in account.failing_customers:
        return Outcome("failed", "card_declined", "generic_decline")
    name = _test_card_name(paying_with)
    card = TEST_CARDS.get(name) if name else None
    if card is None or card.outcome == "succeeded":
        return Outcome("succeeded")
    if card.outcome == "requires_action":
        return Outcome("requires_action", "authentication_required" if off_session else None)
    return Outcome("failed", "card_declined", card.decline_code)


def _test_card_name(paying_with: Obj | None) -> str | None:
    if paying_with is None:
        return None
    if paying_with.get("object") == "card":
        return str(paying_with.get("_test_card") or "") or None
    return str((paying_with.get("card") or {}).get("_test_card") or "") or None


def details(paying_with: Obj | None) -> Obj:
    """A charge's ``payment_method_details``."""
    if paying_with is None:
        return {
            "type": "card",
            "card": {"brand": "visa", "last4": "4242", "funding": "credit", "country": "US"},
        }
    if paying_with.get("object") == "card":
        return {
            "type": "card",
            "card": {
                "brand": str(paying_with["brand"]).lower().replace("american express", "amex"),
                "last4": paying_with["last4"],
                "funding": paying_with["funding"],
                "country": paying_with["country"],
                "exp_month": paying_with["exp_month"],
                "exp_year": paying_with["exp_year"],
            },
        }
    card = {k: v for k, v in (paying_with.get("card") or {}).items() if not k.startswith("_")}
    return {"type": "card", "card": card}
