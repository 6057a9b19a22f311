"""Per-event cost of the webhook path, as built and as the template deploys it.

A realistic month of events for 300 customers (sign-ups, trials converting, renewals paid with both
invoice events, upgrades, some cancellations and deletions, some payments past due for two days and
cancellations scheduled at the period's end, 10% redelivered, shuffled within each day) goes through
the receiver and worker handlers on in-process moto, entering where Stripe is told to send them (the
template's ConnectWebhookUrl: the receiver's function URL, no API Gateway charge; the HTTP API's
route is priced too). When `sam build` has run
(`make bench` builds first), the handlers and the layer are the ones in `.aws-sam/build`.

- DynamoDB: every request the handlers make, with its capacity units from the item sizes by
  DynamoDB's rules (names + values; a write per KB of the larger of old and new item, a
  transactional write twice; a strongly consistent read per 4 KB), and every index's writes (the
  sync table's revenue index, the customers table's risk indexes, as the stack creates them): one
  per KB of the entry when an item enters, leaves or changes in an index, two when its index key
  changes (a delete and a put), none when its entry stays the same, from each item as moto holds it
  after the write.
- Lambda durations: the handler code's own time, measured (the time spent waiting on moto taken
  out), plus a service latency per AWS call (DynamoDB 5 ms, a transaction 10 ms, SQS 8 ms,
  EventBridge 15 ms); memory sizes from template.yaml.
- The change feed: PutEvents entries; CloudWatch Logs: the bytes the handlers log, plus Lambda's own
  START/END/REPORT lines per invocation unless the template's LoggingConfig drops them.
- The revenue rollup: the sync table's stream (free to read) through its handler afterwards, in the
  template's batches: its invocations, durations and transactions (the trickle line prices each
  MRR change as a transaction of its own, with its shard's position).

Prints one summary: per applied event against the worker budget (at most 2 writes, 1.5 write units,
2 reads, 0.05 Stripe calls) and the cost at on-demand list prices (budget $3.50 per million). The
queue is drained once every event is sent, so the worker gets full batches of 10, as in a burst; the
last line prices a trickle, where each event is a batch of its own (a FIFO event source mapping has
no batching window), and what the code would add if it ran at Lambda's share of a vCPU (one at
1,769 MB, in proportion below) rather than on this machine's full core, where it is measured.
Run: `make bench` (or `python -m bench.worker_cost`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
if os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
    # The layer as built, ahead of the source tree (the handlers load from the build directory too).
    sys.path.insert(0, str(Path(os.environ["REVSYNC_LOCAL_BUILD_DIR"]) / "RevsyncLayer" / "python"))

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")


from moto.core.botocore_stubber import BotocoreStubber  # noqa: E402
from moto.dynamodb.models import dynamodb_backends  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402
from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402

from local import lambda_runtime  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.aws import DEFAULT_WEBHOOK_SECRET  # noqa: E402
from local.environment import REGION  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from local.template import ACCOUNT_ID, function_urls, load_template  # noqa: E402
from tests.fakes import FakeStripe  # noqa: E402

DAY = 86_400
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
READS = {"GetItem", "Query"}
# Service latency added per call to the handler's own measured time.
LATENCY_SECONDS = {"dynamodb": 0.005, "TransactWriteItems": 0.010, "sqs": 0.008, "events": 0.015}
# Lambda's START, END and REPORT lines per invocation: sent unless the function's LoggingConfig
# keeps only WARN system logs.
PLATFORM_LOG_BYTES = 330
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
    "putevents": 1.00e-6,
}


def events_for(customers: int, now: int, rng: random.Random) -> list[dict[str, Any]]:
    start, events = now - 40 * DAY, []
    price = S.price(4900, id="price_pro")
    # Customers at risk, drawn apart so the rest of the month is drawn as it always was.
    at_risk = random.Random(11)
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
        risk = at_risk.random()
        if (
            risk < 0.06 and fate >= 0.15
        ):  # a payment past due for two days (the customer enters and leaves dunning)
            for status, at in (("past_due", renewal + 2 * DAY), ("active", renewal + 4 * DAY)):
                events.append(
                    S.event(
                        "customer.subscription.updated",
                        {**renewed, "status": status},
                        created=at,
                        account="acct_bench",
                    )
                )
        elif risk < 0.10 and fate >= 0.17:  # a cancellation scheduled at the period's end, still pending
            scheduled = {**renewed, "cancel_at_period_end": True, "canceled_at": renewal + 3 * DAY}
            events.append(
                S.event(
                    "customer.subscription.updated",
                    scheduled,
                    created=renewal + 3 * DAY,
                    account="acct_bench",
                )
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


def attribute_bytes(value: dict[str, Any]) -> int:
    """An attribute value's size as DynamoDB bills it."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = Decimal(inner).normalize().as_tuple().digits
        return len(digits) // 2 + 2
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_bytes(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_bytes(v) + 1 for v in inner)
    if kind in ("SS", "NS", "BS"):
        return sum(len(str(v)) for v in inner)
    raise ValueError(kind)


def item_bytes(attributes: dict[str, dict[str, Any]]) -> int:
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in attributes.items())


def updated_item_bytes(update: dict[str, Any]) -> int:
    """An update that SETs (or ADDs) every attribute it keeps: the key plus the values it writes."""
    names = update.get("ExpressionAttributeNames", {})
    values = update.get("ExpressionAttributeValues", {})
    return (
        item_bytes(update["Key"])
        + sum(len(n.encode()) for n in names.values())
        + sum(attribute_bytes(v) for v in values.values())
    )


def table_keys(table: Any) -> list[str]:
    """A moto table's key attributes: hash, then range (if any)."""
    ordered = sorted(table.schema, key=lambda part: part["KeyType"] != "HASH")
    return [part["AttributeName"] for part in ordered]


def _kind(table: str, item: dict[str, Any]) -> str:
    if "customers" in table:
        return "record"
    if "tenants" in table:
        return "tenant"
    if item.get("pk", {}).get("S", "").endswith("#!revenue"):
        return "revenue"
    return str(item.get("kind", {}).get("S") or item.get("sk", {}).get("S", "sync").split("#")[0])


def _rollup(stack: InProcessStack) -> tuple[Meter, Any, float, int]:
    """The stream through the revenue rollup, metered: the meter, the mapping's stats, the handler's
    own seconds, and the write units its MRR changes would take each in a transaction of its own
    (its shard's position and each period it moves, twice: a trickle)."""
    from revsync.domain.rollup import change_of  # noqa: PLC0415
    from revsync.store.rollup import stream_batch  # noqa: PLC0415

    from local import streams  # noqa: PLC0415

    meter = Meter()
    with metering(meter):
        started = time.perf_counter()
        flow = stack.drain_stream()
        seconds = time.perf_counter() - started - meter.waited
    assert stack.names is not None
    events: list[dict[str, Any]] = []

    def capture(function: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"state": {}, "batchItemFailures": []}

    streams.mapping("RollupFunction", stack.names, capture, "us-east-1").drain()
    changes = [change_of(c.old, c.new) for event in events for c in stream_batch(event).changes]
    return meter, flow, seconds, 2 * sum(1 + len(change) for change in changes if change)


def _memory_gb(logical_id: str) -> float:
    return int(load_template()["Resources"][logical_id]["Properties"]["MemorySize"]) / 1024


def _platform_log_bytes(logical_id: str) -> int:
    """Lambda's own lines per invocation, as the template configures the function's logging."""
    template = load_template()
    config = {
        **template.get("Globals", {}).get("Function", {}).get("LoggingConfig", {}),
        **template["Resources"][logical_id]["Properties"].get("LoggingConfig", {}),
    }
    return 0 if config.get("SystemLogLevel") == "WARN" else PLATFORM_LOG_BYTES


class Meter:
    """Every AWS request the handlers make (whatever client makes it), its units, and the time
    spent in moto answering it (taken out of the handlers' measured time)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.wru: Counter[str] = Counter()  # by item kind
        self.rru = 0.0
        self.feed_entries = 0
        self.waited = 0.0
        self.waited_cpu = 0.0  # this thread's CPU time in moto (the same thread runs it)
        self.modeled = 0.0
        # Each index's entries as the writes seen so far leave them: (index, item key) -> its entry.
        self.index: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def _index_write(self, table_name: str, key: dict[str, Any]) -> None:
        """DynamoDB's index rule, for the item ``key`` names (its key, or the whole item) as the write
        left it: an index write per KB
        of its entry when it enters, leaves or changes in an index (its keys or projected
        attributes), a delete and a put when its index key changes, none when its entry is the same."""
        table = dynamodb_backends[ACCOUNT_ID][REGION].get_table(table_name)
        names = table_keys(table)
        hash_key, *range_key = (DynamoType(key[name]) for name in names)
        item = table.get_item(hash_key, range_key[0] if range_key else None)
        item_key = json.dumps([key[name] for name in names])
        for index in table.global_indexes:
            keys = [part["AttributeName"] for part in index.schema]
            after = (
                index.project(item).to_json()["Attributes"]
                if item is not None and all(name in item.attrs for name in keys)
                else None
            )
            slot = (index.name, item_key)
            before = self.index.pop(slot, None)
            if after is not None:
                self.index[slot] = after
            if after == before:
                continue
            moved = before is not None and after is not None and any(before[k] != after[k] for k in keys)
            for entry in (before, after) if moved or after is None else (after,):
                self.wru[f"{index.name} index"] += math.ceil(item_bytes(entry or {}) / 1024)

    def request(self, request: Any, seconds: float) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        service, _, name = target.partition(".")
        body = request.body or b"{}"
        params = json.loads(body.decode() if isinstance(body, bytes) else body)
        self.waited += seconds
        self.counts[name] += 1
        if name == "PutItem":
            item = params["Item"]
            self.wru[_kind(params["TableName"], item)] += math.ceil(item_bytes(item) / 1024)
            self._index_write(params["TableName"], item)
        elif name in ("UpdateItem", "DeleteItem"):
            size = updated_item_bytes(params)
            self.wru[_kind(params["TableName"], params["Key"])] += max(1, math.ceil(size / 1024))
            self._index_write(params["TableName"], params["Key"])
        elif name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((action, part),) = entry.items()
                size = item_bytes(part["Item"]) if action == "Put" else updated_item_bytes(part)
                key = part.get("Item") or part.get("Key") or {}
                self.wru[_kind(part["TableName"], key)] += 2 * max(1, math.ceil(size / 1024))
                if action != "ConditionCheck":  # an index write is not doubled: only the table's are
                    self._index_write(part["TableName"], key)
        elif name in READS:
            self.rru += 1  # small items, strongly consistent: one unit per 4 KB
        elif name == "PutEvents":
            self.feed_entries += len(params["Entries"])
        kind = "dynamodb" if service.startswith("DynamoDB") else "sqs" if "SQS" in service else "events"
        self.modeled += LATENCY_SECONDS.get(name, LATENCY_SECONDS[kind])


@contextlib.contextmanager
def metering(meter: Meter, timer: Callable[[], float] = time.perf_counter) -> Iterator[None]:
    """Route moto's answers through ``meter`` (every botocore client in this process goes there),
    with the time moto took to answer by ``timer`` (``time.thread_time``: CPU time, which a loaded
    machine does not inflate)."""
    original = BotocoreStubber.__call__

    def metered(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        started, cpu = timer(), time.thread_time()
        response = original(stubber, event_name, request, **kwargs)
        if response is not None:
            meter.waited_cpu += time.thread_time() - cpu
            answered = timer()
            meter.request(request, answered - started)
            meter.waited += timer() - answered  # the metering's own time is not the handler's
        return response

    BotocoreStubber.__call__ = metered  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


class LogBytes(io.TextIOBase):
    """Counts what the handlers' loggers write (their stream is bound when the logger is made)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return len(text)


def _count_logs(into: LogBytes) -> None:
    for logical_id in ("WebhookFunction", "WorkerFunction"):
        logger = lambda_runtime.load_module(logical_id).logger
        for handler in logger.handlers:
            handler.setStream(into)


def main(customers: int = 300) -> int:
    if BUILD.exists() and not os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
        # Measure what ships: again, with the handlers and the layer from the build directory.
        environment = {**os.environ, "REVSYNC_LOCAL_BUILD_DIR": str(BUILD)}
        return subprocess.run(
            [sys.executable, "-m", "bench.worker_cost", str(customers)], env=environment, check=False
        ).returncode
    rng = random.Random(7)
    # Stripe calls the endpoint the template outputs for it (ConnectWebhookUrl): the receiver's
    # function URL, which costs nothing per request; the HTTP API's route costs API Gateway's price.
    entrance: Literal["api", "url"] = "url" if "WebhookFunction" in function_urls() else "api"
    receiver, worker = Meter(), Meter()
    receiver_log, worker_log = LogBytes(), LogBytes()
    with InProcessStack() as stack:
        TenantStore().save(
            Tenant("bench", Connection("connected", "oauth", "acct_bench")).with_config("metadata.app_id"),
            int(time.time()),
        )
        fake = FakeStripe()
        stack.wire("WorkerFunction", stripe=fake)
        events = events_for(customers, int(time.time()), rng)
        _count_logs(receiver_log)
        with metering(receiver):
            started = time.perf_counter()
            for event in events:
                assert stack.post_webhook(event, DEFAULT_WEBHOOK_SECRET, via=entrance).status == 200
            receiver_seconds = time.perf_counter() - started - receiver.waited
        _count_logs(worker_log)
        with metering(worker):
            started = time.perf_counter()
            stats = stack.drain(rollup=False)
            worker_seconds = time.perf_counter() - started - worker.waited
        rollup, flow, rollup_seconds, lone_units = _rollup(stack)

    applied, n = stats.succeeded, len(events)
    writes = sum(worker.counts[name] for name in WRITES)
    reads = sum(worker.counts[name] for name in READS)
    wru = sum(worker.wru.values())
    per = {
        "writes": writes / applied,
        "reads": reads / applied,
        "wru": wru / applied,
        "rru": worker.rru / applied,
        "stripe": (len(fake.fetches) + fake.coupon_reads) / applied,
        "feed": worker.feed_entries / applied,
    }
    receiver_code_ms = receiver_seconds * 1000 / n
    receiver_ms = receiver_code_ms + receiver.modeled * 1000 / n
    worker_code_ms = worker_seconds * 1000 / max(1, stats.batches)
    worker_batch_ms = worker_code_ms + worker.modeled * 1000 / max(1, stats.batches)
    batches_per_event = stats.batches / n
    # Per worker invocation: Lambda's request, SQS's receive and delete. Here the queue is drained
    # after every event is sent (full batches, as in a burst); at a trickle each event is a batch of
    # its own, since a FIFO event source mapping has no batching window.
    per_batch = PRICE["lambda_req"] + 2 * PRICE["sqs"]
    parts = {
        "API Gateway": PRICE["apigw"] if entrance == "api" else 0.0,
        f"receiver Lambda ({receiver_ms:.1f} ms, code {receiver_code_ms:.1f})": PRICE["lambda_req"]
        + PRICE["lambda_gb_s"] * _memory_gb("WebhookFunction") * receiver_ms / 1000,
        "SQS (send; receive and delete per batch)": PRICE["sqs"] * (1 + 2 * batches_per_event),
        "receiver DynamoDB read": PRICE["rru"] * receiver.rru / n / 2,  # eventually consistent
        f"worker Lambda ({worker_batch_ms:.0f} ms per batch, code {worker_code_ms:.0f})": batches_per_event
        * (
            PRICE["lambda_req"] + PRICE["lambda_gb_s"] * _memory_gb("WorkerFunction") * worker_batch_ms / 1000
        ),
        "worker DynamoDB": PRICE["wru"] * wru / n + PRICE["rru"] * worker.rru / n,
        "change feed": PRICE["putevents"] * worker.feed_entries / n,
        f"rollup Lambda ({flow.batches} batches)": flow.batches
        / n
        * (
            PRICE["lambda_req"]
            + PRICE["lambda_gb_s"]
            * _memory_gb("RollupFunction")
            * (rollup_seconds + rollup.modeled)
            / max(1, flow.batches)
        ),
        "rollup DynamoDB": PRICE["wru"] * sum(rollup.wru.values()) / n,
        "CloudWatch Logs": PRICE["log_gb"]
        * (
            receiver_log.bytes
            + worker_log.bytes
            + _platform_log_bytes("WebhookFunction") * n
            + _platform_log_bytes("WorkerFunction") * stats.batches
        )
        / n
        / 1e9,
    }
    cost = sum(parts.values()) * 1e6
    trickle = cost + (1 - batches_per_event) * per_batch * 1e6
    # At a trickle the rollup's transactions are the MRR changes' own (no batch to share them).
    trickle += (PRICE["wru"] * lone_units - PRICE["wru"] * sum(rollup.wru.values())) / n * 1e6
    source = (
        "as built (.aws-sam/build)"
        if os.environ.get("REVSYNC_LOCAL_BUILD_DIR")
        else "from the source tree (no build)"
    )
    by_kind = ", ".join(f"{kind} {units / applied:.2f}" for kind, units in worker.wru.most_common())
    print(
        f"worker cost, {source}: {n} webhooks, {customers} customers, "
        f"{applied} applied, {stats.batches} batches"
    )
    print(
        f"  per applied event: {per['writes']:.2f} writes, {per['wru']:.2f} write units ({by_kind}), "
        f"{per['reads']:.2f} reads, {per['stripe']:.3f} Stripe calls, {per['feed']:.2f} feed events "
        f"(budget: 2 writes, 1.5 write units, 2 reads, 0.05 Stripe calls)"
    )
    print(
        f"  ${cost:.2f} per million webhook events (budget $3.50): "
        + ", ".join(f"{name} ${value * 1e6:.2f}" for name, value in parts.items())
    )
    # The code times are this machine's full core; Lambda gives one vCPU at 1,769 MB and a share in
    # proportion below that, so CPU-bound code bills 1,769 MB x its full-core time whatever the memory.
    full_core_gb = 1769 / 1024
    slower = sum(
        PRICE["lambda_gb_s"] * code_ms / 1000 * (full_core_gb - _memory_gb(name))
        for name, code_ms in (
            ("WebhookFunction", receiver_code_ms),
            ("WorkerFunction", worker_code_ms * batches_per_event),
        )
    )
    print(
        f"  at a trickle (one event per worker batch, each MRR change alone in a rollup transaction: "
        f"+${(lone_units - sum(rollup.wru.values())) * PRICE['wru'] / n * 1e6:.2f} of it): ${trickle:.2f}; "
        f"with the code at Lambda's vCPU share of its memory rather than this machine's full core: "
        f"+${slower * 1e6:.2f}"
    )
    if entrance == "url":
        api = PRICE["apigw"] * 1e6
        print(
            f"  webhooks sent to the function URL (ConnectWebhookUrl); to the HTTP API's route instead: "
            f"+${api:.2f}, ${cost + api:.2f} (a trickle ${trickle + api:.2f})"
        )
    ok = (
        per["writes"] <= 2
        and per["wru"] <= 1.5
        and per["reads"] <= 2
        and per["stripe"] <= 0.05
        and cost <= 3.50
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
