"""Per-event cost of the webhook path: DynamoDB operations, Stripe calls, and dollars per million.

A realistic month of events for 300 customers (sign-ups, trials converting, renewals paid with both
invoice events, upgrades, some cancellations and deletions, 10% redelivered, shuffled within each
day) goes through the real receiver and worker handlers on in-process moto. Every DynamoDB request
the handlers make is counted, with its capacity units estimated from the item sizes (writes per KB,
strongly consistent reads per 4 KB). Prints the averages per applied event against the budget (at
most 2 writes and 2 reads; Stripe calls at most 0.05) and a cost estimate at on-demand list prices.
Run: `make bench` (or `python -m bench.worker_cost`).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
import warnings
from collections import Counter
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")


from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from local import lambda_runtime  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.aws import DEFAULT_WEBHOOK_SECRET  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from tests.fakes import FakeStripe  # noqa: E402

DAY = 86_400
WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
READS = {"GetItem", "Query"}
# On-demand list prices (us-east-1): API Gateway HTTP API $1.00/M requests; Lambda arm64
# $0.0000133334 per GB-s and $0.20/M requests; SQS FIFO $0.50/M requests (per 64 KB); DynamoDB
# $0.625/M write units and $0.125/M read units; CloudWatch Logs $0.50/GB ingested.
PRICE = {
    "apigw": 1.00e-6,
    "lambda_gb_s": 0.0000133334,
    "lambda_req": 0.20e-6,
    "sqs": 0.50e-6,
    "wru": 0.625e-6,
    "rru": 0.125e-6,
    "log_gb": 0.50,
}


def events_for(customers: int, now: int, rng: random.Random) -> list[dict[str, Any]]:
    start, events = now - 40 * DAY, []
    price = S.price(4900, id="price_pro")
    for index in range(customers):
        created = start + rng.randrange(5 * DAY)
        customer = S.customer(
            f"cus_{index:05d}",
            email=f"c{index}@example.com",
            metadata={"app_id": f"u-{index}"},
            created=created,
        )
        events.append(S.event("customer.created", customer, created=created, account="acct_bench"))
        trial = rng.random() < 0.3
        sub_id, period = f"sub_{index:05d}", (created, created + 30 * DAY)
        item = {
            **S.subscription_item(price, period_start=period[0], period_end=period[1]),
            "id": f"si_{index:05d}",
        }
        status = "trialing" if trial else "active"
        sub = S.subscription(
            customer["id"],
            [item],
            id=sub_id,
            status=status,
            created=created,
            period_start=period[0],
            period_end=period[1],
            trial_end=period[1] if trial else None,
        )
        events.append(
            S.event("customer.subscription.created", sub, created=created + 1, account="acct_bench")
        )
        paid_at = period[1] if trial else created + 2
        if not trial:
            invoice = S.invoice(
                customer["id"],
                sub_id,
                amount_paid=4900,
                paid_at=paid_at,
                id=f"in_{index:05d}a",
                period_start=period[0],
                period_end=period[1],
            )
            for kind in ("invoice.paid", "invoice.payment_succeeded"):
                events.append(S.event(kind, invoice, created=paid_at, account="acct_bench"))
        renewal = period[1]
        renewed_item = {**item, "current_period_start": renewal, "current_period_end": renewal + 30 * DAY}
        renewed = {**sub, "status": "active", "items": {**sub["items"], "data": [renewed_item]}}
        events.append(
            S.event("customer.subscription.updated", renewed, created=renewal, account="acct_bench")
        )
        invoice = S.invoice(
            customer["id"],
            sub_id,
            amount_paid=4900,
            paid_at=renewal + 5,
            id=f"in_{index:05d}b",
            period_start=renewal,
            period_end=renewal + 30 * DAY,
        )
        for kind in ("invoice.paid", "invoice.payment_succeeded"):
            events.append(S.event(kind, invoice, created=renewal + 5, account="acct_bench"))
        fate = rng.random()
        if fate < 0.1:
            upgraded = {**renewed, "items": {**renewed["items"], "data": [{**renewed_item, "quantity": 3}]}}
            events.append(
                S.event(
                    "customer.subscription.updated", upgraded, created=renewal + DAY, account="acct_bench"
                )
            )
        elif fate < 0.15:
            ended = {
                **renewed,
                "status": "canceled",
                "canceled_at": renewal + 2 * DAY,
                "ended_at": renewal + 2 * DAY,
            }
            events.append(
                S.event(
                    "customer.subscription.deleted", ended, created=renewal + 2 * DAY, account="acct_bench"
                )
            )
        elif fate < 0.17:
            events.append(
                S.event("customer.deleted", customer, created=renewal + 3 * DAY, account="acct_bench")
            )
        if rng.random() < 0.2:
            events.append(
                S.event(
                    "customer.updated",
                    {**customer, "name": f"Customer {index}"},
                    created=created + 3 * DAY,
                    account="acct_bench",
                )
            )
    events += [{**e, "id": e["id"] + "_again"} for e in rng.sample(events, k=len(events) // 10)]
    events.sort(key=lambda e: e["created"] // DAY + rng.random())  # roughly in order, shuffled within a day
    return events


def main(customers: int = 300) -> int:
    rng = random.Random(7)
    counts: Counter[str] = Counter()
    units: Counter[str] = Counter()

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        counts[name] += 1
        size = len(json.dumps(params, default=str))
        if name in WRITES:
            units["wru"] += max(1, math.ceil(size / 1024))
        elif name in READS:
            units["rru"] += max(1, math.ceil(size / 4096))

    with InProcessStack() as stack:
        TenantStore().save(
            Tenant("bench", Connection("connected", "oauth", "acct_bench")).with_config("metadata.app_id"),
            int(time.time()),
        )
        fake = FakeStripe()
        lambda_runtime.load_module("WorkerFunction").dependencies().stripe = fake
        events = events_for(customers, int(time.time()), rng)
        for event in events:
            assert stack.post_webhook(event, DEFAULT_WEBHOOK_SECRET).status == 200
        # Count the worker's DynamoDB traffic only from here on (the receiver's is one GetItem per event).
        from revsync.infra import aws  # noqa: PLC0415
        from revsync.store import models  # noqa: PLC0415

        # PynamoDB keeps a connection (and a botocore client) per model class.
        model_classes = [
            m
            for m in vars(models).values()
            if isinstance(m, type)
            and hasattr(m, "_get_connection")
            and getattr(getattr(m, "Meta", None), "table_name", None) is not None
        ]
        clients = [aws.dynamodb(), *(m._get_connection().connection.client for m in model_classes)]
        for client in {id(c): c for c in clients}.values():
            client.meta.events.register("provide-client-params.dynamodb.*", count)
        started = time.monotonic()
        stats = stack.drain()
        elapsed = time.monotonic() - started
        receiver_reads = len(events)

    applied = stats.succeeded
    writes = sum(counts[n] for n in WRITES)
    reads = sum(counts[n] for n in READS)
    stripe_calls = len(fake.fetches) + fake.coupon_reads
    per = {
        "writes": writes / applied,
        "reads": reads / applied,
        "wru": units["wru"] / applied,
        "rru": units["rru"] / applied,
        "stripe": stripe_calls / applied,
    }
    worker_ms = elapsed * 1000 / max(1, stats.batches)
    parts = {
        "API Gateway": PRICE["apigw"],
        "receiver Lambda (256 MB, ~30 ms)": PRICE["lambda_req"] + PRICE["lambda_gb_s"] * 0.256 * 0.030,
        "SQS (send; receive and delete per 10)": PRICE["sqs"] * (1 + 2 / 10),
        "receiver DynamoDB read": PRICE["rru"] * 0.5,
        "worker Lambda (512 MB, per 10)": (
            PRICE["lambda_req"] + PRICE["lambda_gb_s"] * 0.512 * worker_ms / 1000
        )
        / 10,
        "worker DynamoDB": PRICE["wru"] * per["wru"] + PRICE["rru"] * per["rru"],
        "CloudWatch Logs (~700 B)": PRICE["log_gb"] * 700 / 1e9,
    }
    cost = sum(parts.values())
    print(f"{len(events)} webhooks for {customers} customers ({applied} messages, {stats.batches} batches)")
    print(
        f"per applied event: {per['writes']:.2f} DynamoDB writes ({per['wru']:.2f} WRU), "
        f"{per['reads']:.2f} reads ({per['rru']:.2f} RRU), {per['stripe']:.3f} Stripe calls "
        f"(budget: at most 2 writes, 2 reads, 0.05 Stripe calls); by operation {dict(counts)}"
    )
    print(f"receiver: 1 DynamoDB read per event ({receiver_reads}), 1 SQS request, no write")
    print(
        f"estimated cost: ${cost * 1e6:.2f} per million webhook events (budget $3.50), worker batches "
        f"here took {worker_ms:.0f} ms on moto (real DynamoDB is faster)"
    )
    print("  " + ", ".join(f"{name} ${value * 1e6:.2f}" for name, value in parts.items()))
    ok = per["writes"] <= 2 and per["reads"] <= 2 and per["stripe"] <= 0.05 and cost * 1e6 <= 3.50
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
