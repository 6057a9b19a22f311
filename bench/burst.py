"""A burst: one tenant's webhooks at 1,000 events a second for 60 s, through the real receiver and
worker handlers on in-process moto, in modelled time, with the template's settings.

A discrete-event simulation plays what is not code of ours: Stripe sending the burst on its
schedule, the SQS FIFO events queue (message groups, one batch in flight per group, a group held
while any of its messages is in flight, per-group deduplication for five minutes, the redrive after
``QueueRedriveReceiveCount`` receives, the visibility timeout) and Lambda's event source mapping
(batches of the template's ``BatchSize``, at most one invocation per available group: Lambda scales
a FIFO queue to its active message groups, up to 1,000). The receiver and worker run for real, in
the simulation's order: the receiver's ``SendMessage`` and the worker's ``ChangeMessageVisibility``
on the events queue go to the simulated queue, every other AWS call to moto. Each invocation takes
the handler's own measured time (moto's taken out; on this machine's full core, the fastest a
worker can go, so the most write units it can drive) plus a latency per AWS call (DynamoDB 5 ms, a
transaction 10 ms, SQS 8 ms, EventBridge 15 ms) plus the event source mapping's receive and delete;
each call happens at its point in that modelled time.

DynamoDB's partition limit is modelled: a write that would take a partition past 1,000 write units
in its second is throttled (ProvisionedThroughputExceededException at the boto3 boundary, what the
SDK gives up with), the index's partition included (a base-table write whose index write is
throttled is throttled). Write units are billed by DynamoDB's item-size rules (bench.worker_cost).

Prints events sent, applied, parked and lost (every customer's final record checked against what
its events say), the drain time, and the peak write units a second on the tenant's customers-table
partition and on its revenue-index partition, against 1,000. ``run_burst`` returns them as a
``BurstReport`` (bench/platform.py calls it). Run: ``python -m bench.burst`` (``--groups N`` to try
another TenantMessageGroups, e.g. 100000 for a group per customer as before it).
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import math
import os
import random
import subprocess
import sys
import time
import warnings
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
if os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
    # The layer as built, ahead of the source tree (the handlers load from the build directory too).
    sys.path.insert(0, str(Path(os.environ["REVSYNC_LOCAL_BUILD_DIR"]) / "RevsyncLayer" / "python"))

os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")

from botocore.client import BaseClient  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.store.read_models import CustomerRecords  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from bench.worker_cost import LATENCY_SECONDS, item_bytes, updated_item_bytes  # noqa: E402
from local import lambda_runtime  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.aws import DEFAULT_WEBHOOK_SECRET  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from local.template import load_template  # noqa: E402
from tests.fakes import FakeStripe  # noqa: E402

TENANT, ACCOUNT = "burst", "acct_burst"
PARTITION_WRITE_UNITS = 1_000  # DynamoDB's limit per partition (a partition key value) per second
DEDUPLICATION_SECONDS = 300  # SQS FIFO's deduplication interval
MAX_CONCURRENT_BATCHES = 1_000  # an SQS event source mapping's, and an account's default concurrency
EPOCH = 1_800_000_000  # the simulation's time 0, as Unix seconds
EVENTS_PER_CUSTOMER = 4  # sign-up, subscription, first payment, an upgrade


@dataclass
class BurstReport:
    rate: int
    seconds: int
    groups_per_tenant: int
    batch_size: int
    sent: int
    retries_sent: int
    retries_deduplicated: int
    applied: int
    parked: int
    lost: int  # neither applied nor parked
    customers: int
    wrong_records: int  # customers whose final record is not what their events say
    drain_seconds: float
    peak_record_units: float
    peak_index_units: float
    throttled_writes: int
    deferred: int
    peak_concurrency: int
    worker_events_per_second: float
    record_units_per_event: float
    index_units_per_event: float
    code_ms_per_event: float
    wall_seconds: float

    def lines(self) -> list[str]:
        ok = self.applied == self.sent and self.parked == 0 and self.lost == 0 and self.wrong_records == 0
        limit = PARTITION_WRITE_UNITS
        return [
            f"burst: {self.rate:,} events/s for one tenant for {self.seconds} s, "
            f"TenantMessageGroups {self.groups_per_tenant}, batches of {self.batch_size} "
            f"(modelled time; {self.wall_seconds:.0f} s on this machine)",
            f"  events sent {self.sent:,} (+{self.retries_sent} Stripe retries, "
            f"{self.retries_deduplicated} dropped by the queue's per-group deduplication), "
            f"applied {self.applied:,}, parked {self.parked}, lost {self.lost}; records of "
            f"{self.customers:,} customers checked, {self.wrong_records} wrong"
            + ("" if ok else "  << FAILED"),
            f"  drained {self.drain_seconds:.0f} s after the burst began "
            f"({self.drain_seconds - self.seconds:.0f} s after its last event); "
            f"at most {self.peak_concurrency} worker batches at once, "
            f"{self.worker_events_per_second:.0f} events/s each ({self.code_ms_per_event:.1f} ms of code "
            "an event, full core)",
            f"  peak write units/s on the tenant's partitions: customers table "
            f"{self.peak_record_units:,.0f} / {limit:,} ({self.peak_record_units / limit:.2f}), "
            f"revenue index {self.peak_index_units:,.0f} / {limit:,} ({self.peak_index_units / limit:.2f}); "
            "per applied event "
            f"{self.record_units_per_event:.2f} record and {self.index_units_per_event:.2f} index units",
            f"  throttled writes {self.throttled_writes}, messages deferred {self.deferred}",
        ]


@dataclass
class Message:
    id: str
    body: str
    group: str
    deduplication_id: str
    sent_at: float
    receive_count: int = 0
    hidden_until: float | None = None  # set by ChangeMessageVisibility while in flight


@dataclass
class Group:
    messages: deque[Message] = field(default_factory=deque)
    held_until: float = 0.0  # a message of the group is in flight until then
    running: bool = False  # in a batch being processed


@dataclass
class Invocation:
    """Where a handler invocation is in modelled time while its code runs."""

    started: float  # modelled
    wall_started: float
    service_wall: float = 0.0  # wall time spent in moto and botocore (replaced by modelled latency)
    latency: float = 0.0  # modelled latency of its AWS calls so far

    def now(self) -> float:
        code = time.perf_counter() - self.wall_started - self.service_wall
        return self.started + code + self.latency

    def code_seconds(self) -> float:
        return time.perf_counter() - self.wall_started - self.service_wall


class FifoQueue:
    """The events queue as SQS FIFO keeps it, driven by the simulation's clock."""

    def __init__(self, redrive_receive_count: int, visibility_timeout: float) -> None:
        self.groups: dict[str, Group] = defaultdict(Group)
        self.ready: list[tuple[float, int, str]] = []  # (head sent at, tiebreak, group)
        self.accepted: dict[tuple[str, str], float] = {}
        self.redrive_receive_count = redrive_receive_count
        self.visibility_timeout = visibility_timeout
        self.by_receipt: dict[str, Message] = {}
        self.redriven: list[Message] = []
        self.deduplicated = 0
        self._ids = itertools.count()

    def send(self, body: str, group: str, deduplication_id: str, now: float) -> str:
        key = (group, deduplication_id)
        if now - self.accepted.get(key, -math.inf) < DEDUPLICATION_SECONDS:
            self.deduplicated += 1  # accepted, not delivered
            return f"dup-{next(self._ids)}"
        self.accepted[key] = now
        message = Message(f"m{next(self._ids)}", body, group, deduplication_id, now)
        state = self.groups[group]
        state.messages.append(message)
        if len(state.messages) == 1:
            self._offer(group, now)
        return message.id

    def _offer(self, group: str, now: float) -> None:
        state = self.groups[group]
        if state.messages and not state.running and state.held_until <= now:
            heapq.heappush(self.ready, (state.messages[0].sent_at, next(self._ids), group))

    def release(self, group: str, now: float) -> None:
        self._offer(group, now)

    def receive(self, batch_size: int, now: float) -> list[Message]:
        """A batch: as many messages of the oldest available group as it has, then other groups'."""
        batch: list[Message] = []
        while self.ready and len(batch) < batch_size:
            _, _, group = heapq.heappop(self.ready)
            state = self.groups[group]
            if state.running or state.held_until > now or not state.messages:
                continue  # a stale offer
            taken = 0
            for message in list(state.messages)[: batch_size - len(batch)]:
                if message.receive_count >= self.redrive_receive_count:
                    state.messages.remove(message)  # SQS moves it to the dead-letter queue
                    self.redriven.append(message)
                    continue
                message.receive_count += 1
                self.by_receipt[message.id] = message
                batch.append(message)
                taken += 1
            if taken:
                state.running = True
            else:
                self._offer(group, now)
        return batch

    def hide(self, receipt: str, seconds: float, now: float) -> None:
        self.by_receipt[receipt].hidden_until = now + seconds

    def finish(self, batch: list[Message], failed: set[str], received_at: float, now: float) -> set[str]:
        """The event source mapping deletes what succeeded; the rest stays in flight until its
        visibility ends (a deferral's own, else the queue's timeout from the receive)."""
        groups: set[str] = set()
        for message in batch:
            state = self.groups[message.group]
            groups.add(message.group)
            if message.id in failed:
                hidden = message.hidden_until
                visible_at = hidden if hidden is not None else received_at + self.visibility_timeout
                state.held_until = max(state.held_until, visible_at)
            else:
                state.messages.remove(message)
            message.hidden_until = None
            del self.by_receipt[message.id]
        for group in groups:
            self.groups[group].running = False
        return groups

    def empty(self) -> bool:
        return not any(state.messages for state in self.groups.values())


class Partitions:
    """Write units per second on the tenant's hot partitions, and DynamoDB's limit on them."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.units: dict[str, Counter[int]] = {"record": Counter(), "index": Counter()}
        self.throttled = 0
        self.index_entries: dict[tuple[str, str], tuple[str, str]] = {}

    def charge(self, operation: str, params: dict[str, Any], now: float) -> Callable[[], None]:
        """Count a write's units on the tenant's partitions (a failed conditional write is billed too),
        or raise as DynamoDB throttles it; the index entry moves when the write succeeds (returned)."""
        table = str(params.get("TableName", ""))
        second = int(now)
        record = index = 0
        entry_key: tuple[str, str] | None = None
        entry: tuple[str, str] | None = None
        if "customers" in table and operation in ("PutItem", "UpdateItem", "DeleteItem"):
            size = item_bytes(params["Item"]) if operation == "PutItem" else updated_item_bytes(params)
            record = max(1, math.ceil(size / 1024))
        elif "sync" in table and operation == "PutItem":
            item = params["Item"]
            entry_key = (item["pk"]["S"], item["sk"]["S"])
            entry = (item["tenant_id"]["S"], item["timeline"]["S"]) if "tenant_id" in item else None
            if entry != self.index_entries.get(entry_key):
                projected = {n: item[n] for n in ("pk", "sk", "tenant_id", "timeline", "kind") if n in item}
                index = math.ceil(item_bytes(projected) / 1024)
        if (record and self.units["record"][second] + record > self.limit) or (
            index and self.units["index"][second] + index > self.limit
        ):
            self.throttled += 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "modelled"}},
                operation,
            )
        self.units["record"][second] += record
        self.units["index"][second] += index

        def written() -> None:
            if entry_key is not None and index:
                if entry is None:
                    self.index_entries.pop(entry_key, None)
                else:
                    self.index_entries[entry_key] = entry

        return written

    def peak(self, kind: str) -> float:
        return max(self.units[kind].values(), default=0)

    def total(self, kind: str) -> float:
        return sum(self.units[kind].values())


def burst_events(
    rate: int, seconds: int, rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
    """The burst in Stripe's order, and each customer's expected (mrr, total_paid)."""
    customers = rate * seconds // EVENTS_PER_CUSTOMER
    per_step: list[list[dict[str, Any]]] = [[] for _ in range(EVENTS_PER_CUSTOMER)]
    expected: dict[str, tuple[int, int]] = {}
    spacing = seconds / EVENTS_PER_CUSTOMER  # a customer's events, this far apart
    for index in range(customers):
        at = EPOCH + int(index / rate)
        customer_id, external_id = f"cus_b{index:06d}", f"u-{index}"
        amount, quantity = 1000 + 100 * rng.randrange(40), 1 + rng.randrange(4)
        price = S.price(amount, id=f"price_b{amount}")
        customer = S.customer(
            customer_id, email=f"b{index}@example.com", metadata={"app_id": external_id}, created=at
        )
        item = {
            **S.subscription_item(price, period_start=at, period_end=at + 30 * 86_400),
            "id": f"si_b{index}",
        }
        sub = S.subscription(customer_id, [item], id=f"sub_b{index}", status="active", created=at)
        invoice = S.invoice(customer_id, sub["id"], amount_paid=amount, paid_at=at, id=f"in_b{index}")
        upgraded = {**sub, "items": {**sub["items"], "data": [{**item, "quantity": quantity}]}}
        steps = [
            ("customer.created", customer),
            ("customer.subscription.created", sub),
            ("invoice.paid", invoice),
            ("customer.subscription.updated", upgraded),
        ]
        for step, (kind, obj) in enumerate(steps):
            created = at + int(step * spacing)
            per_step[step].append(
                S.event(kind, obj, created=created, account=ACCOUNT, id=f"evt_b{index}_{step}")
            )
        expected[external_id] = (amount * quantity, amount)
    return [event for step in per_step for event in step], expected


class Burst:
    def __init__(
        self, stack: InProcessStack, queue: FifoQueue, partitions: Partitions, batch_size: int
    ) -> None:
        self.stack, self.queue, self.partitions, self.batch_size = stack, queue, partitions, batch_size
        self.events_url = stack.queue_url("EventsQueue")
        self.invocation: Invocation | None = None
        self.timeline: list[tuple[float, int, str, Any]] = []
        self._tiebreak = itertools.count()
        self.running = 0
        self.peak_running = 0
        self.applied = 0
        self.deferred = 0
        self.worker_code = 0.0
        self.worker_busy = 0.0
        self.worker_events = 0
        self.last_done = 0.0

    # --- the boto3 boundary -------------------------------------------------------------------

    @contextmanager
    def boundary(self) -> Iterator[None]:
        real_call = BaseClient._make_api_call  # type: ignore[attr-defined]  # botocore defines it at runtime
        burst = self

        def call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            invocation = burst.invocation
            if invocation is None:
                return real_call(client, operation, params)
            service = client.meta.service_model.service_name
            latency = LATENCY_SECONDS.get(operation, LATENCY_SECONDS.get(service, 0.008))
            at = invocation.now() + latency
            invocation.latency += latency
            if service == "sqs" and params.get("QueueUrl") == burst.events_url:
                if operation == "SendMessage":
                    message_id = burst.queue.send(
                        params["MessageBody"], params["MessageGroupId"], params["MessageDeduplicationId"], at
                    )
                    return {"MessageId": message_id}
                if operation == "ChangeMessageVisibility":
                    burst.queue.hide(params["ReceiptHandle"], float(params["VisibilityTimeout"]), at)
                    return {}
            written = burst.partitions.charge(operation, params, at) if service == "dynamodb" else None
            started = time.perf_counter()
            try:
                response = real_call(client, operation, params)
            finally:
                invocation.service_wall += time.perf_counter() - started
            if written is not None:
                written()
            return response

        BaseClient._make_api_call = call  # type: ignore[attr-defined]
        try:
            yield
        finally:
            BaseClient._make_api_call = real_call  # type: ignore[attr-defined]

    @contextmanager
    def invoked(self, at: float) -> Iterator[Invocation]:
        self.invocation = Invocation(at, time.perf_counter())
        try:
            yield self.invocation
        finally:
            self.invocation = None

    # --- the simulation ---------------------------------------------------------------------

    def schedule(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.timeline, (at, next(self._tiebreak), kind, payload))

    def deliver(self, event: dict[str, Any], at: float) -> None:
        """Stripe delivers, and retries until the receiver answers 2xx."""
        with self.invoked(at):
            response = self.stack.post_webhook(event, DEFAULT_WEBHOOK_SECRET, via="url")
        if response.status != 200:
            self.schedule(at + 1.0, "deliver", event)

    def dispatch(self, now: float) -> None:
        """The event source mapping: a batch for each available group, up to its concurrency."""
        while self.running < MAX_CONCURRENT_BATCHES:
            batch = self.queue.receive(self.batch_size, now)
            if not batch:
                return
            receive = LATENCY_SECONDS["sqs"]
            with self.invoked(now + receive) as invocation:
                records = {"Records": [self._record(m) for m in batch]}
                try:
                    result = lambda_runtime.invoke("WorkerFunction", records)
                    failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
                except Exception:  # a failed invocation: Lambda retries the whole batch
                    failed = {m.id for m in batch}
                done = invocation.now()
                self.worker_code += invocation.code_seconds()
            self.deferred += sum(1 for m in batch if m.id in failed and m.hidden_until is not None)
            self.applied += len(batch) - len(failed)
            self.worker_events += len(batch)
            finished = done + LATENCY_SECONDS["sqs"]  # the event source mapping deletes what succeeded
            self.worker_busy += finished - now
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            self.schedule(finished, "finish", (batch, failed, now))

    def finish(self, batch: list[Message], failed: set[str], received_at: float, now: float) -> None:
        self.running -= 1
        self.last_done = max(self.last_done, now)
        for group in self.queue.finish(batch, failed, received_at, now):
            held = self.queue.groups[group].held_until
            if held > now:
                self.schedule(held, "visible", group)
            else:
                self.queue.release(group, now)

    def _record(self, message: Message) -> dict[str, Any]:
        return {
            "messageId": message.id,
            "receiptHandle": message.id,
            "body": message.body,
            "attributes": {
                "ApproximateReceiveCount": str(message.receive_count),
                "SentTimestamp": str(int((EPOCH + message.sent_at) * 1000)),
                "SenderId": "burst",
                "ApproximateFirstReceiveTimestamp": "0",
                "MessageGroupId": message.group,
                "MessageDeduplicationId": message.deduplication_id,
                "SequenceNumber": message.id[1:],
            },
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(message.body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events.fifo",
            "awsRegion": "us-east-1",
        }

    def run(self, arrivals: list[tuple[float, dict[str, Any]]]) -> float:
        for at, event in arrivals:
            self.schedule(at, "deliver", event)
        while self.timeline:
            now, _, kind, payload = heapq.heappop(self.timeline)
            if kind == "deliver":
                self.deliver(payload, now)
            elif kind == "finish":
                batch, failed, received_at = payload
                self.finish(batch, failed, received_at, now)
            elif kind == "visible":
                self.queue.release(payload, now)
            self.dispatch(now)
        return self.last_done


def _template_settings() -> tuple[int, int, int, float]:
    template = load_template()
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    batch_size = int(worker["Events"]["Events"]["Properties"]["BatchSize"])
    groups = int(template["Parameters"]["TenantMessageGroups"]["Default"])
    redrive = int(template["Parameters"]["QueueRedriveReceiveCount"]["Default"])
    visibility = float(template["Resources"]["EventsQueue"]["Properties"]["VisibilityTimeout"])
    return batch_size, groups, redrive, visibility


def run_burst(
    rate: int = 1_000,
    seconds: int = 60,
    groups_per_tenant: int | None = None,
    retry_ratio: float = 0.01,
    seed: int = 7,
    progress: Callable[[str], None] | None = None,
) -> BurstReport:
    """The burst through the real receiver and worker (see the module docstring)."""
    wall_started = time.perf_counter()
    batch_size, template_groups, redrive, visibility = _template_settings()
    groups = groups_per_tenant or template_groups
    rng = random.Random(seed)
    events, expected = burst_events(rate, seconds, rng)
    arrivals = [(index / rate, event) for index, event in enumerate(events)]
    # Stripe's retries of some deliveries (a timeout on its side), a few seconds later.
    retries = [
        (at + 1 + 4 * rng.random(), event)
        for at, event in rng.sample(arrivals, int(len(events) * retry_ratio))
    ]
    queue, partitions = FifoQueue(redrive, visibility), Partitions(PARTITION_WRITE_UNITS)
    with InProcessStack(clock=lambda: EPOCH) as stack:
        # What the template passes the receiver: its cold start again with the variable set.
        stack.wire("WebhookFunction", {"TENANT_MESSAGE_GROUPS": str(groups)})
        # The local stack's copy of the change feed to a queue of its own is not deployed: without
        # it, moto's PutEvents is a write to the bus, as in AWS.
        stack.without_change_feed_tap()
        TenantStore().save(
            Tenant(TENANT, Connection("connected", "oauth", ACCOUNT)).with_config("metadata.app_id"), EPOCH
        )
        stack.wire("WorkerFunction", stripe=FakeStripe())
        burst = Burst(stack, queue, partitions, batch_size)
        stack.clock = lambda: EPOCH + (burst.invocation.now() if burst.invocation else 0.0)
        with burst.boundary():
            drained = burst.run(sorted(arrivals + retries, key=lambda pair: pair[0]))
        if progress:
            progress(f"simulated in {time.perf_counter() - wall_started:.0f} s; checking records")
        records, wrong = CustomerRecords(), 0
        for external_id, (mrr, total_paid) in expected.items():
            record = records.get_record(TENANT, external_id)
            if record is None or (record["mrr"], record["total_paid"]) != (mrr, total_paid):
                wrong += 1
        dead_letters = stack.queue_depth("EventsDeadLetterQueue")
    applied = burst.applied - dead_letters  # the worker parks a message by sending it on, then deleting it
    parked = dead_letters + len(queue.redriven)
    return BurstReport(
        rate=rate,
        seconds=seconds,
        groups_per_tenant=groups,
        batch_size=batch_size,
        sent=len(events),
        retries_sent=len(retries),
        retries_deduplicated=queue.deduplicated,
        applied=applied,
        parked=parked,
        lost=len(events) - applied - parked,
        customers=len(expected),
        wrong_records=wrong,
        drain_seconds=drained,
        peak_record_units=partitions.peak("record"),
        peak_index_units=partitions.peak("index"),
        throttled_writes=partitions.throttled,
        deferred=burst.deferred,
        peak_concurrency=burst.peak_running,
        worker_events_per_second=burst.worker_events / burst.worker_busy if burst.worker_busy else 0.0,
        record_units_per_event=partitions.total("record") / max(1, applied),
        index_units_per_event=partitions.total("index") / max(1, applied),
        code_ms_per_event=burst.worker_code * 1000 / max(1, burst.worker_events),
        wall_seconds=time.perf_counter() - wall_started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument(
        "--groups", type=int, default=None, help="TenantMessageGroups (default: the template's)"
    )
    args = parser.parse_args(argv)
    if BUILD.exists() and not os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
        # Measure what ships: again, with the handlers and the layer from the build directory.
        environment = {**os.environ, "REVSYNC_LOCAL_BUILD_DIR": str(BUILD)}
        return subprocess.run(
            [sys.executable, "-m", "bench.burst", *(argv or sys.argv[1:])], env=environment, check=False
        ).returncode
    report = run_burst(
        args.rate, args.seconds, args.groups, progress=lambda line: print(f"  ({line})", flush=True)
    )
    for line in report.lines():
        print(line)
    within = (
        report.peak_record_units <= PARTITION_WRITE_UNITS and report.peak_index_units <= PARTITION_WRITE_UNITS
    )
    ok = report.applied == report.sent and report.parked == 0 and report.lost == 0 and within
    ok = ok and report.wrong_records == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
