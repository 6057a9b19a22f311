"""A customer's risk signals (docs/contracts.md, "Revenue policy and risk signals"): what a customer-success
team acts on before a customer churns, derived from the stored observations and an injected ``now``.

What each signal reads of the stored state (revsync.domain.state.CustomerObjects):

* ``in_dunning``: a live subscription ``past_due`` or ``unpaid``, the customer ``delinquent``, or an
  open invoice a payment failed on. ``dunning_since``: the earliest of when a subscription's current
  ``past_due`` run began (the history's replay dates it, ``revsync.domain.history``; an ``unpaid``
  run is not dated) and when a failed payment of an open invoice was first observed.
* ``failed_payment_attempts``, ``last_payment_failed_at``, ``amount_due``: the open failed invoices'
  attempts, when the latest attempt's failure was observed, and what they still ask for (in the
  record's currency).
* ``cancel_scheduled_at`` (when the earliest still-pending cancellation was asked for: Stripe's
  ``canceled_at``, else when it was observed) and ``mrr_at_risk`` (the MRR, by the revenue rules
  whatever the policy's ``churn_at``, of the subscriptions scheduled to end).
* ``scheduled_change_at``, ``scheduled_mrr``: the next phase of a live subscription schedule that
  starts after ``now`` (the earliest, if several): its start, and the MRR of its items by the revenue
  rules (the customer's discounts as of that start; the phase's own discounts are not read).
* ``trial_ends_at``: the earliest trial end of a trialing subscription within 7 days of ``now``.
* ``card_expires_at``: the end of the expiry month of the card of the customer's default payment
  method, when it comes at or before the next renewal (``revsync.domain.renewal``).

``next_risk_change`` says when the signals next change with time alone (no new observation): the
review of time-based signals (revsync.domain.review) asks it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any, TypedDict

from revsync.domain.mrr import cancel_scheduled, exact_sum, round_minor_units, subscription_mrr
from revsync.domain.policy import DAY, DEFAULT_POLICY, RevenuePolicy
from revsync.domain.renewal import renews_at
from revsync.domain.snapshots import (
    LIVE_SCHEDULE_STATUSES,
    LIVE_SUBSCRIPTION_STATUSES,
    CustomerSnapshot,
    Discount,
    InvoiceSnapshot,
    SchedulePhase,
    SubscriptionItem,
    SubscriptionSnapshot,
)
from revsync.domain.state import CustomerObjects

TRIAL_ENDING_WITHIN = 7 * DAY
DUNNING_STATUSES = frozenset({"past_due", "unpaid"})


class Risk(TypedDict):
    in_dunning: bool
    dunning_since: int | None
    failed_payment_attempts: int
    last_payment_failed_at: int | None
    amount_due: int
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
    amount_due=0,
    cancel_scheduled_at=None,
    mrr_at_risk=0,
    scheduled_change_at=None,
    scheduled_mrr=None,
    trial_ends_at=None,
    card_expires_at=None,
)


def _customer(objects: CustomerObjects) -> CustomerSnapshot | None:
    customer = objects.customer["snapshot"] if objects.customer else None
    assert customer is None or customer["object"] == "customer"
    return customer


def _live(objects: CustomerObjects) -> list[tuple[SubscriptionSnapshot, int]]:
    return [
        (o["snapshot"], o["observed_at"])
        for o in objects.subscriptions.values()
        if o["snapshot"]["object"] == "subscription" and o["snapshot"]["status"] in LIVE_SUBSCRIPTION_STATUSES
    ]


def _scheduled_phases(objects: CustomerObjects) -> list[SchedulePhase]:
    """The next phases of the live schedules. A schedule of a subscription counts while that
    subscription, as last observed, is live and names it (released, it names none; ended, it is not
    live): a schedule's own end may be missed by a catch-up (revsync.services.reconcile), its
    subscription's is not."""
    phases = []
    for _, observation in sorted(objects.schedules.items()):
        schedule = observation["snapshot"]
        assert schedule["object"] == "subscription_schedule"
        phase = schedule["next_phase"]
        if schedule["status"] not in LIVE_SCHEDULE_STATUSES or phase is None:
            continue
        managed = objects.subscriptions.get(schedule["subscription"] or "")
        if managed is not None:
            subscription = managed["snapshot"]
            assert subscription["object"] == "subscription"
            if subscription["status"] not in LIVE_SUBSCRIPTION_STATUSES:
                continue
            if (
                subscription.get("schedule") != schedule["id"]
                and managed["observed_at"] > observation["observed_at"]
            ):
                continue  # released after the schedule was observed
        phases.append(phase)
    return phases


def _phase_mrr(
    phase: SchedulePhase, customer: CustomerSnapshot | None, currency: str | None, policy: RevenuePolicy
) -> int | None:
    """The MRR of a phase's items by the revenue rules, with the customer's discounts as of its start
    (None: a price not known, or another currency than the record's)."""
    if any(item["price"] is None for item in phase["items"]):
        return None
    if currency is not None and phase["currency"] not in (None, currency):
        return None
    items = [
        SubscriptionItem(
            id=None, quantity=i["quantity"], price=i["price"], current_period_end=None, discounts=[]
        )
        for i in phase["items"]
    ]
    as_subscribed = SubscriptionSnapshot(
        object="subscription",
        id="",
        customer="",
        status="active",
        currency=phase["currency"],
        created=None,
        current_period_end=None,
        trial_end=None,
        cancel_at_period_end=False,
        cancel_at=None,
        canceled_at=None,
        ended_at=None,
        items=items,
        discounts=[],
    )
    discounts = [customer["discount"]] if customer and customer["discount"] else []
    return round_minor_units(subscription_mrr(as_subscribed, discounts, phase["start_date"], policy))


def card_expiry(exp_year: int, exp_month: int) -> int:
    """When a card stops working: the first second after its expiry month (UTC)."""
    year, month = (exp_year + 1, 1) if exp_month == 12 else (exp_year, exp_month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def _card_expires_at(objects: CustomerObjects) -> int | None:
    default = objects.default_payment_method
    observation = objects.payment_methods.get(default) if default else None
    method = observation["snapshot"] if observation else None
    if method is None or method["object"] != "payment_method" or method["detached"]:
        return None
    if method["exp_year"] is None or method["exp_month"] is None:
        return None  # not a card
    invoices: list[InvoiceSnapshot] = [
        o["snapshot"] for o in objects.invoices.values() if o["snapshot"]["object"] == "invoice"
    ]
    renewals = [
        r
        for o in objects.subscriptions.values()
        if o["snapshot"]["object"] == "subscription" and (r := renews_at(o["snapshot"], invoices)) is not None
    ]
    expires = card_expiry(method["exp_year"], method["exp_month"])
    return expires if renewals and expires <= min(renewals) else None


def derive_risk(
    objects: CustomerObjects,
    currency: str | None,
    now: int,
    policy: RevenuePolicy = DEFAULT_POLICY,
    past_due_since: Mapping[str, int] | None = None,
) -> Risk:
    """The risk signals of a customer whose record is in ``currency``, at ``now``. A customer deleted
    in Stripe has none."""
    customer = _customer(objects)
    if customer is not None and customer["deleted"]:
        return NO_RISK
    live = _live(objects)
    since = past_due_since or {}
    dunning = [s for s, _ in live if s["status"] in DUNNING_STATUSES]
    failed = [f for f in objects.failed_invoices.values() if f["status"] == "open"]
    dunning_starts = [since[s["id"]] for s in dunning if s["id"] in since]
    dunning_starts += [f["first_failed_at"] for f in failed]
    ending = [(s, s["canceled_at"] or at) for s, at in live if cancel_scheduled(s)]
    discounts = [customer["discount"]] if customer and customer["discount"] else []
    as_of = max(now, objects.newest_observation)
    # What the scheduled subscriptions bring in until they end, whatever the policy says of them.
    until_they_end = replace(policy, churn_at="ended")
    at_risk = exact_sum(
        subscription_mrr(s, discounts, as_of, until_they_end, since.get(s["id"]))
        for s, _ in ending
        if _same_currency(s["currency"], currency)
    )
    trial_ends = [
        s["trial_end"]
        for s, _ in live
        if s["status"] == "trialing"
        and s["trial_end"] is not None
        and now <= s["trial_end"] <= now + TRIAL_ENDING_WITHIN
    ]
    coming = [p for p in _scheduled_phases(objects) if p["start_date"] > now]
    change = min(coming, key=lambda p: p["start_date"], default=None)
    return Risk(
        in_dunning=bool(dunning) or bool(customer and customer["delinquent"]) or bool(failed),
        dunning_since=min(dunning_starts, default=None),
        failed_payment_attempts=sum(f["attempt_count"] for f in failed),
        last_payment_failed_at=max((f["failed_at"] for f in failed), default=None),
        amount_due=sum(f["amount_remaining"] for f in failed if _same_currency(f["currency"], currency)),
        cancel_scheduled_at=min((at for _, at in ending), default=None),
        mrr_at_risk=round_minor_units(at_risk),
        scheduled_change_at=None if change is None else change["start_date"],
        scheduled_mrr=None if change is None else _phase_mrr(change, customer, currency, policy),
        trial_ends_at=min(trial_ends, default=None),
        card_expires_at=_card_expires_at(objects),
    )


def _same_currency(currency: str | None, record_currency: str | None) -> bool:
    return record_currency is None or currency in (None, record_currency)


def next_risk_change(
    objects: CustomerObjects,
    now: int,
    policy: RevenuePolicy = DEFAULT_POLICY,
    past_due_since: Mapping[str, int] | None = None,
) -> int | None:
    """The first time after ``now`` at which ``derive_risk`` may answer differently with no new
    observation (None: never): a trial's last 7 days begin or its end passes, a scheduled phase
    starts, a repeating discount of what ``mrr_at_risk`` counts ends, or a subscription scheduled to
    end reaches the policy's past-due limit. (The card expiry is not one: it is compared with the
    renewal the stored objects give, not with ``now``.)"""
    customer = _customer(objects)
    if customer is not None and customer["deleted"]:
        return None
    live = _live(objects)
    after = max(now, objects.newest_observation)  # ``derive_risk`` reads discounts as of this
    times: list[int] = []
    for subscription, _ in live:
        trial_end = subscription["trial_end"]
        if subscription["status"] == "trialing" and trial_end is not None:
            times += [trial_end - TRIAL_ENDING_WITHIN, trial_end + 1]
    times += [phase["start_date"] for phase in _scheduled_phases(objects)]
    ending = [s for s, _ in live if cancel_scheduled(s)]
    if ending and policy.discounts == "active":
        times += [d["end"] for d in _discounts(customer, ending) if d["end"] is not None and d["end"] > after]
    grace, since = policy.past_due_grace, past_due_since or {}
    if grace is not None:
        times += [
            since[s["id"]] + grace
            for s in ending
            if s["status"] == "past_due" and s["id"] in since and since[s["id"]] + grace > after
        ]
    return min((t for t in times if t > now), default=None)


def _discounts(
    customer: CustomerSnapshot | None, subscriptions: list[SubscriptionSnapshot]
) -> Iterator[Discount]:
    """The repeating discounts that may end under what ``mrr_at_risk`` counts."""
    if customer is not None and customer["discount"] is not None:
        yield customer["discount"]
    for subscription in subscriptions:
        yield from subscription["discounts"]
        for item in subscription["items"]:
            yield from item["discounts"]


def risk_traits(risk: Risk) -> dict[str, Any]:
    """The signals as ``stripe.risk.<name>`` traits."""
    return {f"stripe.risk.{name}": value for name, value in risk.items()}
