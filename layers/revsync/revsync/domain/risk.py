"""A customer's risk signals (docs/contracts.md, "Revenue policy and risk signals"): what a customer-success
team acts on before a customer churns, derived from the stored observations and an injected ``now``.

What each signal needs, and what the stored state keeps (revsync.domain.state.CustomerObjects):

* ``in_dunning``: a live subscription ``past_due`` or ``unpaid``, or the customer ``delinquent``
  (kept). ``dunning_since``: when the subscription's current ``past_due`` run began (the history's
  replay dates it, ``revsync.domain.history``; an ``unpaid`` run is not dated).
* ``failed_payment_attempts``, ``last_payment_failed_at``: need failed invoices (``attempt_count``,
  the ``invoice.payment_failed`` event's time); the state keeps paid invoices only. Always 0 / None.
* ``cancel_scheduled_at`` (when the earliest still-pending cancellation was asked for: Stripe's
  ``canceled_at``, else when it was observed) and ``mrr_at_risk`` (the MRR, by the revenue rules
  whatever the policy's ``churn_at``, of the subscriptions scheduled to end): kept.
* ``scheduled_change_at``, ``scheduled_mrr``: need subscription schedules (their next phase's start
  and items); not kept. Always None.
* ``trial_ends_at``: the earliest trial end of a trialing subscription within 7 days of ``now``: kept.
* ``card_expires_at``: needs the customer's default payment method (``exp_month``/``exp_year``);
  not kept. Always None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypedDict

from revsync.domain.mrr import cancel_scheduled, exact_sum, round_minor_units, subscription_mrr
from revsync.domain.policy import DAY, DEFAULT_POLICY, RevenuePolicy
from revsync.domain.snapshots import LIVE_SUBSCRIPTION_STATUSES
from revsync.domain.state import CustomerObjects

TRIAL_ENDING_WITHIN = 7 * DAY
DUNNING_STATUSES = frozenset({"past_due", "unpaid"})


class Risk(TypedDict):
    in_dunning: bool
    dunning_since: int | None
    failed_payment_attempts: int
    last_payment_failed_at: int | None
    cancel_scheduled_at: int | None
    mrr_at_risk: int
    scheduled_change_at: int | None
    scheduled_mrr: int | None
    trial_ends_at: int | None
    card_expires_at: int | None


NO_RISK = Risk(
    in_dunning=False,
    dunning_since=None,
    failed_payment_attempts=0,
    last_payment_failed_at=None,
    cancel_scheduled_at=None,
    mrr_at_risk=0,
    scheduled_change_at=None,
    scheduled_mrr=None,
    trial_ends_at=None,
    card_expires_at=None,
)


def derive_risk(
    objects: CustomerObjects,
    currency: str | None,
    now: int,
    policy: RevenuePolicy = DEFAULT_POLICY,
    past_due_since: Mapping[str, int] | None = None,
) -> Risk:
    """The risk signals of a customer whose record is in ``currency``, at ``now``. A customer deleted
    in Stripe has none."""
    customer = objects.customer["snapshot"] if objects.customer else None
    assert customer is None or customer["object"] == "customer"
    if customer is not None and customer["deleted"]:
        return NO_RISK
    live = [
        (o["snapshot"], o["observed_at"])
        for o in objects.subscriptions.values()
        if o["snapshot"]["object"] == "subscription" and o["snapshot"]["status"] in LIVE_SUBSCRIPTION_STATUSES
    ]
    since = past_due_since or {}
    dunning = [s for s, _ in live if s["status"] in DUNNING_STATUSES]
    dunning_starts = [since[s["id"]] for s in dunning if s["id"] in since]
    ending = [(s, s["canceled_at"] or at) for s, at in live if cancel_scheduled(s)]
    discounts = [customer["discount"]] if customer and customer["discount"] else []
    as_of = max(now, objects.newest_observation)
    # What the scheduled subscriptions bring in until they end, whatever the policy says of them.
    until_they_end = replace(policy, churn_at="ended")
    at_risk = exact_sum(
        subscription_mrr(s, discounts, as_of, until_they_end, since.get(s["id"]))
        for s, _ in ending
        if currency is None or s["currency"] in (None, currency)
    )
    trial_ends = [
        s["trial_end"]
        for s, _ in live
        if s["status"] == "trialing"
        and s["trial_end"] is not None
        and now <= s["trial_end"] <= now + TRIAL_ENDING_WITHIN
    ]
    return {
        **NO_RISK,
        "in_dunning": bool(dunning) or bool(customer and customer["delinquent"]),
        "dunning_since": min(dunning_starts, default=None),
        "cancel_scheduled_at": min((at for _, at in ending), default=None),
        "mrr_at_risk": round_minor_units(at_risk),
        "trial_ends_at": min(trial_ends, default=None),
    }


def risk_traits(risk: Risk) -> dict[str, Any]:
    """The signals as ``stripe.risk.<name>`` traits."""
    return {f"stripe.risk.{name}": value for name, value in risk.items()}
