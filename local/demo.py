"""`make demo`: revsync's main job on the embedded local stack, end to end, offline.

The tenant's Stripe account already has customers. The tenant connects it and picks its customer-ID
trait, which starts a backfill through the real state machine (moto's interpreter). Then things
happen in Stripe (the sandbox): customers sign up, a trial starts, a plan is upgraded, one customer
cancels, one schedules a cancellation at period end (its MRR at risk; the tenant's revenue policy
changed to count it as churn and back), one is deleted, one gets a discount, one gets its app id
late, one's card starts declining, and a month passes (renewals paid, trials converted, a renewal
declined: dunning). Stripe delivers the webhooks delayed,
duplicated and reordered. The demo waits for the pipeline to settle, prints every customer record,
and checks each against the sandbox's own objects. It exits non-zero on any mismatch.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from typing import Any

import boto3
import stripe

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the handlers' JSON logs would drown the story
warnings.filterwarnings("ignore", message="No application metrics to publish")

from local.aws import read_change_feed  # noqa: E402
from local.environment import REGION  # noqa: E402
from local.http import http  # noqa: E402
from local.stack import LocalStack  # noqa: E402
from local.truth import expected_record  # noqa: E402

TENANT = "acme"
DAY = 86_400
CHECKED = ("mrr", "trialing", "churned", "deleted_in_stripe", "total_paid", "last_payment_at")


def step(text: str) -> None:
    print(f"- {text}", flush=True)


def history(client: stripe.StripeClient) -> dict[str, str]:
    """Customers the account had before revsync: only the backfill can know them."""
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 9900,
            "nickname": "Legacy",
            "recurring": {"interval": "month"},
            "product_data": {"name": "Legacy"},
        }
    )
    existing: dict[str, str] = {}
    for app_id, name in (("u-alan", "Alan"), ("u-frances", "Frances"), ("u-john", "John")):
        existing[app_id] = client.v1.customers.create(
            params={"name": name, "email": f"{name.lower()}@example.com", "metadata": {"app_id": app_id}}
        ).id
    client.v1.subscriptions.create(params={"customer": existing["u-alan"], "items": [{"price": price.id}]})
    client.v1.subscriptions.create(
        params={"customer": existing["u-frances"], "items": [{"price": price.id, "quantity": 2}]}
    )
    gone = client.v1.subscriptions.create(
        params={"customer": existing["u-john"], "items": [{"price": price.id}]}
    )
    client.v1.subscriptions.cancel(gone.id)
    step(
        "the account already has 3 customers (Alan and Frances subscribed, John canceled) from before revsync"
    )
    return existing


def connect(stack: LocalStack, account_id: str) -> None:
    """ "Connect with Stripe" (OAuth): revsync's authorize URL, the sandbox's authorize step for the
    tenant's account, the callback back to revsync, then the customer-ID trait."""
    status, body = stack.admin("POST", f"/tenants/{TENANT}/stripe/connect")
    assert status == 200, body
    # The person approves in Stripe, logged in to their account (the sandbox takes it as a parameter).
    step_one = _no_redirect(f"{body['authorize_url']}&stripe_account={account_id}")
    landed = _no_redirect(step_one)
    assert landed.endswith(f"/settings?tenant={TENANT}&connected=1"), landed
    connection = stack.admin("GET", f"/tenants/{TENANT}/stripe")[1]["connection"]
    step(f"tenant {TENANT!r} connected Stripe account {connection['account_id']} with OAuth")
    status, body = stack.admin(
        "PUT", f"/tenants/{TENANT}/stripe/config", {"customer_id_trait": "metadata.app_id"}
    )
    assert status == 200, body
    step(f"customer-ID trait set to metadata.app_id; tracking is now {body['tracking']}; a backfill started")


def _no_redirect(url: str) -> str:
    """Follow one hop of a browser redirect: returns the Location."""

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        urllib.request.build_opener(Stop).open(url, timeout=30)
    except urllib.error.HTTPError as redirect:
        if redirect.code == 302:
            return str(redirect.headers["Location"])
        raise
    raise AssertionError(f"{url} did not redirect")


def import_existing(stack: LocalStack) -> dict[str, Any]:
    """Wait for the backfill (the real state machine on moto), showing its progress."""
    started = time.monotonic()
    while True:
        backfill: dict[str, Any] = stack.admin("GET", f"/tenants/{TENANT}/stripe")[1]["backfill"]
        if backfill["state"] in ("succeeded", "failed"):
            break
        print(f"  ... importing: {backfill['stage']}, {backfill['counts']}", flush=True)
        time.sleep(0.5)
    step(
        f"backfill {backfill['state']} in {time.monotonic() - started:.1f}s: imported {backfill['counts']} "
        f"with {backfill['requests']} list requests"
    )
    return backfill


def story(client: stripe.StripeClient) -> dict[str, str]:
    """Live changes in Stripe; returns external id -> Stripe customer id."""

    def price(amount: int, nickname: str, interval: str = "month") -> Any:
        return client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": amount,
                "nickname": nickname,
                "recurring": {"interval": interval},
                "product_data": {"name": nickname},
            }
        )

    basic, pro, yearly = price(2000, "Basic"), price(5000, "Pro"), price(48000, "Pro yearly", "year")
    half = client.v1.coupons.create(params={"percent_off": 50, "duration": "forever", "name": "Half off"})
    customers: dict[str, str] = {}

    def customer(app_id: str | None, name: str) -> str:
        metadata = {"app_id": app_id} if app_id else {}
        created = client.v1.customers.create(
            params={"name": name, "email": f"{name.lower()}@example.com", "metadata": metadata}
        )
        customers[app_id or f"stripe:{created.id}"] = created.id
        return created.id

    def subscribe(customer_id: str, price_id: str, **extra: Any) -> Any:
        params: Any = {"customer": customer_id, "items": [{"price": price_id}], **extra}
        return client.v1.subscriptions.create(params=params)

    subscribe(customer("u-ada", "Ada"), basic.id, trial_period_days=14)
    step("Ada starts a 14-day trial of Basic")
    grace_sub = subscribe(customer("u-grace", "Grace"), basic.id)
    client.v1.subscriptions.update(
        grace_sub.id,
        params={"items": [{"id": grace_sub["items"].data[0].id, "price": pro.id, "quantity": 3}]},
    )
    step("Grace subscribes to Basic, then upgrades to Pro with 3 seats")
    ken_sub = subscribe(customer("u-ken", "Ken"), pro.id)
    client.v1.subscriptions.cancel(ken_sub.id)
    step("Ken subscribes to Pro and cancels at once")
    leaving = subscribe(customer("u-linus", "Linus"), pro.id)
    client.v1.subscriptions.update(leaving.id, params={"cancel_at_period_end": True})
    step("Linus subscribes to Pro and sets it to cancel at period end")
    barbara = customer("u-barbara", "Barbara")
    subscribe(barbara, pro.id)
    client.v1.customers.delete(barbara)
    step("Barbara subscribes, then is deleted in Stripe")
    subscribe(customer("u-margaret", "Margaret"), yearly.id, discounts=[{"coupon": half.id}])
    step("Margaret takes the yearly plan with a 50% forever coupon")
    hopper = customer("u-hopper", "Hopper")
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": hopper})
    client.v1.customers.update(hopper, params={"invoice_settings": {"default_payment_method": card.id}})
    subscribe(hopper, pro.id)
    # A card that attaches but declines every charge (Stripe's test card chargeCustomerFail) becomes
    # the default: the next renewal fails and the subscription goes past due.
    declining = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": hopper})
    client.v1.customers.update(hopper, params={"invoice_settings": {"default_payment_method": declining.id}})
    step("Hopper subscribes to Pro, then replaces her card with one that will be declined")
    late = customer(None, "Edsger")
    subscribe(late, basic.id)
    customers.pop(f"stripe:{late}")
    customers["u-edsger"] = late
    client.v1.customers.update(late, params={"metadata": {"app_id": "u-edsger"}})
    step("Edsger subscribes before the app id is on his Stripe customer; it is added afterwards")
    return customers


def lost_webhook(stack: LocalStack, client: stripe.StripeClient, grace: str) -> int:
    """Stripe loses a delivery; the catch-up from its Events API recovers it. Returns how many."""
    http("POST", f"{stack.stripe_url}/_sandbox/config", {"delivery_drop_ratio": 1.0})
    [subscription] = client.v1.subscriptions.list(params={"customer": grace}).data
    client.v1.subscriptions.update(
        subscription.id, params={"items": [{"id": subscription["items"].data[0].id, "quantity": 1}]}
    )
    wait(stack, "delivering (nothing: the webhook is lost)")
    http("POST", f"{stack.stripe_url}/_sandbox/config", {"delivery_drop_ratio": 0.0})
    before = stack.admin("GET", f"/tenants/{TENANT}/customers/u-grace")[1]["mrr"]
    step(f"Grace drops to 1 seat, and Stripe's webhook is lost: her record still says MRR {before / 100:.2f}")
    recovered_before = stack.admin("GET", f"/tenants/{TENANT}/stripe")[1]["events"]["recovered"]
    stack.admin("POST", f"/tenants/{TENANT}/stripe/reconcile")  # queues the tenant's catch-up job
    wait(stack, "running the catch-up job and applying what it recovers")
    recovered = stack.admin("GET", f"/tenants/{TENANT}/stripe")[1]["events"]["recovered"] - recovered_before
    after = stack.admin("GET", f"/tenants/{TENANT}/customers/u-grace")[1]["mrr"]
    step(
        f"catch-up from Stripe's Events API: {recovered} events recovered; Grace's MRR is now "
        f"{after / 100:.2f}"
    )
    return int(recovered)


def _risks(stack: LocalStack, kind: str) -> list[dict[str, Any]]:
    status, body = stack.admin("GET", f"/tenants/{TENANT}/risks?kind={kind}")
    assert status == 200, body
    return list(body["customers"])


def _day(at: int | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at)) if at else "-"


def scheduled_cancellation(stack: LocalStack) -> list[str]:
    """Linus's cancellation at period end, while it is only scheduled: his MRR still counts, and is
    at risk; a tenant whose policy counts a scheduled cancellation as churn sees him churned (the
    policy recomputes every record from what is stored), and sees him back when it changes back."""
    problems: list[str] = []
    record = stack.admin("GET", f"/tenants/{TENANT}/customers/u-linus")[1]
    risk = record["risk"]
    listed = {c["external_id"]: c for c in _risks(stack, "cancel_scheduled")}
    step(
        f"Linus's cancellation is scheduled ({_day(risk['cancel_scheduled_at'])}): MRR "
        f"{record['mrr'] / 100:.2f}, at risk {risk['mrr_at_risk'] / 100:.2f}; "
        f"GET /risks?kind=cancel_scheduled lists {sorted(listed)}"
    )
    if not risk["cancel_scheduled_at"] or risk["mrr_at_risk"] != record["mrr"] or record["mrr"] <= 0:
        problems.append(f"u-linus: a scheduled cancellation with its MRR at risk, got {risk}")
    if "u-linus" not in listed or listed["u-linus"]["mrr"] != risk["mrr_at_risk"]:
        problems.append(f"GET /risks?kind=cancel_scheduled: u-linus with its MRR at risk, got {listed}")
    status, body = stack.admin("PUT", f"/tenants/{TENANT}/stripe/policy", {"churn_at": "scheduled"})
    assert status == 200, body
    wait(stack, "recomputing every record by the new policy")
    churned = stack.admin("GET", f"/tenants/{TENANT}/customers/u-linus")[1]
    policy = stack.admin("GET", f"/tenants/{TENANT}/stripe/policy")[1]
    step(
        f"the tenant counts scheduled cancellations as churn (PUT /stripe/policy): recomputed "
        f"{policy['recompute']['customers_done']} customers from stored observations; Linus: MRR "
        f"{churned['mrr'] / 100:.2f}, churned {churned['churned']}"
    )
    if churned["mrr"] != 0 or not churned["churned"]:
        problems.append(f"u-linus under churn_at=scheduled: MRR 0 and churned, got {churned['mrr']}")
    stack.admin("PUT", f"/tenants/{TENANT}/stripe/policy", {"churn_at": "ended"})
    wait(stack, "recomputing by the default policy")
    back = stack.admin("GET", f"/tenants/{TENANT}/customers/u-linus")[1]
    step(f"back to the default policy: Linus's MRR is {back['mrr'] / 100:.2f} again")
    if back != record:
        problems.append("u-linus: the record changed after the policy was changed and changed back")
    return problems


def dunning(stack: LocalStack) -> list[str]:
    """Hopper's renewal was declined: she is in dunning, her MRR still counts (Stripe's own rule)."""
    record = stack.admin("GET", f"/tenants/{TENANT}/customers/u-hopper")[1]
    risk = record["risk"]
    listed = {c["external_id"]: c for c in _risks(stack, "dunning")}
    step(
        f"Hopper's renewal is declined: in dunning since {_day(risk['dunning_since'])}, "
        f"{risk['failed_payment_attempts']} failed attempt(s), the last "
        f"{_day(risk['last_payment_failed_at'])}; "
        f"MRR {record['mrr'] / 100:.2f}; GET /risks?kind=dunning lists {sorted(listed)}"
    )
    problems = []
    if not risk["in_dunning"] or risk["failed_payment_attempts"] < 1:
        problems.append(f"u-hopper: in dunning after a declined renewal, got {risk}")
    if "u-hopper" not in listed:
        problems.append(f"GET /risks?kind=dunning: u-hopper missing, got {sorted(listed)}")
    return problems


def wait(stack: LocalStack, what: str) -> dict[str, Any]:
    """Flush the pipeline, printing progress while it runs."""
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(stack.flush()))
    worker.start()
    started = time.monotonic()
    while worker.is_alive():
        worker.join(timeout=1)
        if worker.is_alive():
            print(
                f"  ... {what}: {time.monotonic() - started:.0f}s, {stack.poll_stats.received} messages",
                flush=True,
            )
    return result


def _row(external_id: str, record: dict[str, Any] | None) -> str:
    if record is None:
        return f"{external_id:<12} (missing)"
    renewal = (
        time.strftime("%Y-%m-%d", time.gmtime(record["next_renewal_at"]))
        if record["next_renewal_at"]
        else "-"
    )
    return (
        f"{external_id:<12} {record['matched']!s:<7} {record['mrr'] / 100:>8.2f} {record['trialing']!s:<8} "
        f"{renewal:<10} {record['churned']!s:<7} {record['deleted_in_stripe']!s:<7} "
        f"{record['total_paid'] / 100:>10.2f}  {', '.join(record['traits'].get('stripe.plan_names', []))}"
    )


def revenue(stack: LocalStack, records_mrr: int) -> list[str]:
    """The month-by-month table from ``GET /revenue``; returns what does not add up."""
    now = time.time()
    first, last = (time.strftime("%Y-%m", time.gmtime(t)) for t in (now - 31 * DAY, now + 31 * DAY))
    status, report = stack.admin("GET", f"/tenants/{TENANT}/revenue?from={first}&to={last}")
    if status != 200:
        return [f"GET /revenue answered {status}: {report}"]
    print()
    columns = ("mrr_start", "new", "expansion", "reactivation", "contraction", "churn", "mrr_end")
    print(f"MRR movements ({report['currency']}), month by month:")
    print(f"{'month':<8} " + " ".join(f"{c:>12}" for c in columns) + f" {'customers':>9}")
    problems = []
    for month in report["months"]:
        print(
            f"{month['month']:<8} "
            + " ".join(f"{month[c] / 100:>12.2f}" for c in columns)
            + f" {month['customers_end']:>9}"
        )
        moved = month["new"] + month["expansion"] + month["reactivation"]
        moved -= month["contraction"] + month["churn"]
        if month["mrr_start"] + moved != month["mrr_end"]:
            problems.append(f"{month['month']}: start + movements != end")
    if report["months"] and report["months"][-1]["mrr_end"] != records_mrr:
        problems.append(
            f"MRR at the end of {last} is {report['months'][-1]['mrr_end']}, records add up to {records_mrr}"
        )
    assert stack.names is not None
    feed = read_change_feed(boto3.session.Session(region_name=REGION), stack.aws_url, stack.names)
    changes = [event for event in feed if event["detail-type"] == "Customer Record Changed"]
    risks = [event for event in feed if event["detail-type"] == "Customer Risk Changed"]
    churns = sum(1 for event in changes if event["detail"]["movement"] == "churn")
    bus = stack.names.physical_name("ChangesBus")
    step(
        f"change feed on {bus}: {len(changes)} Customer Record Changed events ({churns} of them churns), "
        f"{len(risks)} Customer Risk Changed"
    )
    if not any("in_dunning" in event["detail"]["changed"] for event in risks):
        problems.append("no Customer Risk Changed event for Hopper entering dunning")
    return problems


def main() -> int:
    started = time.monotonic()
    print("revsync demo on the embedded local stack (moto, Stripe sandbox, no network)")
    with LocalStack() as stack:
        step(f"stack up: API {stack.api_url}, AWS {stack.aws_url}, Stripe {stack.stripe_url}")
        # The tenant's own Stripe account, with history from before revsync.
        key = f"sk_test_{secrets.token_hex(12)}"
        client = stripe.StripeClient(key, base_addresses={"api": stack.stripe_url})
        existing = history(client)
        connect(stack, client.v1.accounts.retrieve_current().id)
        backfill = import_existing(stack)
        http(
            "POST",
            f"{stack.stripe_url}/_sandbox/config",
            {"delivery_delay_ms": 50, "delivery_duplicate_ratio": 0.3, "delivery_reorder": True},
        )
        step("Stripe will deliver webhooks delayed, 30% of them twice, out of order")
        customers = {**existing, **story(client)}
        wait(stack, "delivering the sign-ups")
        mismatches = scheduled_cancellation(stack)
        http("POST", f"{stack.stripe_url}/_sandbox/clock/advance", {"seconds": 31 * DAY})
        step("a month passes: Ada's trial converts, renewals are billed and paid, Linus's plan ends")
        flushed = wait(stack, "delivering the month")
        mismatches += dunning(stack)
        recovered = lost_webhook(stack, client, customers["u-grace"])
        delivered = stack.sandbox.delivered if stack.sandbox else 0
        print()
        print(
            f"{'external_id':<12} {'matched':<7} {'mrr':>8} {'trialing':<8} {'renews':<10} {'churned':<7} "
            f"{'deleted':<7} {'total_paid':>10}  plans"
        )
        for external_id, customer_id in customers.items():
            status, record = stack.admin("GET", f"/tenants/{TENANT}/customers/{external_id}")
            record = record if status == 200 else None
            print(_row(external_id, record))
            if record is None:
                mismatches.append(f"{external_id}: no record")
                continue
            want = expected_record(client, customer_id)
            mismatches += [
                f"{external_id}.{k}: got {record[k]!r}, Stripe says {v!r}"
                for k, v in want.items()
                if record[k] != v
            ]
        records_mrr = sum(
            record["mrr"]
            for external_id in customers
            if (record := stack.admin("GET", f"/tenants/{TENANT}/customers/{external_id}")[1])
            and isinstance(record, dict)
            and record.get("mrr")
        )
        mismatches += revenue(stack, records_mrr)
        unmatched = stack.admin("GET", f"/tenants/{TENANT}/customers/stripe:{customers['u-edsger']}")[0]
        if unmatched != 404:
            mismatches.append("Edsger's unmatched record should have moved to u-edsger")
        if backfill["state"] != "succeeded":
            mismatches.append(f"backfill {backfill['state']}: {backfill['error']}")
        if recovered < 1:
            mismatches.append("the dropped webhook was not recovered by the catch-up")
        if flushed.get("dead_letters"):
            mismatches.append(f"{flushed['dead_letters']} events in the dead-letter queue")
        print()
        print(
            f"{len(customers)} customers, {delivered} webhook deliveries, {stack.poll_stats.received} queue "
            f"messages in {stack.poll_stats.batches} worker batches, {time.monotonic() - started:.1f}s"
        )
    if mismatches:
        print("MISMATCH against the Stripe sandbox:\n  " + "\n  ".join(mismatches))
        return 1
    print(f"OK: every record matches the Stripe sandbox ({', '.join(CHECKED)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
