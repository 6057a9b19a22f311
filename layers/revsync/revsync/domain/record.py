"""The customer record (docs/contracts.md contract), derived from a customer's stored Stripe objects.

Every field is a function of the stored object states and the tenant's customer-ID trait, never of
the order in which events arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict, cast

from revsync.domain.mrr import exact_sum, policy_churned_at, round_minor_units, subscription_mrr
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.refunds import total_refunded
from revsync.domain.renewal import renews_at
from revsync.domain.risk import NO_RISK, Risk, derive_risk, risk_traits
from revsync.domain.snapshots import (
    LIVE_SUBSCRIPTION_STATUSES,
    ChargeSnapshot,
    CreditNoteSnapshot,
    CustomerSnapshot,
    InvoiceSnapshot,
    SubscriptionSnapshot,
)
from revsync.domain.state import CustomerObjects, counted_usage
from revsync.errors import InvalidInput

MAX_KEY_BYTES = 1024  # DynamoDB's limit on a sort key (the record's external_id)
UNMATCHED_PREFIX = "stripe:"


class SubscriptionSummary(TypedDict):
    status: str
    mrr: int
    currency: str | None
    current_period_end: int | None
    trial_end: int | None
    cancel_at_period_end: bool


class CustomerRecord(TypedDict):
    """The attributes revsync owns on a customer item keyed by (tenant_id, external_id)."""

    tenant_id: str
    external_id: str
    stripe_customer_id: str
    matched: bool
    mrr: int
    currency: str | None
    trialing: bool
    trial_end: int | None
    next_renewal_at: int | None
    churned: bool
    churned_at: int | None
    deleted_in_stripe: bool
    last_payment_at: int | None
    total_paid: int
    total_refunded: int
    net_paid: int
    risk: Risk
    subscriptions: dict[str, SubscriptionSummary]
    traits: dict[str, Any]


class TraitError(InvalidInput):
    code = "invalid_customer_id_trait"


def validate_trait(trait: str) -> str:
    """A customer-ID trait is ``id``, ``email`` or ``metadata.<key>``, the key as Stripe allows it:
    1-40 characters, any but square brackets (so ``metadata.app.id`` is the key ``app.id``)."""
    if trait in ("id", "email"):
        return trait
    key = trait.removeprefix("metadata.")
    if trait.startswith("metadata.") and 0 < len(key) <= 40 and not {"[", "]"} & set(key):
        return trait
    raise TraitError("customer_id_trait must be 'id', 'email' or 'metadata.<key>'")


def external_id_for(
    customer_id: str, customer: CustomerSnapshot | None, trait: str | None
) -> tuple[str, bool]:
    """The record key for a Stripe customer, and whether the tenant's trait matched."""
    value: str | None = None
    if trait == "id":
        value = customer_id
    elif customer is not None and trait == "email":
        value = customer["email"]
    elif customer is not None and trait and trait.startswith("metadata."):
        value = customer["metadata"].get(trait.removeprefix("metadata."))
    value = value.strip() if isinstance(value, str) else None
    # A value DynamoDB cannot key a record by (a sort key is at most 1024 bytes) matches nothing.
    if value and len(value.encode()) <= MAX_KEY_BYTES:
        return value, True
    return f"{UNMATCHED_PREFIX}{customer_id}", False


def record_key_unknown(objects: CustomerObjects, trait: str | None) -> bool:
    """Whether the record's key is not known yet: the trait is read from the customer object
    (``email``, ``metadata.<key>``) and that object has not been observed."""
    return objects.customer is None and trait is not None and trait != "id"


def derive_record(
    tenant_id: str,
    objects: CustomerObjects,
    trait: str | None,
    policy: RevenuePolicy = DEFAULT_POLICY,
    *,
    past_due_since: Mapping[str, int] | None = None,
    as_of: int | None = None,
) -> CustomerRecord:
    """The record by the revenue rules and ``policy``, as of ``as_of`` (default: the newest
    observation; the write path judges a customer at its clock's time, revsync.services.sync), its
    risk signals included. ``past_due_since``: subscription id -> when its current run of
    ``past_due`` began (``revsync.domain.history``): a policy that churns past due subscriptions
    reads it, and so does ``dunning_since``."""
    customer = objects.customer["snapshot"] if objects.customer else None
    assert customer is None or customer["object"] == "customer"
    subscriptions: list[SubscriptionSnapshot] = [
        o["snapshot"] for o in objects.subscriptions.values() if o["snapshot"]["object"] == "subscription"
    ]
    invoices: list[InvoiceSnapshot] = [
        o["snapshot"] for o in objects.invoices.values() if o["snapshot"]["object"] == "invoice"
    ]
    deleted = bool(customer and customer["deleted"])
    as_of = objects.newest_observation if as_of is None else as_of
    since = past_due_since or {}
    external_id, matched = external_id_for(objects.customer_id, customer, trait)

    customer_discounts = [customer["discount"]] if customer and customer["discount"] else []
    currency = (customer["currency"] if customer else None) or next(
        (s["currency"] for s in subscriptions if s["currency"]), None
    )
    exact: dict[str, Decimal] = {
        s["id"]: subscription_mrr(
            s, customer_discounts, as_of, policy, since.get(s["id"]), counted_usage(objects.usage, s)
        )
        for s in subscriptions
    }
    # Subscriptions the policy churned before Stripe ended them: when it did.
    policy_ended = {
        o["snapshot"]["id"]: at
        for o in objects.subscriptions.values()
        if o["snapshot"]["object"] == "subscription"
        and (
            at := policy_churned_at(
                o["snapshot"], policy, as_of, since.get(o["snapshot"]["id"]), o["observed_at"]
            )
        )
        is not None
    }
    total = exact_sum(exact[s["id"]] for s in subscriptions if _same_currency(s, currency))

    trialing_subs = [s for s in subscriptions if s["status"] == "trialing"]
    trial_ends = [s["trial_end"] for s in trialing_subs if s["trial_end"] is not None]
    renewals = [r for s in subscriptions if (r := renews_at(s, invoices)) is not None]
    live = [
        s for s in subscriptions if s["status"] in LIVE_SUBSCRIPTION_STATUSES and s["id"] not in policy_ended
    ]
    churned = deleted or (bool(subscriptions) and not live)
    ended = [
        t
        for t in (policy_ended.get(s["id"]) or s["ended_at"] or s["canceled_at"] for s in subscriptions)
        if t is not None
    ]
    churned_at: int | None = None
    if deleted and objects.customer is not None:
        # The deletion event dates it; a deletion only read later (a backfill) is dated by the
        # subscriptions it ended, if any.
        read_later = objects.customer["source"] == "fetched" and ended
        churned_at = max(ended) if read_later else objects.customer["observed_at"]
    elif churned:
        churned_at = max(ended, default=None)

    paid = [i for i in invoices if i["status"] == "paid"]
    last_payment_at = max((i["paid_at"] for i in paid if i["paid_at"] is not None), default=None)
    total_paid = sum(i["amount_paid"] for i in paid)
    refunds = [o["snapshot"] for o in objects.refunds.values()]
    credit_notes: list[CreditNoteSnapshot] = [s for s in refunds if s["object"] == "credit_note"]
    charges: list[ChargeSnapshot] = [s for s in refunds if s["object"] == "charge"]
    refunded = total_refunded(invoices, credit_notes, charges)

    summaries = {
        s["id"]: SubscriptionSummary(
            status=s["status"],
            mrr=0 if deleted else round_minor_units(exact[s["id"]]),
            currency=s["currency"],
            current_period_end=s["current_period_end"],
            trial_end=s["trial_end"],
            cancel_at_period_end=s["cancel_at_period_end"],
        )
        for s in subscriptions
    }
    record = CustomerRecord(
        tenant_id=tenant_id,
        external_id=external_id,
        stripe_customer_id=objects.customer_id,
        matched=matched,
        mrr=0 if deleted else round_minor_units(total),
        currency=currency,
        trialing=bool(trialing_subs) and not deleted,
        trial_end=None if deleted or not trial_ends else max(trial_ends),
        next_renewal_at=None if deleted or not renewals else min(renewals),
        churned=churned,
        churned_at=churned_at,
        deleted_in_stripe=deleted,
        last_payment_at=last_payment_at,
        total_paid=total_paid,
        total_refunded=refunded,
        net_paid=total_paid - refunded,
        risk=derive_risk(objects, currency, as_of, policy, since),
        subscriptions=summaries,
        traits={},
    )
    record["traits"] = _traits(customer, subscriptions, record)
    return record


def _same_currency(subscription: SubscriptionSnapshot, currency: str | None) -> bool:
    return currency is None or subscription["currency"] in (None, currency)


def _traits(
    customer: CustomerSnapshot | None, subscriptions: list[SubscriptionSnapshot], record: CustomerRecord
) -> dict[str, Any]:
    """Stripe data as ``stripe.*`` traits (flat keys, so reports can pick any of them)."""
    traits: dict[str, Any] = {}
    if customer is not None:
        traits.update(
            {
                "stripe.email": customer["email"],
                "stripe.name": customer["name"],
                "stripe.created": customer["created"],
                "stripe.currency": customer["currency"],
                "stripe.balance": customer["balance"],
                "stripe.delinquent": customer["delinquent"],
            }
        )
        traits.update({f"stripe.metadata.{k}": v for k, v in sorted(customer["metadata"].items())})
    ordered = sorted(subscriptions, key=lambda s: (s["created"] or 0, s["id"]))
    live = [s for s in ordered if s["status"] in LIVE_SUBSCRIPTION_STATUSES]
    shown = live or ordered
    plan_names = sorted(
        {
            (item["price"]["nickname"] or item["price"]["id"] or "")
            for s in live
            for item in s["items"]
            if item["price"] is not None
        }
        - {""}
    )
    traits.update(
        {
            "stripe.mrr": record["mrr"],
            "stripe.subscription_status": shown[-1]["status"] if shown else None,
            "stripe.plan_names": plan_names,
            "stripe.trial_end": record["trial_end"],
            "stripe.next_renewal_at": record["next_renewal_at"],
            "stripe.last_payment_at": record["last_payment_at"],
            "stripe.total_paid": record["total_paid"],
            "stripe.net_paid": record["net_paid"],
        }
    )
    # Each raised signal (one at rest, false, 0 or null, is left out: most customers have none, and
    # the record's item is billed per KB).
    resting = risk_traits(NO_RISK)
    traits.update(
        {name: value for name, value in risk_traits(record["risk"]).items() if value != resting[name]}
    )
    return traits


def raised_signals(risk: Risk) -> dict[str, Any]:
    """The signals not at rest (``NO_RISK``'s false, 0 and null): what the record's item keeps of its
    ``risk`` map (``risk_of`` reads it back whole)."""
    resting: dict[str, Any] = dict(NO_RISK)
    return {name: value for name, value in risk.items() if value != resting[name]}


def risk_of(raised: Mapping[str, Any] | None) -> Risk:
    """The whole ``risk`` map from its raised signals (an item's; None: none raised)."""
    return cast(Risk, {**NO_RISK, **(raised or {})})
