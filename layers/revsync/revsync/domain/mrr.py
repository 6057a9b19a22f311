"""Monthly recurring revenue, per docs/contracts.md's revenue rules.

Everything is computed per billing period in exact decimals, discounted, then normalised to a month.
Only the customer total is rounded (once, half-up) by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal

from revsync.domain.policy import DEFAULT_POLICY, DiscountRule, RevenuePolicy
from revsync.domain.snapshots import (
    LIVE_SUBSCRIPTION_STATUSES,
    Discount,
    Price,
    SubscriptionItem,
    SubscriptionSnapshot,
    UsageLine,
)

# Stripe's own MRR definition: only these statuses bring revenue in.
REVENUE_STATUSES = frozenset({"active", "past_due"})

_ZERO = Decimal(0)
# Wide enough that adding revenue values never rounds: a customer's total is exact, whatever the order
# its subscriptions are added in (or taken out of a running total), and rounded once.
EXACT = Context(prec=200)
_MONTHS_PER = {
    "month": Decimal(1),
    "year": Decimal(12),
    "week": Decimal(12) / Decimal(52),
    "day": Decimal(12) / Decimal(365),
}


def _dec(text: str | None) -> Decimal:
    return Decimal(text) if text else _ZERO


def billed_quantity(quantity: int, price: Price) -> Decimal:
    """``transform_quantity`` (``transform_usage`` on plans): divide, then round up or down."""
    divide_by = price["divide_by"]
    if not divide_by:
        return Decimal(quantity)
    rounding = ROUND_CEILING if price["round"] == "up" else ROUND_FLOOR
    return (Decimal(quantity) / Decimal(divide_by)).to_integral_value(rounding=rounding)


def _tiered_amount(quantity: Decimal, price: Price) -> Decimal:
    tiers = price["tiers"]
    if quantity <= 0 or not tiers:
        return _ZERO
    if price["tiers_mode"] == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return quantity * _dec(tier["unit_amount"]) + _dec(tier["flat_amount"])
        return _ZERO
    # graduated: each tier bills the units that fall inside it, plus its flat amount once.
    total, lower = _ZERO, _ZERO
    for tier in tiers:
        upper = Decimal(tier["up_to"]) if tier["up_to"] is not None else quantity
        units = min(quantity, upper) - lower
        if units <= 0:
            break
        total += units * _dec(tier["unit_amount"]) + _dec(tier["flat_amount"])
        lower = upper
    return total


def item_period_amount(item: SubscriptionItem) -> Decimal:
    """An item's undiscounted amount for one billing period, in minor units."""
    price = item["price"]
    if price is None or price["usage_type"] == "metered":
        return _ZERO
    quantity = billed_quantity(item["quantity"], price)
    if price["billing_scheme"] == "tiered":
        return _tiered_amount(quantity, price)
    return quantity * _dec(price["unit_amount"])


def discount_is_active(discount: Discount, as_of: int, rule: DiscountRule = "active") -> bool:
    coupon = discount["coupon"]
    if coupon is None or rule == "none":
        return False
    if coupon["duration"] == "forever":
        return True
    if rule == "forever_only":
        return False
    if coupon["duration"] == "repeating":
        return discount["end"] is None or discount["end"] > as_of
    return False  # "once" discounts do not recur


def apply_discounts(
    amount: Decimal,
    discounts: Iterable[Discount],
    currency: str | None,
    as_of: int,
    rule: DiscountRule = "active",
) -> Decimal:
    for discount in discounts:
        if not discount_is_active(discount, as_of, rule):
            continue
        coupon = discount["coupon"]
        assert coupon is not None  # discount_is_active guarantees it
        if coupon["percent_off"] is not None:
            amount -= amount * Decimal(coupon["percent_off"]) / Decimal(100)
        elif coupon["amount_off"] is not None and (coupon["currency"] or currency) == currency:
            amount -= Decimal(coupon["amount_off"])
        amount = max(amount, _ZERO)
    return amount


def _interval(subscription: SubscriptionSnapshot) -> tuple[str | None, int]:
    for item in subscription["items"]:
        price = item["price"]
        if price is not None and price["interval"]:
            return price["interval"], price["interval_count"]
    return None, 1


def to_monthly(amount: Decimal, interval: str | None, interval_count: int) -> Decimal:
    months = _MONTHS_PER.get(interval or "")
    if months is None or interval_count <= 0:
        return _ZERO
    return amount / (months * interval_count)


def cancel_scheduled(subscription: SubscriptionSnapshot) -> bool:
    """A cancellation is scheduled: at the period end, or at a ``cancel_at`` date."""
    return subscription["cancel_at_period_end"] or subscription["cancel_at"] is not None


def policy_churned_at(
    subscription: SubscriptionSnapshot,
    policy: RevenuePolicy,
    as_of: int,
    past_due_since: int | None,
    observed_at: int,
) -> int | None:
    """When ``policy`` churned a subscription Stripe still keeps live (None: it did not): at the
    scheduling of its cancellation (Stripe's ``canceled_at`` is that request's time; else the time it
    was observed scheduled), or once past due longer than the policy allows."""
    if subscription["status"] not in LIVE_SUBSCRIPTION_STATUSES:
        return None
    if policy.churn_at == "scheduled" and cancel_scheduled(subscription):
        return subscription["canceled_at"] or observed_at
    grace = policy.past_due_grace
    if subscription["status"] != "past_due" or grace is None or past_due_since is None:
        return None
    return past_due_since + grace if as_of >= past_due_since + grace else None


def metered_period_amount(
    item: SubscriptionItem,
    lines: Sequence[UsageLine],
    discounts: Sequence[Discount],
    as_of: int,
    rule: DiscountRule = "active",
) -> Decimal:
    """A metered item's amount on its subscription's latest finalized invoice (the lines of its price),
    less the discounts Stripe took off those lines that the policy's rule counts as of ``as_of``: a
    line's ``discount_amounts`` name each discount by id, judged as the subscription's, its items'
    and the customer's discounts are (``discount_is_active``); one no longer on any of them (a
    ``once`` coupon used up, a repeating one over) takes nothing off."""
    price = item["price"]
    if price is None or price["usage_type"] != "metered" or not price["id"]:
        return _ZERO
    known = {discount["id"]: discount for discount in discounts if discount["id"]}
    total = _ZERO
    for line in lines:
        if line["price"] != price["id"]:
            continue
        taken = sum(
            amount
            for discount_id, amount in line["discount_amounts"].items()
            if discount_id in known and discount_is_active(known[discount_id], as_of, rule)
        )
        total += max(Decimal(line["amount"] - taken), _ZERO)
    return total


def subscription_mrr(
    subscription: SubscriptionSnapshot,
    customer_discounts: Iterable[Discount],
    as_of: int,
    policy: RevenuePolicy = DEFAULT_POLICY,
    past_due_since: int | None = None,
    usage: Sequence[UsageLine] = (),
) -> Decimal:
    """Exact (unrounded) monthly value of one subscription; 0 unless active or past_due, and not
    churned by ``policy`` (``past_due_since``: when its current run of ``past_due`` began). Its metered
    items count 0, or under ``metered: last_invoice`` what ``usage`` (the usage lines of its latest
    finalized invoice in its currency) billed them, per the item's price interval."""
    if subscription["status"] not in REVENUE_STATUSES:
        return _ZERO
    if policy_churned_at(subscription, policy, as_of, past_due_since, as_of) is not None:
        return _ZERO
    customer_discounts = list(customer_discounts)
    currency, rule = subscription["currency"], policy.discounts
    period_amount = sum(
        (
            apply_discounts(item_period_amount(item), item["discounts"], currency, as_of, rule)
            for item in subscription["items"]
        ),
        _ZERO,
    )
    period_amount = apply_discounts(period_amount, subscription["discounts"], currency, as_of, rule)
    period_amount = apply_discounts(period_amount, customer_discounts, currency, as_of, rule)
    interval, count = _interval(subscription)
    monthly = to_monthly(period_amount, interval, count)
    if policy.metered == "last_invoice" and usage:
        discounts = [
            *subscription["discounts"],
            *(d for item in subscription["items"] for d in item["discounts"]),
            *customer_discounts,
        ]
        for item in subscription["items"]:
            price = item["price"]
            amount = metered_period_amount(item, usage, discounts, as_of, rule)
            if price is not None and amount:
                monthly += to_monthly(amount, price["interval"], price["interval_count"])
    return monthly


def exact_sum(amounts: Iterable[Decimal]) -> Decimal:
    total = _ZERO
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total


def round_minor_units(amount: Decimal) -> int:
    # A wide context: quantize raises rather than round when the result has more digits than it allows.
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=EXACT))
