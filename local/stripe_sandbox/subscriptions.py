"""Subscriptions and their items: create (billing the first period unless trialing), update (items,
quantities, cancellation at period end or at a date, pause, discounts, trial end), cancel, resume; and
what time and payments do to them.

Billing periods live on the items (``current_period_start``/``_end``), as since 2025-03-31.basil.
Time (``due``, run by ``clocks``): three days before a trial ends ``trial_will_end`` is sent (at once
for a shorter trial); a trial ends; a period ends and renews (billed), or the subscription ends when
it was to cancel at period end or at ``cancel_at``. Payments (``after_payment``): a failed payment
makes an active subscription past_due; when the last retry fails, the account's
``after_failed_retries`` setting cancels it, marks it unpaid or leaves it past_due; a paid invoice
makes a past_due or unpaid subscription active again.

Fields starting with ``_`` are the sandbox's bookkeeping (never shown: objects keep only their
version's fields).
"""

from __future__ import annotations

import copy

from local.stripe_sandbox import discounts, invoices, payment_methods, schedules
from local.stripe_sandbox.catalog import DAY, period_seconds, plan_of
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int

# Ended subscriptions: a list leaves them out unless asked for ``status=all`` (or the status itself).
ENDED = ("canceled", "incomplete_expired")
TRIAL_WILL_END = 3 * DAY  # Stripe's notice before a trial ends


def matches(subscription: Obj, params: Obj) -> bool:
    """``GET /v1/subscriptions``'s filters: ``status`` (ended ones only when asked), ``customer``,
    ``test_clock`` (a test clock's subscriptions are listed only for it or for their customer)."""
    status = params.get("status")
    if status in (None, ""):
        if subscription["status"] in ENDED:
            return False
    elif status != "all" and subscription["status"] != status:
        return False
    if params.get("customer") and subscription["customer"] != params["customer"]:
        return False
    if params.get("test_clock"):
        return bool(subscription.get("test_clock") == params["test_clock"])
    return not subscription.get("test_clock") or bool(params.get("customer"))


def item(sb: Sandbox, account: Account, sub_id: str, spec: Obj, period: tuple[int, int]) -> Obj:
    price = sb.get(account, "price", str(spec.get("price") or spec.get("plan")))
    return {
        "id": sb.new_id("si"),
        "object": "subscription_item",
        "created": sb.now(),
        "subscription": sub_id,
        "price": copy.deepcopy(price),
        "plan": plan_of(price),
        "quantity": as_int(spec.get("quantity"), 1),
        "current_period_start": period[0],
        "current_period_end": period[1],
        "discounts": [],
        "metadata": spec.get("metadata", {}),
        "tax_rates": [],
        "billing_thresholds": None,
    }


def create(sb: Sandbox, account: Account, params: Obj, *, schedule_id: str | None = None) -> Obj:
    """A subscription (``schedule_id``: one a subscription schedule creates and manages)."""
    customer = sb.get(account, "customer", str(params.get("customer")))
    if customer.get("deleted"):
        raise not_found("customer", customer["id"])
    specs = params.get("items") or []
    if not specs:
        raise StripeError(400, "Missing required param: items.", param="items")
    now = sb.now()
    trial_end = as_int(params.get("trial_end"))
    if params.get("trial_period_days"):
        trial_end = now + DAY * int(params["trial_period_days"])
    sub_id = sb.new_id("sub")
    first_price = sb.get(account, "price", str(specs[0].get("price") or specs[0].get("plan")))
    period = (now, trial_end if trial_end else now + period_seconds(first_price))
    default_payment_method = params.get("default_payment_method")
    if default_payment_method:
        default_payment_method = payment_methods.default_for(
            sb, account, customer, str(default_payment_method), None
        )
    subscription: Obj = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer["id"],
        "created": now,
        "start_date": now,
        "status": "trialing" if trial_end else "active",
        "currency": first_price["currency"],
        "trial_start": now if trial_end else None,
        "trial_end": trial_end,
        "cancel_at_period_end": as_bool(params.get("cancel_at_period_end", False)),
        "cancel_at": as_int(params.get("cancel_at")),
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "ended_at": None,
        "discounts": [],
        "metadata": params.get("metadata", {}),
        "livemode": False,
        "latest_invoice": None,
        "pause_collection": None,
        "billing_cycle_anchor": now,
        "collection_method": invoices.collection_method(params),
        "days_until_due": as_int(params.get("days_until_due")),
        "default_payment_method": default_payment_method or None,
        "schedule": schedule_id,
        "test_clock": customer.get("test_clock"),
        "trial_settings": {
            "end_behavior": {
                "missing_payment_method": (params.get("trial_settings") or {})
                .get("end_behavior", {})
                .get("missing_payment_method", "create_invoice")
            }
        },
        "items": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
    }
    subscription["items"]["data"] = [item(sb, account, sub_id, spec, period) for spec in specs]
    sb.put(account, subscription)
    if customer["currency"] is None:
        customer["currency"] = subscription["currency"]
        emit(sb, account, "customer.updated", customer, {"currency": None})
    for coupon_id in discounts.coupon_ids(params):
        subscription["discounts"].append(
            discounts.create(sb, account, coupon_id, customer["id"], sub_id)["id"]
        )
    emit(sb, account, "customer.subscription.created", subscription)
    if trial_end is not None and trial_end - TRIAL_WILL_END <= now:
        _trial_will_end(sb, account, subscription)
    if subscription["status"] == "active":
        invoices.bill(sb, account, subscription, "subscription_create")
    return subscription


def update(sb: Sandbox, account: Account, params: Obj, sub_id: str) -> Obj:
    subscription = sb.get(account, "subscription", sub_id)
    if subscription["status"] in ENDED:
        raise StripeError(
            400, "A canceled subscription can only update its cancellation_details and metadata."
        )
    before = copy.deepcopy(subscription)
    items = subscription["items"]["data"]
    period = (
        (items[0]["current_period_start"], items[0]["current_period_end"]) if items else (sb.now(), sb.now())
    )
    for spec in params.get("items", []):
        existing = next((i for i in items if i["id"] == spec.get("id")), None)
        if existing is None:
            items.append(item(sb, account, sub_id, spec, period))
        elif as_bool(spec.get("deleted", False)):
            items.remove(existing)
        else:
            if spec.get("price") or spec.get("plan"):
                price = sb.get(account, "price", str(spec.get("price") or spec.get("plan")))
                existing["price"], existing["plan"] = copy.deepcopy(price), plan_of(price)
            if spec.get("quantity") is not None:
                existing["quantity"] = int(spec["quantity"])
    if "cancel_at_period_end" in params:
        subscription["cancel_at_period_end"] = as_bool(params["cancel_at_period_end"])
        subscription["canceled_at"] = sb.now() if subscription["cancel_at_period_end"] else None
    if "cancel_at" in params:
        subscription["cancel_at"] = as_int(params["cancel_at"])
        subscription["canceled_at"] = sb.now() if subscription["cancel_at"] else None
    if "metadata" in params:
        subscription["metadata"] = {**subscription["metadata"], **params["metadata"]}
    if "pause_collection" in params:
        subscription["pause_collection"] = params["pause_collection"] or None
    if "collection_method" in params:
        subscription["collection_method"] = invoices.collection_method(params)
    if "days_until_due" in params:
        subscription["days_until_due"] = as_int(params["days_until_due"])
    if "default_payment_method" in params:
        customer = sb.get(account, "customer", subscription["customer"])
        spec = params["default_payment_method"]
        subscription["default_payment_method"] = (
            payment_methods.default_for(sb, account, customer, str(spec), None) if spec else None
        )
    if params.get("trial_end") == "now" and subscription["status"] == "trialing":
        _trial_will_end(sb, account, subscription)
        end_trial(sb, account, subscription)
        return subscription
    added = [
        discounts.create(sb, account, c, subscription["customer"], sub_id)
        for c in discounts.coupon_ids(params)
    ]
    subscription["discounts"].extend(d["id"] for d in added)
    for discount in added:
        emit(sb, account, "customer.discount.created", discount)
    previous = {
        k: before[k] for k in subscription if subscription[k] != before.get(k) and not k.startswith("_")
    }
    if previous:
        emit(sb, account, "customer.subscription.updated", subscription, previous)
    return subscription


def cancel(sb: Sandbox, account: Account, params: Obj, sub_id: str) -> Obj:
    subscription = sb.get(account, "subscription", sub_id)
    if subscription["status"] in ENDED:
        raise StripeError(400, "This subscription is already canceled.")
    end(sb, account, subscription, sb.now())
    return subscription


def resume(sb: Sandbox, account: Account, params: Obj, sub_id: str) -> Obj:
    subscription = sb.get(account, "subscription", sub_id)
    if subscription["status"] != "paused":
        raise StripeError(400, "Only a paused subscription can be resumed.")
    previous = {"status": "paused"}
    subscription["status"] = "active"
    start_period(subscription, sb.now())
    emit(sb, account, "customer.subscription.resumed", subscription, previous)
    invoices.bill(sb, account, subscription, "subscription_cycle")
    return subscription


def list_items(sb: Sandbox, account: Account, params: Obj) -> list[Obj]:
    """``GET /v1/subscription_items``: the items of one subscription (``subscription`` required)."""
    if not params.get("subscription"):
        raise StripeError(400, "Missing required param: subscription.", param="subscription")
    return list(sb.get(account, "subscription", str(params["subscription"]))["items"]["data"])


# --- what time does to a subscription --------------------------------------------------------------


def end(
    sb: Sandbox, account: Account, subscription: Obj, at: int, reason: str = "cancellation_requested"
) -> None:
    previous = {"status": subscription["status"]}
    subscription.update(status="canceled", ended_at=at, canceled_at=subscription["canceled_at"] or at)
    subscription["cancellation_details"] = {"comment": None, "feedback": None, "reason": reason}
    emit(sb, account, "customer.subscription.deleted", subscription, previous)
    if subscription.get("schedule"):
        schedules.subscription_ended(sb, account, subscription, delinquent=reason == "payment_failed")


def start_period(subscription: Obj, start: int) -> None:
    for entry in subscription["items"]["data"]:
        entry["current_period_start"] = start
        entry["current_period_end"] = start + period_seconds(entry["price"])


def _trial_will_end(sb: Sandbox, account: Account, subscription: Obj) -> None:
    if not subscription.get("_trial_will_end_sent"):
        subscription["_trial_will_end_sent"] = True
        emit(sb, account, "customer.subscription.trial_will_end", subscription)


def end_trial(sb: Sandbox, account: Account, subscription: Obj) -> None:
    """Active from the trial's end and billed, or paused when it has no payment method and its
    ``trial_settings`` say so."""
    previous = {"status": "trialing", "trial_end": subscription["trial_end"]}
    now = sb.now()
    customer = sb.get(account, "customer", subscription["customer"])
    no_payment_method = not (
        customer["invoice_settings"].get("default_payment_method")
        or customer.get("default_source")
        or subscription.get("default_payment_method")
    )
    pause = subscription["trial_settings"]["end_behavior"]["missing_payment_method"] == "pause"
    subscription["trial_end"] = min(subscription["trial_end"] or now, now)
    if pause and no_payment_method:
        subscription["status"] = "paused"
        emit(sb, account, "customer.subscription.paused", subscription, previous)
        return
    subscription["status"] = "active"
    start_period(subscription, subscription["trial_end"])
    emit(sb, account, "customer.subscription.updated", subscription, previous)
    invoices.bill(sb, account, subscription, "subscription_cycle")


def due(sb: Sandbox, account: Account, subscription: Obj) -> tuple[int, str] | None:
    """What time does next to the subscription, and when."""
    status = subscription["status"]
    if status in (*ENDED, "paused", "incomplete"):
        return None
    if status == "trialing" and subscription["trial_end"] is not None:
        if not subscription.get("_trial_will_end_sent"):
            return subscription["trial_end"] - TRIAL_WILL_END, "trial_will_end"
        return int(subscription["trial_end"]), "end_trial"
    if status == "trialing" or not subscription["items"]["data"]:
        return None
    period_end = int(subscription["items"]["data"][0]["current_period_end"])
    cancel_at = subscription.get("cancel_at")
    if cancel_at is not None and cancel_at <= period_end:
        return int(cancel_at), "cancel_at"
    return period_end, "end_at_period_end" if subscription["cancel_at_period_end"] else "renew"


def run_due(sb: Sandbox, account: Account, subscription: Obj, action: str) -> None:
    if action == "trial_will_end":
        _trial_will_end(sb, account, subscription)
    elif action == "end_trial":
        end_trial(sb, account, subscription)
    elif action in ("cancel_at", "end_at_period_end"):
        end(sb, account, subscription, sb.now())
    else:
        before = copy.deepcopy(subscription["items"])
        start_period(subscription, sb.now())
        emit(sb, account, "customer.subscription.updated", subscription, {"items": before})
        invoices.bill(sb, account, subscription, "subscription_cycle")


# --- what payments do to a subscription ------------------------------------------------------------


def after_payment(sb: Sandbox, account: Account, invoice: Obj) -> None:
    """Follow its invoice's payment: paid → active again; failed → past_due; the last retry failed
    → the account's ``after_failed_retries`` (cancel, unpaid or past_due)."""
    subscription = account.table("subscription").get(invoices.subscription_of(invoice) or "")
    if subscription is None or subscription["status"] in ENDED:
        return
    status = subscription["status"]
    if invoice["status"] == "paid":
        if status in ("past_due", "unpaid"):
            subscription["status"] = "active"
            emit(sb, account, "customer.subscription.updated", subscription, {"status": status})
        return
    if status == "active":
        subscription["status"] = "past_due"
        emit(sb, account, "customer.subscription.updated", subscription, {"status": "active"})
    if invoice.get("next_payment_attempt") is not None:
        return
    action = sb.settings["after_failed_retries"]
    if action == "cancel":
        end(sb, account, subscription, sb.now(), reason="payment_failed")
    elif action == "unpaid" and subscription["status"] != "unpaid":
        previous = subscription["status"]
        subscription["status"] = "unpaid"
        emit(sb, account, "customer.subscription.updated", subscription, {"status": previous})
