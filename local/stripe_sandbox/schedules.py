"""Subscription schedules: phases of items a subscription moves through on dates.

A schedule starts at its ``start_date`` (now, or when a clock passes it): it creates its subscription
from the first phase. Each phase lasts until its ``end_date`` or for its ``iterations`` of the first
item's interval (one if neither is given); when a clock passes a phase's end the subscription takes
the next phase's items, before the subscription renews at that moment. Seven days before the last
phase ends ``subscription_schedule.expiring`` is sent; at its end the schedule completes and, by its
``end_behavior``, releases its subscription (it goes on) or cancels it. Cancelling a schedule cancels
its subscription; releasing it leaves the subscription alone. A subscription canceled for failed
payments aborts its schedule (``subscription_schedule.aborted``), one canceled otherwise cancels it.
"""

from __future__ import annotations

import copy

from local.stripe_sandbox import subscriptions
from local.stripe_sandbox.catalog import DAY, period_seconds
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int

EXPIRING = 7 * DAY  # Stripe's notice before a schedule ends
LIVE = ("not_started", "active")


def matches(schedule: Obj, params: Obj) -> bool:
    """``GET /v1/subscription_schedules``'s filter: ``customer``."""
    return not params.get("customer") or schedule["customer"] == params["customer"]


def _phases(sb: Sandbox, account: Account, specs: list[Obj], start: int) -> list[Obj]:
    phases = []
    for index, spec in enumerate(specs):
        items = spec.get("items") or []
        if not items:
            raise StripeError(400, f"Missing required param: phases[{index}][items].", param="phases")
        prices = [sb.get(account, "price", str(i.get("price") or i.get("plan"))) for i in items]
        end = as_int(spec.get("end_date"))
        if end is None:
            end = start + int(spec.get("iterations") or 1) * period_seconds(prices[0])
        if end <= start:
            raise StripeError(
                400, "A phase's end_date must be after its start.", param=f"phases[{index}][end_date]"
            )
        phases.append(
            {
                "start_date": start,
                "end_date": end,
                "items": [
                    {
                        "price": price["id"],
                        "plan": price["id"],
                        "quantity": as_int(i.get("quantity"), 1),
                        "metadata": i.get("metadata") or {},
                        "discounts": [],
                        "tax_rates": [],
                        "billing_thresholds": None,
                    }
                    for price, i in zip(prices, items, strict=True)
                ],
                "metadata": spec.get("metadata") or {},
                "trial_end": as_int(spec.get("trial_end")),
                "collection_method": None,
                "currency": prices[0]["currency"],
                "proration_behavior": "create_prorations",
                "discounts": [],
                "add_invoice_items": [],
                "default_tax_rates": [],
            }
        )
        start = end
    return phases


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    customer = sb.get(account, "customer", str(params.get("customer")))
    if customer.get("deleted"):
        raise not_found("customer", customer["id"])
    specs = params.get("phases") or []
    if not specs:
        raise StripeError(400, "Missing required param: phases.", param="phases")
    now = sb.now()
    start = now if params.get("start_date") in (None, "", "now") else int(params["start_date"])
    end_behavior = params.get("end_behavior") or "release"
    if end_behavior not in ("release", "cancel"):
        raise StripeError(400, f"Invalid end_behavior: {end_behavior}", param="end_behavior")
    schedule = sb.put(
        account,
        {
            "id": sb.new_id("sub_sched"),
            "object": "subscription_schedule",
            "created": now,
            "customer": customer["id"],
            "status": "not_started",
            "current_phase": None,
            "phases": _phases(sb, account, specs, max(start, now)),
            "end_behavior": end_behavior,
            "subscription": None,
            "released_subscription": None,
            "released_at": None,
            "canceled_at": None,
            "completed_at": None,
            "metadata": params.get("metadata") or {},
            "livemode": False,
            "test_clock": customer.get("test_clock"),
            "default_settings": {
                "collection_method": "charge_automatically",
                "billing_cycle_anchor": "automatic",
            },
        },
    )
    if start <= now:
        _start(sb, account, schedule)
        emit(sb, account, "subscription_schedule.created", schedule)
        _subscribe(sb, account, schedule)
    else:
        emit(sb, account, "subscription_schedule.created", schedule)
    return schedule


def _start(sb: Sandbox, account: Account, schedule: Obj) -> None:
    first = schedule["phases"][0]
    schedule.update(
        status="active", current_phase={"start_date": first["start_date"], "end_date": first["end_date"]}
    )


def _subscribe(sb: Sandbox, account: Account, schedule: Obj) -> None:
    """The subscription of the first phase (to end with the schedule when it is to cancel)."""
    first, last = schedule["phases"][0], schedule["phases"][-1]
    params: Obj = {
        "customer": schedule["customer"],
        "items": [
            {"price": i["price"], "quantity": i["quantity"], "metadata": i["metadata"]}
            for i in first["items"]
        ],
        "metadata": dict(first["metadata"]),
    }
    if first["trial_end"]:
        params["trial_end"] = first["trial_end"]
    if schedule["end_behavior"] == "cancel":
        params["cancel_at"] = last["end_date"]
    subscription = subscriptions.create(sb, account, params, schedule_id=schedule["id"])
    schedule["subscription"] = subscription["id"]


def update(sb: Sandbox, account: Account, params: Obj, schedule_id: str) -> Obj:
    """``POST /v1/subscription_schedules/{id}``: its metadata and end behavior."""
    schedule = _live(sb, account, schedule_id, "update")
    before = copy.deepcopy(schedule)
    if "metadata" in params:
        merged = {**schedule["metadata"], **(params["metadata"] or {})}
        schedule["metadata"] = {k: v for k, v in merged.items() if v not in ("", None)}
    if params.get("end_behavior"):
        if params["end_behavior"] not in ("release", "cancel"):
            raise StripeError(400, f"Invalid end_behavior: {params['end_behavior']}", param="end_behavior")
        schedule["end_behavior"] = params["end_behavior"]
        subscription = account.table("subscription").get(schedule["subscription"] or "")
        if subscription is not None:
            subscription["cancel_at"] = (
                schedule["phases"][-1]["end_date"] if schedule["end_behavior"] == "cancel" else None
            )
    previous = {k: before[k] for k in schedule if schedule[k] != before[k]}
    if previous:
        emit(sb, account, "subscription_schedule.updated", schedule, previous)
    return schedule


def _live(sb: Sandbox, account: Account, schedule_id: str, action: str) -> Obj:
    schedule = sb.get(account, "subscription_schedule", schedule_id)
    if schedule["status"] not in LIVE:
        raise StripeError(400, f"You cannot {action} a subscription schedule that is {schedule['status']}.")
    return schedule


def cancel(sb: Sandbox, account: Account, params: Obj, schedule_id: str) -> Obj:
    """Cancel it and its subscription now. Proration is not modelled: ``prorate`` and ``invoice_now``
    are accepted when false only."""
    for name in ("prorate", "invoice_now"):
        if as_bool(params.get(name, False)):
            raise StripeError(
                400, f"The sandbox does not model prorations: {name}=true is not supported.", param=name
            )
    schedule = _live(sb, account, schedule_id, "cancel")
    previous = {"status": schedule["status"]}
    schedule.update(status="canceled", canceled_at=sb.now(), current_phase=None)
    subscription = account.table("subscription").get(schedule["subscription"] or "")
    if subscription is not None and subscription["status"] not in subscriptions.ENDED:
        subscription["schedule"] = None
        subscriptions.end(sb, account, subscription, sb.now())
    emit(sb, account, "subscription_schedule.canceled", schedule, previous)
    return schedule


def release(sb: Sandbox, account: Account, params: Obj, schedule_id: str) -> Obj:
    """Stop managing the subscription, which goes on as it is."""
    schedule = _live(sb, account, schedule_id, "release")
    previous = {"status": schedule["status"]}
    subscription = account.table("subscription").get(schedule["subscription"] or "")
    schedule.update(
        status="released",
        released_at=sb.now(),
        released_subscription=schedule["subscription"],
        current_phase=None,
    )
    if subscription is not None and subscription["status"] not in subscriptions.ENDED:
        subscription["schedule"] = None
        if subscription.get("cancel_at") == schedule["phases"][-1]["end_date"] and not as_bool(
            params.get("preserve_cancel_date", False)
        ):
            subscription["cancel_at"] = None
        emit(sb, account, "customer.subscription.updated", subscription, {"schedule": schedule["id"]})
    emit(sb, account, "subscription_schedule.released", schedule, previous)
    return schedule


def subscription_ended(sb: Sandbox, account: Account, subscription: Obj, *, delinquent: bool) -> None:
    """Its subscription was canceled: aborted (failed payments) or canceled."""
    schedule = account.table("subscription_schedule").get(subscription["schedule"] or "")
    if schedule is None or schedule["status"] not in LIVE:
        return
    previous = {"status": schedule["status"]}
    schedule.update(status="canceled", canceled_at=sb.now(), current_phase=None)
    emit(
        sb,
        account,
        "subscription_schedule.aborted" if delinquent else "subscription_schedule.canceled",
        schedule,
        previous,
    )


# --- what time does to a schedule ------------------------------------------------------------------


def due(sb: Sandbox, account: Account, schedule: Obj) -> tuple[int, str] | None:
    if schedule["status"] == "not_started":
        return int(schedule["phases"][0]["start_date"]), "start"
    if schedule["status"] != "active":
        return None
    phase_end = int(schedule["current_phase"]["end_date"])
    expiring = int(schedule["phases"][-1]["end_date"]) - EXPIRING
    if not schedule.get("_expiring_sent") and expiring < phase_end:
        return expiring, "expiring"
    return phase_end, "next_phase"


def run_due(sb: Sandbox, account: Account, schedule: Obj, action: str) -> None:
    if action == "start":
        _start(sb, account, schedule)
        _subscribe(sb, account, schedule)
        emit(sb, account, "subscription_schedule.updated", schedule, {"status": "not_started"})
    elif action == "expiring":
        schedule["_expiring_sent"] = True
        emit(sb, account, "subscription_schedule.expiring", schedule)
    else:
        _next_phase(sb, account, schedule)


def _next_phase(sb: Sandbox, account: Account, schedule: Obj) -> None:
    phases = schedule["phases"]
    index = next(
        i for i, p in enumerate(phases) if p["start_date"] == schedule["current_phase"]["start_date"]
    )
    subscription = account.table("subscription").get(schedule["subscription"] or "")
    if index + 1 == len(phases):
        _complete(sb, account, schedule, subscription)
        return
    following = phases[index + 1]
    previous = {"current_phase": dict(schedule["current_phase"])}
    schedule["current_phase"] = {"start_date": following["start_date"], "end_date": following["end_date"]}
    if subscription is not None and subscription["status"] not in subscriptions.ENDED:
        kept = {i["id"] for i in subscription["items"]["data"]}
        subscriptions.update(
            sb,
            account,
            {
                "items": [{"id": item_id, "deleted": "true"} for item_id in kept]
                + [
                    {"price": i["price"], "quantity": i["quantity"], "metadata": i["metadata"]}
                    for i in following["items"]
                ],
            },
            subscription["id"],
        )
    emit(sb, account, "subscription_schedule.updated", schedule, previous)


def _complete(sb: Sandbox, account: Account, schedule: Obj, subscription: Obj | None) -> None:
    previous = {"status": "active"}
    schedule.update(status="completed", completed_at=sb.now(), current_phase=None)
    if subscription is not None and subscription["status"] not in subscriptions.ENDED:
        subscription["schedule"] = None
        if schedule["end_behavior"] == "cancel":
            subscriptions.end(sb, account, subscription, sb.now())
        else:
            emit(sb, account, "customer.subscription.updated", subscription, {"schedule": schedule["id"]})
    emit(sb, account, "subscription_schedule.completed", schedule, previous)
