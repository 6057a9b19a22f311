"""``GET /tenants/{id}/revenue`` for a tenant with 10,000 customers and two years of history.

1. Two years of subscription events for 10,000 customers (sign-ups spread over the two years,
   upgrades, downgrades, churns and comebacks), each customer's history computed by the domain's
   own rules and summed into the tenant's monthly totals, which are stored as the write path stores
   them (one item per month and currency).
2. The write path itself on a sample of 200 of those customers, their events shuffled and some
   delivered twice, through ``apply_observation`` and the DynamoDB store on moto: its totals must
   equal the sample's recomputed from scratch (the incremental maintenance is exact).
3. The request, through the tenant API handler on moto: 24 months answered from one Query of the
   monthly totals, whatever the number of customers. Printed next to what answering from the
   customers' own items would have to read.

Run: `python -m bench.revenue` (part of `make bench`).
"""

from __future__ import annotations

import calendar
import json
import os
import random
import sys
import time
import warnings

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")

from revsync.domain.events import Observation  # noqa: E402
from revsync.domain.history import (  # noqa: E402
    Contribution,
    HistoryLog,
    contributions,
    history_entries,
    movements,
    mrr_timeline,
)
from revsync.domain.snapshots import parse_subscription  # noqa: E402
from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.services.sync import apply_observation  # noqa: E402
from revsync.store import models  # noqa: E402
from revsync.store.customers import CustomerStore  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from local import stripe_shapes as S  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from tests.fakes import FakeStripe, FakeTenants  # noqa: E402

DAY = 86_400
START = calendar.timegm((2025, 1, 1, 0, 0, 0))
MONTHS = 24
PRICES = [S.price(amount, id=f"price_{amount}") for amount in (1900, 4900, 9900)]
API_GATEWAY_LIMIT_SECONDS = 30
STATE_ITEM_BYTES = 366  # median state item (bench/worker_cost.py's customers): what a scan would read


def customer_events(index: int, rng: random.Random) -> list[Observation]:
    """One customer's subscription observations over the two years."""
    customer_id, sub_id = f"cus_{index:05d}", f"sub_{index:05d}"
    at = START + rng.randrange(MONTHS * 30 * DAY)
    end = START + MONTHS * 30 * DAY
    price, quantity, status = rng.choice(PRICES), 1, "active"
    observations = []
    source = "created"
    while at < end:
        raw = S.subscription(
            customer_id,
            [{**S.subscription_item(price, quantity=quantity), "id": f"si_{index:05d}"}],
            id=sub_id,
            status=status,
        )
        observations.append(
            Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)  # type: ignore[typeddict-item]
        )
        at += rng.randrange(20 * DAY, 200 * DAY)
        roll = rng.random()
        source = "updated"
        if status == "canceled":
            status, price, quantity = "active", rng.choice(PRICES), 1  # comes back
        elif roll < 0.35:
            quantity += 1
        elif roll < 0.5 and quantity > 1:
            quantity -= 1
        elif roll < 0.7:
            status = "canceled"
    return observations


def totals_of(histories: dict[str, list[Observation]]) -> dict[str, dict[str, Contribution]]:
    found: dict[str, dict[str, Contribution]] = {}
    for customer_id, observations in histories.items():
        log = HistoryLog().with_entries(e for o in observations for e in history_entries(o))
        for (currency, month), part in contributions(
            movements(mrr_timeline(customer_id, log.observations()))
        ).items():
            months = found.setdefault(currency, {})
            months[month] = months.get(month, Contribution()) + part
    return found


def store_totals(tenant_id: str, totals: dict[str, dict[str, Contribution]]) -> int:
    items = 0
    for currency, months in totals.items():
        for month, total in months.items():
            models.RevenueMonthItem(
                models.revenue_partition(tenant_id),
                models.revenue_sort_key(currency, month),
                **total._asdict(),
            ).save()
            items += 1
    return items


def main(customers: int = 10_000, sample: int = 200) -> int:
    rng = random.Random(11)
    started = time.perf_counter()
    histories = {f"cus_{i:05d}": customer_events(i, rng) for i in range(customers)}
    events = sum(len(h) for h in histories.values())
    totals = totals_of(histories)
    computed = time.perf_counter() - started

    with InProcessStack() as stack:
        stored_items = store_totals("bench", totals)

        # The write path on a sample, shuffled and partly duplicated: same totals as from scratch.
        tenant = Tenant("sample", Connection("connected", "oauth", "acct_sample")).with_config("id")
        TenantStore().save(tenant, START)
        picked = dict(list(histories.items())[:sample])
        stream = [o for h in picked.values() for o in h]
        stream += rng.sample(stream, len(stream) // 10)
        rng.shuffle(stream)
        store, fakes = CustomerStore(), (FakeTenants({"sample": tenant}), FakeStripe())
        written = time.perf_counter()
        for observation in stream:
            apply_observation("sample", observation, tenants=fakes[0], customers=store, stripe=fakes[1])
        written = time.perf_counter() - written
        incremental_ok = store.revenue_totals("sample") == {
            c: {m: t for m, t in months.items() if any(t)} for c, months in totals_of(picked).items()
        }

        first = time.strftime("%Y-%m", time.gmtime(START))
        last = time.strftime("%Y-%m", time.gmtime(START + (MONTHS - 1) * 31 * DAY))
        timings = []
        for _ in range(5):
            begun = time.perf_counter()
            response = stack.request("GET", "/tenants/bench/revenue", query=f"from={first}&to={last}")
            timings.append(time.perf_counter() - begun)
        assert response.status == 200, response.body
        report = response.json()

    months = report["months"]
    identity = all(
        m["mrr_start"] + m["new"] + m["expansion"] + m["reactivation"] - m["contraction"] - m["churn"]
        == m["mrr_end"]
        for m in months
    )
    request_seconds = sorted(timings)[len(timings) // 2]
    scan_pages = customers * STATE_ITEM_BYTES / 1_000_000
    print(f"revenue for {customers:,} customers over {MONTHS} months ({events:,} subscription changes)")
    print(
        f"  stored: {stored_items} monthly total items (one per month and currency); "
        f"histories summed in {computed:.1f} s"
    )
    print(
        f"  write path on {sample} customers ({len(stream):,} observations, shuffled, 10% twice): "
        f"totals {'equal' if incremental_ok else 'DIFFER FROM'} the recomputation, {written:.1f} s on moto"
    )
    print(
        f"  GET /revenue for {len(months)} months: {request_seconds * 1000:.0f} ms median of 5 "
        "(handler on moto), "
        f"{len(json.dumps(report)):,} bytes, start + movements = end in every month: {identity}; "
        f"MRR at the end {months[-1]['mrr_end'] / 100:,.2f} {report['currency']} from "
        f"{months[-1]['customers_end']:,} paying customers"
    )
    print(
        f"  reads {stored_items} items in one Query; answering from the customers' items would read "
        f"{customers:,} items (~{scan_pages:.1f} MB, {max(1, round(scan_pages))}+ Query pages): "
        f"{customers / max(1, stored_items):,.0f}x more; API Gateway's limit is {API_GATEWAY_LIMIT_SECONDS} s"
    )
    ok = incremental_ok and identity and request_seconds < API_GATEWAY_LIMIT_SECONDS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
