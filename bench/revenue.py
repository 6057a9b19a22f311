"""``GET /tenants/{id}/revenue`` for tenants of 10,000 and 100,000 paying customers, from the rollup.

1. Two years of subscription events for 100,000 customers (sign-ups spread over the two years,
   upgrades, downgrades, churns and comebacks), each customer's MRR timeline computed by the
   domain's own rules. Tenant ``t10k`` holds the first 10,000 of them, ``t100k`` all 100,000: their
   state items are written as the write path writes them (timeline, the revenue index's tenant id,
   the rollup's tenant) on in-process moto.
2. The sync table's stream through the rollup function, as Lambda's mapping feeds it (the
   template's BatchSize; the handler as `sam build` makes it when it has run).
3. The write path on a 200-customer sample, shuffled and 10% delivered twice, then the stream: the
   rollup's months equal the recomputation.
4. The request through the tenant API handler for each tenant: the items and read units of the
   Queries it makes (item sizes by DynamoDB's rules, eventually consistent), and its own time
   (moto's taken out, 5 ms a call added); the ratios 100k / 10k (budget 1.1); the answer against the
   recomputation (``RevenueRecomputation.revenue_totals``: the revenue index, every timeline summed in
   memory, what ``/revenue`` read before the rollup) and the months computed from scratch.
5. A burst of one tenant: 1,000 MRR changes in one month through the stream: how often the month's
   item is written (once per batch), against DynamoDB's per-item limit at 1,000 changes a second.

Run: `python -m bench.revenue [customers]` (part of `make bench`).
"""

from __future__ import annotations

import calendar
import contextlib
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
if BUILD.exists() and not os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
    os.environ["REVSYNC_LOCAL_BUILD_DIR"] = str(BUILD)  # the handlers as built
if os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
    sys.path.insert(0, str(Path(os.environ["REVSYNC_LOCAL_BUILD_DIR"]) / "RevsyncLayer" / "python"))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")

from moto.core.botocore_stubber import BotocoreStubber  # noqa: E402
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
from revsync.store.read_models import RevenueRecomputation  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from bench.worker_cost import item_bytes  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from local.template import load_template  # noqa: E402
from tests.fakes import FakeStripe, FakeTenants  # noqa: E402

DAY = 86_400
START = calendar.timegm((2025, 1, 1, 0, 0, 0))
MONTHS = 24
PRICES = [S.price(amount, id=f"price_{amount}") for amount in (1900, 4900, 9900)]
CALL_SECONDS = 0.005  # DynamoDB's latency per call, added to the handler's own time
RUNS = 21


def customer_events(index: int, rng: random.Random) -> list[Observation]:
    """One customer's subscription observations over the two years."""
    customer_id, sub_id = f"cus_{index:06d}", f"sub_{index:06d}"
    at = START + rng.randrange(MONTHS * 30 * DAY)
    end = START + MONTHS * 30 * DAY
    price, quantity, status = rng.choice(PRICES), 1, "active"
    observations = []
    source = "created"
    while at < end:
        raw = S.subscription(
            customer_id,
            [{**S.subscription_item(price, quantity=quantity), "id": f"si_{index:06d}"}],
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
    """Each customer's state item as the write path leaves it, as far as the revenue index and the
    rollup see it (its timeline, and the tenant of each)."""
    stored = 0
    with models.CustomerStateItem.batch_write() as batch:
        for customer_id, timeline in timelines.items():
            if not timeline:
                continue
            item = models.CustomerStateItem(
                models.sync_partition(tenant_id, customer_id), models.STATE_SK, objects={}
            )
            item.tenant_id = item.rollup_tenant = tenant_id
            item.timeline = json.dumps(timeline, separators=(",", ":"))
            batch.save(item)
            stored += 1
    return stored


class Reads:
    """What the handler's DynamoDB reads return, billed by DynamoDB's rules: a Query's items'
    sizes summed and rounded up to 4 KB, half a unit each when eventually consistent."""

    def __init__(self) -> None:
        self.calls = self.items = self.bytes = 0
        self.units = 0.0
        self.waited = 0.0

    def response(self, request: Any, response: Any, seconds: float) -> None:
        self.waited += seconds
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        self.calls += 1
        if not target.endswith((".Query", ".GetItem")):
            return
        body = json.loads(response.content)
        params = json.loads(request.body)
        items = body.get("Items") or ([body["Item"]] if "Item" in body else [])
        size = sum(item_bytes(item) for item in items)
        self.items += len(items)
        self.bytes += size
        self.units += max(1, math.ceil(size / 4096)) / (1 if params.get("ConsistentRead") else 2)


@contextlib.contextmanager
def metering(reads: Reads) -> Iterator[None]:
    original = BotocoreStubber.__call__

    def metered(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        response = original(stubber, event_name, request, **kwargs)
        if response is not None:
            reads.response(request, response, time.perf_counter() - started)
        return response

    BotocoreStubber.__call__ = metered  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


def requests(
    stack: InProcessStack, tenants: list[str], first: str, last: str
) -> dict[str, tuple[dict[str, Any], Reads, float]]:
    """Each tenant's request RUNS times, the tenants in turn (the machine's load falls on both alike):
    the answer, the reads of one request, the handler's own seconds (median)."""
    timings: dict[str, list[float]] = {tenant: [] for tenant in tenants}
    found: dict[str, tuple[dict[str, Any], Reads]] = {}
    for _ in range(RUNS):
        for tenant in tenants:
            reads = Reads()
            with metering(reads):
                begun = time.perf_counter()
                response = stack.request("GET", f"/tenants/{tenant}/revenue", query=f"from={first}&to={last}")
                seconds = time.perf_counter() - begun - reads.waited + CALL_SECONDS * reads.calls
            assert response.status == 200, response.body
            timings[tenant].append(seconds)
            found[tenant] = (response.json(), reads)
    return {tenant: (*found[tenant], sorted(runs)[len(runs) // 2]) for tenant, runs in timings.items()}


def recomputation(tenant_id: str) -> tuple[dict[str, dict[str, Contribution]], Reads, float]:
    """What ``/revenue`` read before the rollup: every timeline in the revenue index, summed."""
    reads = Reads()
    with metering(reads):
        begun = time.perf_counter()
        totals = RevenueRecomputation().revenue_totals(tenant_id)
        seconds = time.perf_counter() - begun - reads.waited + CALL_SECONDS * reads.calls
    return totals, reads, seconds


def write_path_sample(
    stack: InProcessStack, histories: dict[str, list[Observation]], rng: random.Random, first: str, last: str
) -> tuple[int, bool]:
    """A sample's observations through the write path, shuffled and 10% twice, then the stream: the
    observations applied, and whether ``/revenue`` equals the recomputation."""
    tenant = Tenant("sample", Connection("connected", "oauth", "acct_sample")).with_config("id")
    TenantStore().save(tenant, START)
    stream = [o for h in histories.values() for o in h]
    stream += rng.sample(stream, len(stream) // 10)
    rng.shuffle(stream)
    store, tenants, stripe = CustomerStore(), FakeTenants({"sample": tenant}), FakeStripe()
    for observation in stream:
        apply_observation("sample", observation, tenants=tenants, customers=store, stripe=stripe)
    stack.drain_stream()
    response = stack.request("GET", "/tenants/sample/revenue", query=f"from={first}&to={last}").json()
    expected = revenue_months(
        RevenueRecomputation().revenue_totals("sample").get(response["currency"], {}), first, last
    )
    return len(stream), response["months"] == expected


def burst(stack: InProcessStack, changes: int) -> tuple[int, int]:
    """``changes`` MRR changes of one tenant in one month through the stream: the stream batches
    and the rollup's transactions they took."""
    month = START + 400 * DAY
    with models.CustomerStateItem.batch_write() as batch:
        for index in range(changes):
            item = models.CustomerStateItem(
                models.sync_partition("busy", f"cus_{index:06d}"), models.STATE_SK
            )
            item.objects, item.tenant_id, item.rollup_tenant = {}, "busy", "busy"
            item.timeline = json.dumps([[month + index, "usd", 4900]])
            batch.save(item)
    written: list[int] = []
    original = BotocoreStubber.__call__

    def counted(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        if b"TransactWriteItems" in (target if isinstance(target, bytes) else str(target).encode()):
            written.append(len(json.loads(request.body)["TransactItems"]))
        return original(stubber, event_name, request, **kwargs)

    BotocoreStubber.__call__ = counted  # type: ignore[method-assign,assignment]
    try:
        before = stack.drain_stream(max_batches=0).batches
        after = stack.drain_stream().batches
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]
    return after - before, len(written)


def report(
    measured: dict[str, tuple[dict[str, Any], Reads, float]],
    checks: dict[str, tuple[dict[str, dict[str, Contribution]], Reads, float]],
    scratch: dict[str, dict[str, dict[str, Contribution]]],
    first: str,
    last: str,
) -> tuple[bool, float, float]:
    """A line per tenant; whether every answer equals the recomputation and the months from scratch,
    and the ratios of read units and handler time, 100k / 10k."""
    api = load_template()["Resources"]["TenantApiFunction"]["Properties"]
    share = max(1.0, 1769 / int(api["MemorySize"]))  # Lambda's vCPU share at that memory
    ok = True
    for tenant, (answer, reads, seconds) in measured.items():
        recomputed, index_reads, index_seconds = checks[tenant]
        currency, months = answer["currency"], answer["months"]
        equal_index = months == revenue_months(recomputed.get(currency, {}), first, last)
        equal_scratch = months == revenue_months(scratch[tenant].get(currency, {}), first, last)
        ok = ok and equal_index and equal_scratch
        as_of = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(answer["as_of"]))
        print(
            f"  {tenant}: GET /revenue for {len(months)} months: {reads.calls} Queries, {reads.items} items "
            f"({reads.bytes:,} bytes), {reads.units:g} read units; handler {seconds * 1000:.1f} ms "
            f"(~{seconds * share * 1000:.0f} ms at {api['MemorySize']} MB's vCPU share; timeout "
            f"{api['Timeout']} s); MRR at the end {months[-1]['mrr_end'] / 100:,.2f} {currency}, "
            f"{months[-1]['customers_end']:,} paying customers; as_of {as_of} UTC; "
            f"{'equal to' if equal_index else 'DIFFERENT FROM'} the recomputation ({index_reads.items:,} "
            f"index items, {index_reads.units:,.0f} read units, {index_seconds * 1000:,.0f} ms) and "
            f"{'equal to' if equal_scratch else 'DIFFERENT FROM'} the months from scratch"
        )
    small, big = measured["t10k"], measured["t100k"]
    return ok, big[1].units / small[1].units, big[2] / small[2]


def main(customers: int = 100_000, sample: int = 200) -> int:
    rng = random.Random(11)
    started = time.perf_counter()
    histories = {f"cus_{i:06d}": customer_events(i, rng) for i in range(customers)}
    events = sum(len(h) for h in histories.values())
    timelines = timelines_of(histories)
    tenants = {"t10k": dict(list(timelines.items())[: customers // 10]), "t100k": timelines}
    scratch = {tenant: totals_of(found) for tenant, found in tenants.items()}
    computed = time.perf_counter() - started
    stream = load_template()["Resources"]["RollupFunction"]["Properties"]["Events"]["SyncStream"]
    mapping = stream["Properties"]
    first = time.strftime("%Y-%m", time.gmtime(START))
    last = time.strftime("%Y-%m", time.gmtime(START + (MONTHS - 1) * 31 * DAY))

    with InProcessStack() as stack:
        begun = time.perf_counter()
        stored = {tenant: store_timelines(tenant, found) for tenant, found in tenants.items()}
        batches = stack.drain_stream(max_batches=100_000).batches
        rolled = time.perf_counter() - begun
        picked = dict(list(histories.items())[:sample])
        observations, sample_ok = write_path_sample(stack, picked, rng, first, last)
        measured = requests(stack, list(tenants), first, last)
        checks = {tenant: recomputation(tenant) for tenant in tenants}
        burst_batches, burst_transactions = burst(stack, 1_000)

    print(
        f"revenue from the rollup: {customers:,} customers over {MONTHS} months ({events:,} subscription "
        f"changes; timelines computed in {computed:.0f} s)"
    )
    print(
        f"  stored: {stored['t10k']:,} and {stored['t100k']:,} paying customers' timelines; the stream "
        f"through the rollup in {batches:,} batches of up to {mapping['BatchSize']:,} ({rolled:.0f} s, moto)"
    )
    print(
        f"  write path on {sample} customers ({observations:,} observations, shuffled, 10% twice), then the "
        f"stream: months {'equal to' if sample_ok else 'DIFFERENT FROM'} the recomputation"
    )
    ok, unit_ratio, time_ratio = report(measured, checks, scratch, first, last)
    small, big = measured["t10k"][1], measured["t100k"][1]
    print(
        f"  100k / 10k: read units {unit_ratio:.2f}x, items {big.items / small.items:.2f}x, "
        f"handler time {time_ratio:.2f}x (budget 1.1x)"
    )
    print(
        f"  burst: 1,000 MRR changes of one tenant in one month: {burst_batches} stream batch(es), "
        f"{burst_transactions} transaction(s): the month's item is written once per batch, so at 1,000 "
        f"changes/s at most max(1,000 / {mapping['BatchSize']} (BatchSize), shards / "
        f"{mapping['MaximumBatchingWindowInSeconds']} s (window)) times a second, 2 write units each, "
        f"against DynamoDB's 1,000 write units/s per item"
    )
    return 0 if ok and sample_ok and unit_ratio <= 1.1 and time_ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
