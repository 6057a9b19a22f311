"""`make demo`: a tenant's Stripe events flow through the real handlers into customer records.

Runs in-process on moto (no AWS account, no network): connects a tenant, saves its customer-ID trait,
posts signed Stripe webhooks (shuffled, with duplicates and late stale copies) to the receiver, runs
the worker over the queue, prints the records and checks each against what the revenue rules give.
Exits non-zero on any mismatch.
"""

from __future__ import annotations

import os
import random
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the handlers' JSON logs would drown the story
warnings.filterwarnings("ignore", message="No application metrics to publish")

from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from local import stripe_shapes as S  # noqa: E402
from local.aws import DEFAULT_WEBHOOK_SECRET  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402

TENANT, ACCOUNT = "acme", "acct_demo_acme"
DAY = 86_400


def story(now: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, object]]]:
    """Stripe events in the order they happened, and the records they must produce."""
    t = now - 20 * DAY
    events: list[dict[str, Any]] = []

    def emit(kind: str, obj: dict[str, Any], at: int) -> None:
        events.append(S.event(kind, obj, created=at, account=ACCOUNT))

    pro = S.price(4900, nickname="Pro monthly", id="price_pro")
    team = S.price(9900, nickname="Team monthly", id="price_team")
    yearly = S.price(120_000, interval="year", nickname="Pro yearly", id="price_pro_year")

    # Ada: a trial that converts, then upgrades to Team with 3 seats.
    ada = S.customer("cus_ada", email="ada@example.com", name="Ada", metadata={"app_id": "u-ada"}, created=t)
    emit("customer.created", ada, t)
    trial = S.subscription(
        "cus_ada",
        [S.subscription_item(pro)],
        id="sub_ada",
        status="trialing",
        trial_end=t + 14 * DAY,
        period_end=t + 14 * DAY,
        created=t,
    )
    emit("customer.subscription.created", trial, t + 1)
    active = S.subscription(
        "cus_ada",
        [S.subscription_item(pro, period_start=t + 14 * DAY, period_end=t + 44 * DAY)],
        id="sub_ada",
        status="active",
        created=t,
        period_start=t + 14 * DAY,
        period_end=t + 44 * DAY,
    )
    emit("customer.subscription.updated", active, t + 14 * DAY)
    emit(
        "invoice.paid",
        S.invoice(
            "cus_ada",
            "sub_ada",
            amount_paid=4900,
            paid_at=t + 14 * DAY,
            id="in_ada_1",
            period_start=t + 14 * DAY,
            period_end=t + 44 * DAY,
        ),
        t + 14 * DAY + 1,
    )
    upgraded = S.subscription(
        "cus_ada",
        [S.subscription_item(team, quantity=3, period_start=t + 14 * DAY, period_end=t + 44 * DAY)],
        id="sub_ada",
        status="active",
        created=t,
        period_start=t + 14 * DAY,
        period_end=t + 44 * DAY,
    )
    emit("customer.subscription.updated", upgraded, t + 15 * DAY)

    # Grace: a yearly plan, paid.
    grace = S.customer(
        "cus_grace", email="grace@example.com", name="Grace", metadata={"app_id": "u-grace"}, created=t
    )
    emit("customer.created", grace, t + 2)
    emit(
        "customer.subscription.created",
        S.subscription(
            "cus_grace",
            [S.subscription_item(yearly, period_end=t + 365 * DAY)],
            id="sub_grace",
            period_start=t,
            period_end=t + 365 * DAY,
        ),
        t + 3,
    )
    emit(
        "invoice.payment_succeeded",
        S.invoice(
            "cus_grace",
            "sub_grace",
            amount_paid=120_000,
            paid_at=t + 3,
            id="in_grace_1",
            period_end=t + 365 * DAY,
        ),
        t + 4,
    )

    # Linus: created without the app id (kept as stripe:cus_linus), which is added a day later.
    linus = S.customer("cus_linus", email="linus@example.com", name="Linus", created=t)
    emit("customer.created", linus, t + 5)
    emit(
        "customer.subscription.created",
        S.subscription(
            "cus_linus",
            [S.subscription_item(pro, quantity=2, period_start=t, period_end=t + 30 * DAY)],
            id="sub_linus",
            period_start=t,
            period_end=t + 30 * DAY,
        ),
        t + 6,
    )
    emit("customer.updated", {**linus, "metadata": {"app_id": "u-linus"}}, t + DAY)

    # Ken: active, then canceled: churned.
    ken = S.customer("cus_ken", email="ken@example.com", name="Ken", metadata={"app_id": "u-ken"}, created=t)
    emit("customer.created", ken, t + 7)
    ken_sub = S.subscription(
        "cus_ken",
        [S.subscription_item(pro, period_start=t, period_end=t + 30 * DAY)],
        id="sub_ken",
        period_start=t,
        period_end=t + 30 * DAY,
    )
    emit("customer.subscription.created", ken_sub, t + 8)
    emit(
        "customer.subscription.deleted",
        {**ken_sub, "status": "canceled", "canceled_at": t + 10 * DAY, "ended_at": t + 10 * DAY},
        t + 10 * DAY,
    )

    # Barbara: deleted in Stripe (her subscription is canceled with her).
    barbara = S.customer(
        "cus_barbara",
        email="barbara@example.com",
        name="Barbara",
        metadata={"app_id": "u-barbara"},
        created=t,
    )
    emit("customer.created", barbara, t + 9)
    b_sub = S.subscription(
        "cus_barbara",
        [S.subscription_item(team, period_start=t, period_end=t + 30 * DAY)],
        id="sub_barbara",
        period_end=t + 30 * DAY,
    )
    emit("customer.subscription.created", b_sub, t + 10)
    emit("customer.deleted", barbara, t + 12 * DAY)
    emit(
        "customer.subscription.deleted",
        {**b_sub, "status": "canceled", "canceled_at": t + 12 * DAY, "ended_at": t + 12 * DAY},
        t + 12 * DAY,
    )

    expected: dict[str, dict[str, object]] = {
        "u-ada": {
            "mrr": 29_700,
            "trialing": False,
            "churned": False,
            "next_renewal_at": t + 44 * DAY,
            "total_paid": 4900,
        },
        "u-grace": {
            "mrr": 10_000,
            "trialing": False,
            "churned": False,
            "next_renewal_at": t + 365 * DAY,
            "total_paid": 120_000,
        },
        "u-linus": {
            "mrr": 9_800,
            "matched": True,
            "churned": False,
            "next_renewal_at": t + 30 * DAY,
            "total_paid": 0,
        },
        "u-ken": {"mrr": 0, "churned": True, "churned_at": t + 10 * DAY, "next_renewal_at": None},
        "u-barbara": {
            "mrr": 0,
            "churned": True,
            "deleted_in_stripe": True,
            "churned_at": t + 12 * DAY,
            "next_renewal_at": None,
        },
    }
    return events, expected


def deliveries(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Stripe's delivery: any order, some events twice (as new deliveries), some retried late."""
    delivered = list(events)
    delivered += [{**e, "id": f"{e['id']}_redelivered"} for e in rng.sample(events, k=len(events) // 3)]
    rng.shuffle(delivered)
    return delivered


def _row(record: dict[str, Any] | None, external_id: str) -> str:
    if record is None:
        return f"{external_id:<14} (missing)"
    renewal = (
        time.strftime("%Y-%m-%d", time.gmtime(record["next_renewal_at"]))
        if record["next_renewal_at"]
        else "-"
    )
    return (
        f"{external_id:<14} {record['stripe_customer_id']:<12} {record['matched']!s:<7} "
        f"{record['mrr'] / 100:>9.2f} {record['trialing']!s:<8} {renewal:<10} {record['churned']!s:<7} "
        f"{record['deleted_in_stripe']!s:<7} {record['total_paid'] / 100:>10.2f}"
    )


def main() -> int:
    now = int(time.time())
    events, expected = story(now)
    rng = random.Random(2026)  # noqa: S311 (a reproducible shuffle, not a secret)
    with InProcessStack() as stack:
        print("revsync demo: in-process on moto, real handlers, no network")
        TenantStore().save(
            Tenant(TENANT, Connection("connected", "oauth", ACCOUNT, False, connected_at=now)), now
        )
        response = stack.request(
            "PUT", f"/tenants/{TENANT}/stripe/config", {"customer_id_trait": "metadata.app_id"}
        )
        assert response.status == 200, response.body
        print(
            f"  tenant {TENANT!r} connected to {ACCOUNT}, customer-ID trait metadata.app_id, "
            f"tracking {response.json()['tracking']}"
        )

        # Webhook signatures are checked against the current time, so deliveries are stamped now;
        # each event's own `created` (spread over 20 days) is what orders the snapshots.
        delivered = deliveries(events, rng)
        statuses = [stack.post_webhook(event, DEFAULT_WEBHOOK_SECRET).status for event in delivered]
        print(
            f"  posted {len(delivered)} signed webhooks ({len(events)} events, shuffled, "
            f"{len(delivered) - len(events)} redelivered): statuses {sorted(set(statuses))}"
        )
        stats = stack.drain()
        print(
            f"  worker: {stats.batches} batches, {stats.received} messages, {stats.failed} failed; "
            f"dead letters: {stack.queue_depth('EventsDeadLetterQueue')}"
        )

        print()
        print(
            f"{'external_id':<14} {'stripe_id':<12} {'matched':<7} {'mrr':>9} {'trialing':<8} {'renews':<10} "
            f"{'churned':<7} {'deleted':<7} {'total_paid':>10}"
        )
        mismatches: list[str] = []
        for external_id, want in expected.items():
            response = stack.request("GET", f"/tenants/{TENANT}/customers/{external_id}")
            record = response.json() if response.status == 200 else None
            print(_row(record, external_id))
            if record is None:
                mismatches.append(f"{external_id}: no record")
                continue
            mismatches += [
                f"{external_id}.{k}: got {record[k]!r}, want {v!r}" for k, v in want.items() if record[k] != v
            ]
        gone = stack.request("GET", f"/tenants/{TENANT}/customers/stripe:cus_linus").status
        if gone != 404:
            mismatches.append(f"stripe:cus_linus should have moved to u-linus (got {gone})")
        if statuses.count(200) != len(statuses) or stats.failed:
            mismatches.append("some deliveries failed")

    print()
    if mismatches:
        print("MISMATCH:\n  " + "\n  ".join(mismatches))
        return 1
    print(f"OK: {len(expected)} records match the revenue rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
