"""A customer's MRR history over years, through the worker as built and as the template deploys it.

1. **State size**: five years of daily quantity changes of one customer's subscription (1,825
   ``customer.subscription.updated`` events after its creation) through the receiver and the worker
   on in-process moto (the handlers and the layer from ``.aws-sam/build`` when ``sam build`` has run).
   Printed: the state item's size as DynamoDB bills a write (names and values), at the end and at its
   largest, in write units per state write (budget 2); the history archives written, and how often
   each; the worker's write units per event by item. Beside it, the state the same observations make
   in the previous format (the whole history in the state), and its revenue-index entry.
2. **Many subscriptions**: a customer with 1,000 subscriptions (its events applied through the write
   path in memory, then stored as the store keeps it on moto), then events one at a time through
   the worker handler: quantity changes, a new subscription, a customer update; then one observation
   three days late (Stripe's last redelivery: the state keeps those seconds) and one twenty days late
   (a catch-up from the Events API: before the state's boundary, the rare path that reads the
   archives, replays the whole history and rewrites what changed: slower, held to the worker's
   timeout). Time per event: the handler's own CPU time (moto's taken out; CPU time, so that what
   else this shared machine runs does not count) at Lambda's vCPU share of the worker's memory
   (template.yaml's MemorySize; one vCPU at 1,769 MB, a share in proportion below), plus 5 ms per
   DynamoDB call (10 a transaction); budget 1 s. And rebuilding a timeline at 100 to 1,000
   subscriptions, against the rule it replaced (the whole record derived again at each second) at
   100 and 400.

Run: ``python -m bench.history`` (part of ``make bench``).
"""

from __future__ import annotations

import calendar
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
if os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
    # The layer as built, ahead of the source tree (the handlers load from the build directory too).
    sys.path.insert(0, str(Path(os.environ["REVSYNC_LOCAL_BUILD_DIR"]) / "RevsyncLayer" / "python"))

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")

from revsync.domain.events import Observation, Source, observation_of, parse_event  # noqa: E402
from revsync.domain.history import HistoryLog, history_entries, mrr_timeline  # noqa: E402
from revsync.domain.history_archive import HistoryUpdate, KeptHistory  # noqa: E402
from revsync.domain.record import derive_record  # noqa: E402
from revsync.domain.snapshots import parse_subscription  # noqa: E402
from revsync.domain.stored_state import StateWrite  # noqa: E402
from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.services.sync import apply_observation  # noqa: E402
from revsync.store import models  # noqa: E402
from revsync.store.customers import CustomerStore  # noqa: E402
from revsync.store.read_models import MrrHistories  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from bench.worker_cost import Meter, item_bytes, metering  # noqa: E402
from local import lambda_runtime, poller  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.aws import DEFAULT_WEBHOOK_SECRET  # noqa: E402
from local.environment import REGION  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from local.template import load_template  # noqa: E402
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants  # noqa: E402
from tests.unit.test_history_replay import reference_timeline  # noqa: E402

DAY = 86_400
YEARS = 5
START = calendar.timegm((2021, 1, 1, 0, 0, 0))
ACCOUNT = "acct_history"
PRICE = S.price(1200, id="price_seat")
FULL_VCPU_MB = 1769  # Lambda gives one vCPU at this memory, a share in proportion below


class Writes(Meter):
    """The worker's requests (``Meter``), and each state item and history archive they write."""

    def __init__(self) -> None:
        super().__init__()
        self.state_bytes: list[int] = []
        self.archives: Counter[str] = Counter()

    def request(self, request: Any, seconds: float) -> None:
        super().request(request, seconds)
        target = request.headers.get("X-Amz-Target", b"")
        name = (target.decode() if isinstance(target, bytes) else str(target)).partition(".")[2]
        body = request.body or b"{}"
        params = json.loads(body.decode() if isinstance(body, bytes) else body)
        if name == "PutItem":
            items = [params["Item"]]
        elif name == "TransactWriteItems":
            items = [entry["Put"]["Item"] for entry in params["TransactItems"] if "Put" in entry]
        else:
            return
        for item in items:
            sort_key = item.get("sk", {}).get("S", "")
            if sort_key == models.STATE_SK:
                self.state_bytes.append(item_bytes(item))
            elif sort_key.startswith(models.HISTORY_ARCHIVE_SK_PREFIX):
                self.archives[sort_key] += 1


def _units(size: int) -> int:
    return math.ceil(size / 1024)


def _memory_mb() -> int:
    return int(load_template()["Resources"]["WorkerFunction"]["Properties"]["MemorySize"])


def _subscription(customer: str, sub_id: str, quantity: int, created: int) -> dict[str, Any]:
    item = {**S.subscription_item(PRICE, quantity=quantity, period_start=created), "id": f"si_{sub_id}"}
    return S.subscription(customer, [item], id=sub_id, created=created, period_start=created)


def _connect(stack: InProcessStack, tenant_id: str) -> Tenant:
    tenant = Tenant(tenant_id, Connection("connected", "oauth", ACCOUNT)).with_config("id")
    TenantStore().save(tenant, START)
    stack.wire("WorkerFunction", stripe=FakeStripe())
    return tenant


def _stored_bytes(tenant_id: str, customer_id: str) -> int:
    response = models.SyncItem._get_connection().get_item(
        models.sync_partition(tenant_id, customer_id), range_key=models.STATE_SK, consistent_read=True
    )
    return item_bytes(response["Item"])


def _previous_format_bytes(tenant_id: str, customer_id: str) -> tuple[int, int]:
    """The state item and its revenue-index entry as the previous format wrote them for the same
    observations: the whole history (and timeline) in the state."""
    store = CustomerStore()
    stored = store.load(tenant_id, customer_id)
    whole = MrrHistories().timeline(tenant_id, customer_id) or ()
    log = stored.history.log
    for chunk in store.history_archive(tenant_id, customer_id):
        log = log.with_entries(
            (e.at, e.source, json.loads(chunk.log.views[e.view])) for e in chunk.log.entries
        )
    item = models.CustomerStateItem(
        models.sync_partition(tenant_id, customer_id),
        models.STATE_SK,
        objects={
            "customer": stored.objects.customer,
            "subscriptions": dict(stored.objects.subscriptions),
            "archived": stored.invoices.archived,
            "invoices": [],
            "history": KeptHistory(log, whole).to_json(),
        },
        external_id=stored.external_id,
        config_version=stored.config_version,
        record_version=stored.record_version,
        tenant_id=tenant_id,
        timeline=json.dumps([list(p) for p in whole], separators=(",", ":")),
    )
    item.version = stored.version
    attributes = item.serialize()
    attributes.update({"pk": {"S": item.pk}, "sk": {"S": item.sk}})
    projected = {k: v for k, v in attributes.items() if k in ("pk", "sk", "tenant_id", "timeline", "kind")}
    return item_bytes(attributes), item_bytes(projected)


def five_years(stack: InProcessStack, rng: random.Random) -> bool:
    _connect(stack, "years")
    customer = S.customer("cus_years", created=START)
    events = [
        S.event("customer.created", customer, created=START, account=ACCOUNT),
        S.event(
            "customer.subscription.created",
            _subscription("cus_years", "sub_years", 10, START),
            created=START + 1,
            account=ACCOUNT,
        ),
    ]
    seats = 10
    for day in range(1, YEARS * 365 + 1):
        seats = max(1, seats + rng.choice([-2, -1, 1, 1, 2]))  # a seat count that moves every day
        updated = _subscription("cus_years", "sub_years", seats, START)
        events.append(
            S.event("customer.subscription.updated", updated, created=START + day * DAY, account=ACCOUNT)
        )
    for event in events:
        assert stack.post_webhook(event, DEFAULT_WEBHOOK_SECRET, via="url").status == 200
    meter = Writes()
    with metering(meter):
        stats = stack.drain(max_batches=10_000)
    assert stats.succeeded == len(events), stats
    end_bytes = _stored_bytes("years", "cus_years")
    largest = max(meter.state_bytes)
    previous, previous_index = _previous_format_bytes("years", "cus_years")
    store = CustomerStore()
    archived = store.load("years", "cus_years").history.archived
    once = set(meter.archives.values()) == {1} and len(meter.archives) == archived
    whole = MrrHistories().timeline("years", "cus_years") or ()
    per_event = ", ".join(f"{kind} {units / len(events):.2f}" for kind, units in meter.wru.most_common())
    print(
        f"five years of daily quantity changes: {len(events):,} events through the worker, "
        f"{len(whole):,} MRR changes"
    )
    print(
        f"  state item: {end_bytes:,} bytes at the end, {largest:,} at its largest: {_units(largest)} write "
        f"unit(s) per state write (budget 2); {archived} history archives, each written "
        f"{'once' if once else 'MORE THAN ONCE'} ({sum(meter.archives.values())} archive writes)"
    )
    print(f"  write units per event: {per_event}; {sum(meter.wru.values()) / len(events):.2f} in all")
    print(
        f"  the previous format (the whole history in the state): {previous:,} bytes, {_units(previous)} "
        f"write units per state write, {_units(previous_index)} per revenue-index write"
    )
    return _units(largest) <= 2 and once


def _seeded(tenant: Tenant, customer_id: str, count: int, first: int) -> int:
    """``count`` subscriptions created an hour apart, applied through the write path in memory, then
    stored as the store keeps them (history archives included) with the record they give."""
    fake, tenants, stripe = FakeCustomers(), FakeTenants({tenant.tenant_id: tenant}), FakeStripe()
    customer = S.customer(customer_id, created=first)
    raw_events = [S.event("customer.created", customer, created=first, account=ACCOUNT)]
    for index in range(count):
        created = first + (index + 1) * 3_600
        sub = _subscription(customer_id, f"sub_{index:05d}", 1 + index % 5, created)
        raw_events.append(S.event("customer.subscription.created", sub, created=created, account=ACCOUNT))
    for raw in raw_events:
        observation = observation_of(parse_event(json.dumps(raw).encode()))
        assert observation is not None
        apply_observation(tenant.tenant_id, observation, tenants=tenants, customers=fake, stripe=stripe)
    kept = fake.states[(tenant.tenant_id, customer_id)]
    chunks = tuple(fake.history_archive(tenant.tenant_id, customer_id))
    store = CustomerStore()
    empty = store.load(tenant.tenant_id, customer_id)
    version = store.save(
        StateWrite(
            tenant.tenant_id,
            empty,
            kept.objects,
            None,
            customer_id,
            tenant.config_version,
            history=HistoryUpdate(kept.history, chunks),
        )
    )
    store.project(derive_record(tenant.tenant_id, kept.objects, "id"), version, None, repair=False)
    return first + (count + 1) * 3_600


def _timed_event(stack: InProcessStack, event: dict[str, Any], memory: int) -> tuple[float, Meter]:
    """One event through the receiver and the worker, alone in its batch: the worker's time."""
    assert stack.post_webhook(event, DEFAULT_WEBHOOK_SECRET, via="url").status == 200
    # The collector leaves what exists already alone (moto's tables above all): a Lambda's heap holds
    # the worker's own objects only, and this measures their collection, not moto's.
    gc.collect()
    gc.freeze()
    meter = Meter()
    own: list[float] = []

    def invoke(batch: dict[str, Any]) -> dict[str, Any]:
        # CPU time (this thread's, moto's taken out): what the handler's code needs, whatever else
        # this shared machine runs meanwhile.
        waited, modeled = meter.waited_cpu, meter.modeled
        started = time.thread_time()
        result = lambda_runtime.invoke("WorkerFunction", batch)
        code = time.thread_time() - started - (meter.waited_cpu - waited)
        own.append(code * max(1.0, FULL_VCPU_MB / memory) + (meter.modeled - modeled))
        return result

    with metering(meter):
        stats = poller.drain(stack.client("sqs"), stack.queue_url("EventsQueue"), invoke, REGION)
    assert stats.succeeded == 1, stats
    return sum(own), meter


def many_subscriptions(stack: InProcessStack, rng: random.Random, count: int = 1_000) -> bool:
    tenant = _connect(stack, "many")
    first = START
    now = _seeded(tenant, "cus_many", count, first)
    memory = _memory_mb()
    store = CustomerStore()
    boundary = store.load("many", "cus_many").history.boundary
    regular: list[float] = []
    meters: list[Meter] = []
    for step in range(12):
        now += DAY
        if step == 5:
            event = S.event(
                "customer.subscription.created",
                _subscription("cus_many", "sub_new", 3, now),
                created=now,
                account=ACCOUNT,
            )
        elif step == 8:
            renamed = S.customer("cus_many", name="Many Seats Ltd", created=first)
            event = S.event("customer.updated", renamed, created=now, account=ACCOUNT)
        else:
            index = rng.randrange(count)
            changed = _subscription("cus_many", f"sub_{index:05d}", 6 + step, first + (index + 1) * 3_600)
            event = S.event("customer.subscription.updated", changed, created=now, account=ACCOUNT)
        seconds, meter = _timed_event(stack, event, memory)
        regular.append(seconds)
        meters.append(meter)
    boundary = store.load("many", "cus_many").history.boundary
    assert boundary is not None
    late: list[tuple[str, float, Meter]] = []
    # Stripe's last redelivery (3 days: the state keeps them), then one found by a catch-up from the
    # Events API 20 days on (before the boundary: the rare path).
    for days, why in ((3, "3 days late (Stripe's last redelivery)"), (20, "20 days late (a catch-up)")):
        index = rng.randrange(count)
        late_sub = _subscription("cus_many", f"sub_{index:05d}", 40 + days, first + (index + 1) * 3_600)
        created = now - days * DAY
        event = S.event("customer.subscription.updated", late_sub, created=created, account=ACCOUNT)
        before = created < (store.load("many", "cus_many").history.boundary or 0)
        seconds, meter = _timed_event(stack, event, memory)
        path = "before the state's boundary" if before else "within the state's seconds"
        late.append((f"{why}, {path}", seconds, meter))
    stored = store.load("many", "cus_many")
    state_bytes = _stored_bytes("many", "cus_many")
    reads = statistics.mean(sum(m.counts[n] for n in ("GetItem", "Query")) for m in meters)
    wru = statistics.mean(sum(m.wru.values()) for m in meters)
    print(
        f"a customer with {count:,} subscriptions ({stored.history.archived} history archives, state "
        f"{state_bytes / 1024:,.0f} KB): worker time per event at {memory} MB's vCPU share "
        f"(x{FULL_VCPU_MB / memory:.2f} this machine's core, CPU time) with 5 ms a DynamoDB call"
    )
    print(
        f"  {len(regular)} events (quantity changes, a new subscription, a customer update): median "
        f"{statistics.median(regular) * 1000:.0f} ms, largest {max(regular) * 1000:.0f} ms "
        "(budget 1,000 ms); "
        f"{reads:.1f} reads and {wru:.0f} write units an event (state and record items of that size)"
    )
    timeout = float(load_template()["Resources"]["WorkerFunction"]["Properties"]["Timeout"])
    for why, seconds, meter in late:
        reads = sum(meter.counts[n] for n in ("GetItem", "Query"))
        print(
            f"  one observation {why}: {seconds * 1000:,.0f} ms, {reads} reads, "
            f"{meter.counts['TransactWriteItems']} transaction(s) writing archives"
        )
    print(f"  (the rare path, before the boundary, against the worker's {timeout:.0f} s timeout)")
    rare = max(seconds for _, seconds, _ in late)
    return max(regular) <= 1.0 and late[0][1] <= 1.0 and rare < timeout


def _observations(count: int) -> list[Observation]:
    found = []
    for index in range(count):
        at = START + index * 60
        for quantity, when in ((1, at), (2, at + 30 * DAY)):
            raw = _subscription("cus_1", f"sub_{index:05d}", quantity, START)
            source: Source = "created" if quantity == 1 else "updated"
            found.append(
                Observation(snapshot=parse_subscription(raw), observed_at=when, source=source, event_id=None)
            )
    return found


def rebuilds() -> None:
    """The whole timeline rebuilt from a customer's kept observations (each subscription created,
    then changed a month later)."""
    now, before = [], []
    for count in (100, 400, 800, 1_000):
        log = HistoryLog().with_entries(e for o in _observations(count) for e in history_entries(o))
        observations = log.observations()
        started = time.perf_counter()
        timeline = mrr_timeline("cus_1", observations)
        now.append(f"{count:,}: {(time.perf_counter() - started) * 1000:.0f} ms")
        if count <= 400:
            started = time.perf_counter()
            assert reference_timeline(observations) == timeline
            before.append(f"{count:,}: {(time.perf_counter() - started) * 1000:.0f} ms")
    print(f"  rebuilding a timeline (subscriptions: time on this machine): {', '.join(now)}")
    print(f"  the rule it replaced (the record derived again at each second): {', '.join(before)}")


def main() -> int:
    if BUILD.exists() and not os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
        # Measure what ships: again, with the handlers and the layer from the build directory.
        environment = {**os.environ, "REVSYNC_LOCAL_BUILD_DIR": str(BUILD)}
        return subprocess.run(
            [sys.executable, "-m", "bench.history"], env=environment, check=False
        ).returncode
    rng = random.Random(23)
    source = (
        "as built (.aws-sam/build)" if os.environ.get("REVSYNC_LOCAL_BUILD_DIR") else "from the source tree"
    )
    print(f"MRR history, {source}")
    with InProcessStack(clock=lambda: START + 2_000 * DAY) as stack:
        small = five_years(stack, rng)
    with InProcessStack(clock=lambda: START + 2_000 * DAY) as stack:
        fast = many_subscriptions(stack, rng)
    rebuilds()
    return 0 if small and fast else 1


if __name__ == "__main__":
    sys.exit(main())
