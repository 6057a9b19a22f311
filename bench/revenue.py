"""``GET /tenants/{id}/revenue`` for a tenant with 10,000 customers and two years of history.

1. Two years of subscription events for 10,000 customers (sign-ups spread over the two years,
   upgrades, downgrades, churns and comebacks), each customer's MRR timeline computed by the
   domain's own rules and stored as the write path stores it (on the customer's state item, so in
   the sync table's sparse ``revenue`` index).
2. The write path itself on a sample of 200 of those customers, their events shuffled and some
   delivered twice, through ``apply_observation`` and the DynamoDB store on moto: the months it
   answers must equal the sample's recomputed from scratch.
3. The request, through the tenant API handler on moto: 24 months summed from one Query of the
   revenue index (every customer's timeline, ~100 bytes each), with the bytes and read units it
   reads as DynamoDB bills them, and the time against the tenant API function's timeout.

Run: `python -m bench.revenue` (part of `make bench`).
"""

from __future__ import annotations

import calendar
import json
import math
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
    revenue_months,
)
from revsync.domain.snapshots import parse_subscription  # noqa: E402
from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.services.sync import apply_observation  # noqa: E402
from revsync.store import models  # noqa: E402
from revsync.store.customers import CustomerStore  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from bench.worker_cost import Meter, metering  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from local.template import load_template  # noqa: E402
from tests.fakes import FakeStripe, FakeTenants  # noqa: E402

DAY = 86_400
START = calendar.timegm((2025, 1, 1, 0, 0, 0))
MONTHS = 24
PRICES = [S.price(amount, id=f"price_{amount}") for amount in (1900, 4900, 9900)]
PAGE_BYTES = 1_000_000  # a Query page reads at most 1 MB


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


Timelines = dict[str, list[tuple[int, str | None, int]]]


def timelines_of(histories: dict[str, list[Observation]]) -> Timelines:
    """Each customer's MRR timeline from its observations, by the domain's rules."""
    found: Timelines = {}
    for customer_id, observations in histories.items():
        log = HistoryLog().with_entries(e for o in observations for e in history_entries(o))
        found[customer_id] = mrr_timeline(customer_id, log.observations())
    return found


def totals_of(timelines: Timelines) -> dict[str, dict[str, Contribution]]:
    """The months from scratch: each customer's contribution, added up customer by customer."""
    found: dict[str, dict[str, Contribution]] = {}
    for timeline in timelines.values():
        for (currency, month), part in contributions(movements(timeline)).items():
            months = found.setdefault(currency, {})
            months[month] = months.get(month, Contribution()) + part
    return found


def store_timelines(tenant_id: str, timelines: Timelines) -> int:
    """Each customer's state item as the write path leaves it, as far as the revenue index sees it."""
    stored = 0
    with models.CustomerStateItem.batch_write() as batch:
        for customer_id, timeline in timelines.items():
            if not timeline:
                continue
            item = models.CustomerStateItem(
                models.sync_partition(tenant_id, customer_id), models.STATE_SK, objects={}
            )
            item.tenant_id, item.timeline = tenant_id, json.dumps(timeline, separators=(",", ":"))
            batch.save(item)
            stored += 1
    return stored


def index_bytes(tenant_id: str) -> int:
    """What a Query of the revenue index reads, as DynamoDB sizes it (names and values of the
    projected item: index and table keys, timeline, kind)."""
    total = 0
    index = models.RevenueIndex.Meta.index_name
    for item in models.TimelinePieceItem.query(tenant_id, index_name=index):
        values = {"tenant_id": item.tenant_id, "pk": item.pk, "sk": item.sk, "timeline": item.timeline}
        total += (
            sum(len(k) + len(str(v).encode()) for k, v in values.items())
            + len("kind")
            + len(str(models.SyncItem.kind.get_discriminator(type(item))))
        )
    return total


def main(customers: int = 10_000, sample: int = 200) -> int:
    rng = random.Random(11)
    started = time.perf_counter()
    histories = {f"cus_{i:05d}": customer_events(i, rng) for i in range(customers)}
    events = sum(len(h) for h in histories.values())
    timelines = timelines_of(histories)
    totals = totals_of(timelines)
    computed = time.perf_counter() - started

    with InProcessStack() as stack:
        stored_items = store_timelines("bench", timelines)
        read_bytes = index_bytes("bench")

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
        write_path_ok = store.revenue_totals("sample") == {
            c: {m: t for m, t in months.items() if any(t)}
            for c, months in totals_of(timelines_of(picked)).items()
        }

        first = time.strftime("%Y-%m", time.gmtime(START))
        last = time.strftime("%Y-%m", time.gmtime(START + (MONTHS - 1) * 31 * DAY))
        timings, own = [], []
        for _ in range(5):
            meter = Meter()
            with metering(meter):
                begun = time.perf_counter()
                response = stack.request("GET", "/tenants/bench/revenue", query=f"from={first}&to={last}")
                timings.append(time.perf_counter() - begun)
            own.append(timings[-1] - meter.waited)  # the handler's own time, moto's taken out
        assert response.status == 200, response.body
        report = response.json()
    # The whole tenant's months, as summed from the index, against the recomputation from scratch.
    all_ok = report["months"] == revenue_months(totals[report["currency"]], first, last)

    months = report["months"]
    identity = all(
        m["mrr_start"] + m["new"] + m["expansion"] + m["reactivation"] - m["contraction"] - m["churn"]
        == m["mrr_end"]
        for m in months
    )
    request_seconds = sorted(timings)[len(timings) // 2]
    own_seconds = sorted(own)[len(own) // 2]
    memory = int(load_template()["Resources"]["TenantApiFunction"]["Properties"]["MemorySize"])
    # Lambda gives a full vCPU at 1,769 MB and a share in proportion below.
    lambda_seconds = own_seconds * max(1.0, 1769 / memory)
    timeout = float(load_template()["Resources"]["TenantApiFunction"]["Properties"]["Timeout"])
    pages = max(1, math.ceil(read_bytes / PAGE_BYTES))
    read_units = math.ceil(read_bytes / 4096) / 2  # eventually consistent, as an index is read
    print(f"revenue for {customers:,} customers over {MONTHS} months ({events:,} subscription changes)")
    print(
        f"  stored: {stored_items:,} MRR timelines in the revenue index (customers that ever paid); "
        f"histories summed in {computed:.1f} s"
    )
    print(
        f"  write path on {sample} customers ({len(stream):,} observations, shuffled, 10% twice): "
        f"months {'equal' if write_path_ok else 'DIFFER FROM'} the recomputation, {written:.1f} s on moto"
    )
    print(
        f"  GET /revenue for {len(months)} months: {request_seconds * 1000:.0f} ms median of 5 "
        f"on moto, of which the handler's own {own_seconds * 1000:.0f} ms (~{lambda_seconds:.1f} s at "
        f"{memory} MB's vCPU share; tenant API timeout {timeout:.0f} s), "
        f"{len(json.dumps(report)):,} bytes, start + movements = end in every month: {identity}; "
        f"MRR at the end {months[-1]['mrr_end'] / 100:,.2f} {report['currency']} from "
        f"{months[-1]['customers_end']:,} paying customers; "
        f"{'equal to' if all_ok else 'DIFFERENT FROM'} the months recomputed from scratch"
    )
    print(
        f"  reads {read_bytes / 1e6:.2f} MB of the index ({read_bytes / max(1, stored_items):.0f} bytes a "
        f"customer): {pages} Query page(s), {read_units:,.0f} read units, "
        f"${read_units * 0.125e-6:.6f} a request"
    )
    ok = write_path_ok and all_ok and identity and lambda_seconds < timeout
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
