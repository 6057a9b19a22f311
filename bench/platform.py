"""The platform at its size: every one of 5,000 tenants caught up each period, a 100,000-event
backlog that completes beside them, and what an idle tenant costs a month.

What runs is what ships: the reconciler's handler (from `.aws-sam/build` when `make build` has run)
with its real services and DynamoDB store on in-process moto, every AWS call metered by DynamoDB's
billing rules and given DynamoDB's latency (5 ms a call, SQS 8 ms, EventBridge 15 ms); Stripe's
Events API answers from memory at 300 ms a page. Time is modelled, not waited for: an invocation
lasts its code's own measured time (moto's taken out) at Lambda's share of a vCPU for the memory
the template gives the function, plus the latencies of its calls, and its deadline (the handler's
``monotonic``) reads that modelled time. The catch-up queue is modelled as SQS FIFO runs it: a
message group per tenant with one message in flight per group, and at most ReconcileConcurrency
invocations at once (the event source mapping's MaximumConcurrency). ReconcileMinutes, the
concurrency, the reconciler's memory and timeout are read from template.yaml.

1. Coverage: 5,000 connected tenants with a handful of missed events each; the schedule queues a
   job per tenant: every tenant must be caught up within one period.
2. A backlog: one tenant's 100,000 events (10,000 customers) whose deliveries all failed, beside
   4,999 quiet tenants: the backlog is worked through by one chain of runs (a run that reaches its
   deadline queues its continuation) over successive periods while every other tenant is still
   caught up each period (starved: 0), and every customer's total paid equals what its invoices
   add up to (nothing applied twice).
3. An idle tenant's fixed monthly cost: its run each period (Lambda, the queue's requests, DynamoDB
   units, logs) at on-demand list prices, plus its sealed API key. Budget $0.05.
4. A burst of 1,000 events/s for one tenant for 60 s through the receiver and the worker
   (``bench/burst.py``): nothing lost or parked, and the peak write units per second on the tenant's
   partitions against DynamoDB's 1,000.

Run: `python -m bench.platform` (part of `make bench`; about two hours here, moto being the most of
it); `python -m bench.platform 500 10000 12` runs it smaller (tenants, backlog events, burst seconds;
0 seconds: no burst).
"""

from __future__ import annotations

import bisect
import heapq
import math
import os
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
if os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
    sys.path.insert(0, str(Path(os.environ["REVSYNC_LOCAL_BUILD_DIR"]) / "RevsyncLayer" / "python"))

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
warnings.filterwarnings("ignore")

from revsync.bootstrap.stripe import budgets  # noqa: E402
from revsync.domain.ratelimits import list_endpoint  # noqa: E402
from revsync.domain.reconcile import CatchUpJob  # noqa: E402
from revsync.domain.tenancy import Connection, Tenant  # noqa: E402
from revsync.infra.catch_ups import job_body  # noqa: E402
from revsync.store.budget import AccountRequestBudget  # noqa: E402
from revsync.store.read_models import CustomerRecords  # noqa: E402
from revsync.store.tenants import TenantStore  # noqa: E402
from revsync.stripe_api.pacing import call_within_budget  # noqa: E402

from bench import tenant_secrets_cost as secrets_cost  # noqa: E402
from bench.burst import PARTITION_WRITE_UNITS, run_burst  # noqa: E402
from bench.worker_cost import PRICE, LogBytes, Meter, metering  # noqa: E402
from local import lambda_runtime  # noqa: E402
from local import stripe_shapes as S  # noqa: E402
from local.inprocess import InProcessStack  # noqa: E402
from local.template import load_template, parameter_defaults  # noqa: E402
from tests.fakes import FakeStripe  # noqa: E402

FUNCTION = "ReconcilerFunction"
STRIPE_PAGE_SECONDS = 0.300  # one page of Stripe's Events API
FULL_VCPU_MB = 1769  # Lambda gives one vCPU at 1,769 MB, a share in proportion below
NOW0 = 1_800_000_000
# A month of periods.
MONTH_SECONDS = 30 * 86_400
PLATFORM_TENANTS = 5_000  # the stack's KMS key is shared by this many tenants


def _properties() -> dict[str, Any]:
    return dict(load_template()["Resources"][FUNCTION]["Properties"])


@dataclass
class ModelledTime:
    """Seconds since the bench began, in modelled time."""

    now: float = 0.0


class AccountEvents:
    """One account's events as the Events API lists them: newest first, ``created[gte]``, cursors."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.newest_first = sorted(events, key=lambda e: (-e["created"], e["id"]))
        self.position = {e["id"]: n for n, e in enumerate(self.newest_first)}
        self.created = [-e["created"] for e in self.newest_first]  # ascending, for bisect

    def page(self, created_gte: int, starting_after: str | None) -> tuple[list[dict[str, Any]], bool]:
        start = 0 if starting_after is None else self.position[starting_after] + 1
        end = bisect.bisect_right(self.created, -created_gte)  # past the oldest allowed
        page = self.newest_first[start : min(end, start + 100)]
        return page, start + 100 < end


class ModelledStripe(FakeStripe):
    """Stripe's Events API per account, 300 ms a page of modelled time; each page reserved in the
    account's shared request budget first, as ``StripeAccounts`` does (a DynamoDB write on the
    endpoint's clock and one on the account's)."""

    def __init__(self, time_: ModelledTime, budgets: Callable[..., AccountRequestBudget]) -> None:
        super().__init__()
        self.time = time_
        self.budgets = budgets  # budgets(account, rate, clock): as the functions keep them
        self.accounts: dict[str, AccountEvents] = {}

    def list_events(
        self, tenant: Tenant, *, created_gte: int, types: tuple[str, ...], starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        self.event_pages += 1
        now = lambda: NOW0 + self.time.now  # noqa: E731
        budget = self.budgets(str(tenant.connection.account_id), 25.0, now)
        call_within_budget(budget, list_endpoint("events"), lambda: None, clock=now, sleep=lambda _: None)
        self.time.now += STRIPE_PAGE_SECONDS
        account = self.accounts.get(str(tenant.connection.account_id))
        return account.page(created_gte, starting_after) if account else ([], False)


@dataclass
class ModelledQueue:
    """The catch-up queue as SQS FIFO hands it to Lambda: a message group per tenant, a message
    visible once sent, its group's next one only once it is done (one in flight per group),
    deduplicated within the group."""

    time: ModelledTime
    period_seconds: int
    waiting: dict[str, list[CatchUpJob]] = field(default_factory=lambda: defaultdict(list))
    busy_until: dict[str, float] = field(default_factory=dict)  # a group's message in flight
    seen: set[tuple[str, str]] = field(default_factory=set)
    heap: list[tuple[float, int, str]] = field(default_factory=list)  # (visible at, n, group)
    sent: int = 0

    def send(self, jobs: list[CatchUpJob]) -> None:
        for job in jobs:
            key = (job.tenant_id, job.deduplication_id(self.period_seconds))
            if key in self.seen:
                continue
            self.seen.add(key)
            self.sent += 1
            self.waiting[job.tenant_id].append(job)
            heapq.heappush(self.heap, (self.time.now, self.sent, job.tenant_id))

    def next_visible(self) -> float | None:
        """When the next message can be received (the oldest visible one of a group not in flight)."""
        while self.heap:
            at, n, group = self.heap[0]
            free = max(at, self.busy_until.get(group, 0.0))
            if free == at:
                return at
            heapq.heapreplace(self.heap, (free, n, group))
        return None

    def receive(self, at: float) -> CatchUpJob:
        visible = self.next_visible()
        assert visible is not None
        assert visible <= at
        _, _, group = heapq.heappop(self.heap)
        self.busy_until[group] = math.inf  # in flight until done
        return self.waiting[group].pop(0)

    def done(self, job: CatchUpJob, at: float) -> None:
        self.busy_until[job.tenant_id] = at


@dataclass
class Invocation:
    job: CatchUpJob
    start: float
    end: float
    state: str
    listed: int
    recovered: int
    reads: int
    writes: int
    rru: float
    wru: float
    code_seconds: float


class Consumer:
    """The reconciler's event source mapping and the handler, in modelled time."""

    def __init__(
        self,
        stack: InProcessStack,
        queue: ModelledQueue,
        stripe: ModelledStripe,
        meter: Meter,
        logs: LogBytes,
    ) -> None:
        props = _properties()
        self.memory = int(props["MemorySize"])
        self.timeout = int(props["Timeout"])
        self.concurrency = int(parameter_defaults()["ReconcileConcurrency"])
        self.period = int(parameter_defaults()["ReconcileMinutes"]) * 60
        self.stack, self.queue, self.stripe, self.meter, self.logs = stack, queue, stripe, meter, logs
        self.time = queue.time
        self.slots = [0.0] * self.concurrency
        self.invocations: list[Invocation] = []
        self.schedules: list[float] = []
        self._code_started = 0.0
        self._waited_at_start = 0.0
        self._modeled_at_start = 0.0
        stack.wire(
            FUNCTION,
            stripe=stripe,
            queue=queue,
            clock=lambda: NOW0 + self.time.now,
            monotonic=self._monotonic,
        )

    def _code_seconds(self) -> float:
        """The handler's own CPU time so far (moto's answers taken out): CPU time, not wall time,
        so a loaded machine does not slow the model."""
        return time.thread_time() - self._code_started - (self.meter.waited - self._waited_at_start)

    def _monotonic(self) -> float:
        """The handler's clock: the pages read so far (they move ``time.now``), its AWS calls'
        latencies, and its own code at Lambda's share of a vCPU."""
        calls = self.meter.modeled - self._modeled_at_start
        return self.time.now + calls + self._code_seconds() * max(1.0, FULL_VCPU_MB / self.memory)

    def schedule(self, at: float) -> None:
        """EventBridge Scheduler's invocation: a job per connected tenant (its own modelled time is
        counted too, but it runs on the side, not in a consumer slot)."""
        self.time.now = at
        self.schedules.append(at)
        lambda_runtime.invoke(FUNCTION, {"action": "queue_catch_ups"})

    def _invoke(self, job: CatchUpJob, start: float) -> Invocation:
        counts_before = dict(self.meter.counts)
        rru_before, wru_before = self.meter.rru, sum(self.meter.wru.values())
        self.time.now = start
        self._modeled_at_start = self.meter.modeled
        self._waited_at_start = self.meter.waited
        self._code_started = time.thread_time()
        event = {"Records": [{"messageId": f"m{len(self.invocations)}", "body": job_body(job)}]}
        result = lambda_runtime.invoke(FUNCTION, event)
        code = self._code_seconds()
        end = self._monotonic()
        report = result["reconciled"][job.tenant_id]
        after = self.meter.counts
        reads = sum(after[n] - counts_before.get(n, 0) for n in ("GetItem", "Query", "Scan"))
        writes = sum(after[n] - counts_before.get(n, 0) for n in ("PutItem", "UpdateItem", "DeleteItem"))
        return Invocation(
            job,
            start,
            end,
            report["state"],
            report["listed"],
            report["recovered"],
            reads,
            writes,
            self.meter.rru - rru_before,
            sum(self.meter.wru.values()) - wru_before,
            code,
        )

    def run_until(self, horizon: float) -> None:
        """Hand jobs to slots in time order (each slot takes the next receivable job once free)
        until nothing is left to start before ``horizon``."""
        while True:
            slot = min(range(self.concurrency), key=lambda n: self.slots[n])
            visible = self.queue.next_visible()
            if visible is None:
                return
            at = max(self.slots[slot], visible)
            if at >= horizon:
                return
            job = self.queue.receive(at)
            invocation = self._invoke(job, at)
            self.queue.done(job, invocation.end)
            self.invocations.append(invocation)
            self.slots[slot] = invocation.end


def _quiet_events(account: str, tenant_index: int, count: int) -> list[dict[str, Any]]:
    """A handful of a quiet tenant's events, created half an hour before the first period (so the
    next period's window, from 15 minutes before the last, no longer lists them)."""
    events = []
    for n in range(count):
        customer = S.customer(f"cus_t{tenant_index}_{n}", metadata={"app_id": f"u-{n}"})
        events.append(S.event("customer.created", customer, created=NOW0 - 1800 + n, account=account))
    return events


def _backlog_events(
    account: str, total: int, start: int, span: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``total`` events of ``total // 10`` customers (a customer, its subscription, 8 paid invoices),
    created over ``span`` seconds from ``start``; and what each customer's invoices add up to."""
    customers = max(1, total // 10)
    price = S.price(4900, id="price_backlog")
    events: list[dict[str, Any]] = []
    paid: dict[str, int] = {}
    step = span / total
    for c in range(customers):
        cus = f"cus_b{c:06d}"
        customer = S.customer(cus, metadata={"app_id": f"b-{c}"})
        sub = S.subscription(cus, [S.subscription_item(price)], id=f"sub_b{c:06d}")
        batch = [("customer.created", customer), ("customer.subscription.created", sub)]
        for i in range(8):
            amount = 4900 + 100 * (c % 7)
            batch.append(
                (
                    "invoice.paid",
                    S.invoice(cus, sub["id"], amount_paid=amount, paid_at=start, id=f"in_b{c}_{i}"),
                )
            )
            paid[f"b-{c}"] = paid.get(f"b-{c}", 0) + amount
        for kind, obj in batch:
            created = start + int(len(events) * step)
            events.append(S.event(kind, obj, created=created, account=account))
    return events, paid


def _connect(count: int) -> list[str]:
    store = TenantStore()
    tenants = []
    for n in range(count):
        tenant_id = f"t{n:05d}"
        tenant = Tenant(
            tenant_id, Connection("connected", "oauth", f"acct_{tenant_id}", connected_at=NOW0 - 86_400)
        )
        store.save(tenant.with_config("metadata.app_id"), NOW0 - 86_400)
        tenants.append(tenant_id)
    return tenants


def _finished_by(invocations: list[Invocation], since: float) -> dict[str, float]:
    """Per tenant, when its first run that listed its window to the end (or found nothing to do)
    after ``since`` ended."""
    done: dict[str, float] = {}
    for inv in invocations:
        if inv.start >= since and inv.state in ("done", "skipped") and inv.job.tenant_id not in done:
            done[inv.job.tenant_id] = inv.end
    return done


def _coverage(consumer: Consumer, tenants: list[str]) -> bool:
    """Period 1: every tenant has a handful of missed events; all must be caught up in the period."""
    consumer.schedule(0.0)
    consumer.run_until(consumer.period)
    finished = _finished_by(consumer.invocations, 0.0)
    covered = sum(1 for t in tenants if finished.get(t, math.inf) <= consumer.period)
    runs = consumer.invocations
    per_run = sum(i.end - i.start for i in runs) / max(1, len(runs))
    print(
        f"  reconcile coverage: {covered}/{len(tenants)} tenants in one period (the last caught up "
        f"{max(finished.values(), default=0.0):.0f} s after the schedule; a run {per_run * 1000:.0f} ms on "
        f"average, {sum(i.recovered for i in runs)} missed events recovered)"
    )
    return covered == len(tenants)


def _backlog(consumer: Consumer, stripe: ModelledStripe, tenants: list[str], backlog: int) -> bool:
    """Periods 2, 3, ...: the first tenant's deliveries failed for a whole period; the others are
    quiet. Runs until the backlog's window is listed to its end."""
    heavy, period = tenants[0], consumer.period
    events, paid = _backlog_events(f"acct_{heavy}", backlog, NOW0 + 1, period - 60)
    stripe.accounts[f"acct_{heavy}"] = AccountEvents(events)
    first = len(consumer.invocations)
    starved = periods = 0
    at = float(period)
    while periods < 40:
        periods += 1
        consumer.schedule(at)
        consumer.run_until(at + period)
        finished = _finished_by(consumer.invocations[first:], at)
        starved_now = sum(1 for t in tenants[1:] if finished.get(t, math.inf) > at + period)
        starved += starved_now
        so_far = sum(i.listed for i in consumer.invocations[first:] if i.job.tenant_id == heavy)
        print(f"    period {periods}: {so_far}/{len(events)} listed, {starved_now} starved", flush=True)
        at += period
        if consumer.stack.graph(FUNCTION).progress.get(heavy).pending is None:
            break
    ran = [i for i in consumer.invocations[first:] if i.job.tenant_id == heavy and i.state != "skipped"]
    listed = sum(i.listed for i in ran)
    records = CustomerRecords()
    wrong = [
        name
        for name, total in paid.items()
        if (records.get_record(heavy, name) or {}).get("total_paid") != total
    ]
    continuations = sum(1 for i in ran if i.job.reason == "continue")
    minutes = (ran[-1].end - ran[0].start) / 60
    print(
        f"  backlog: {len(events)} events listed once each ({listed}) over {len(ran)} runs "
        f"({continuations} continuations) in {periods} periods ({minutes:.0f} min); starved tenants: "
        f"{starved}; total_paid wrong for {len(wrong)} of {len(paid)} customers"
    )
    return starved == 0 and not wrong and listed == len(events) and ran[-1].state == "done"


def main(tenant_count: int = 5000, backlog: int = 100_000, burst_seconds: int = 60) -> int:
    if BUILD.exists() and not os.environ.get("REVSYNC_LOCAL_BUILD_DIR"):
        environment = {**os.environ, "REVSYNC_LOCAL_BUILD_DIR": str(BUILD)}
        command = [
            sys.executable,
            "-m",
            "bench.platform",
            str(tenant_count),
            str(backlog),
            str(burst_seconds),
        ]
        return subprocess.run(command, env=environment, check=False).returncode
    source = "as built (.aws-sam/build)" if os.environ.get("REVSYNC_LOCAL_BUILD_DIR") else "source tree"
    started = time.perf_counter()
    modelled = ModelledTime()
    meter, logs = Meter(), LogBytes()
    with InProcessStack(clock=lambda: NOW0 + modelled.now) as stack:
        # As deployed: the change feed has no local tap queue (moto's grows slower with each send).
        stack.without_change_feed_tap()
        tenants = _connect(tenant_count)
        stripe = ModelledStripe(modelled, budgets(stack.graph(FUNCTION).settings.tenants_table))
        for n, tenant_id in enumerate(tenants):
            stripe.accounts[f"acct_{tenant_id}"] = AccountEvents(_quiet_events(f"acct_{tenant_id}", n, 5))
        queue = ModelledQueue(modelled, int(parameter_defaults()["ReconcileMinutes"]) * 60)
        for handler in lambda_runtime.load_module(FUNCTION).logger.handlers:
            handler.setStream(logs)
        with metering(meter, time.thread_time):
            consumer = Consumer(stack, queue, stripe, meter, logs)
            print(
                f"platform, {source}: {tenant_count} tenants, {consumer.concurrency} at once "
                f"(ReconcileConcurrency), {consumer.memory} MB, {consumer.timeout} s, every "
                f"{consumer.period // 60} min"
            )
            ok = _coverage(consumer, tenants)
            ok &= _backlog(consumer, stripe, tenants, backlog)
            # An idle tenant: the quiet tenants' runs of the last period (nothing new to list).
            idle = [
                i
                for i in consumer.invocations
                if i.job.tenant_id != tenants[0] and i.start >= consumer.schedules[-1]
            ]
    print(_idle_cost(idle, consumer, logs))
    ok &= sum(_idle_parts(idle, consumer, logs).values()) <= 0.05
    if burst_seconds:
        # 4. A burst: 1,000 events/s for one tenant (bench/burst.py: the receiver and the worker).
        report = run_burst(seconds=burst_seconds)
        for line in report.lines():
            print(f"  {line}")
        ok &= report.applied == report.sent and report.parked == 0 and report.lost == 0
        ok &= max(report.peak_record_units, report.peak_index_units) <= PARTITION_WRITE_UNITS
    print(f"  (bench ran {time.perf_counter() - started:.0f} s)")
    return 0 if ok else 1


def _idle_parts(idle: list[Invocation], consumer: Consumer, logs: LogBytes) -> dict[str, float]:
    runs = MONTH_SECONDS / consumer.period
    n = max(1, len(idle))
    seconds = sum(i.end - i.start for i in idle) / n
    rru = sum(i.rru for i in idle) / n
    wru = sum(i.wru for i in idle) / n
    log_bytes = logs.bytes / max(1, len(consumer.invocations))
    # SQS FIFO: the schedule's send (ten to a batch), the event source's receive and delete.
    sqs_requests = 0.1 + 2
    parts = {
        "Lambda": runs * (PRICE["lambda_req"] + PRICE["lambda_gb_s"] * consumer.memory / 1024 * seconds),
        "SQS": runs * sqs_requests * PRICE["sqs"],
        "DynamoDB": runs * (rru * PRICE["rru"] + wru * PRICE["wru"]),
        "CloudWatch Logs": runs * log_bytes * PRICE["log_gb"] / 1e9,
        # An API-key tenant's sealed key: its bytes, its share of the stack's KMS key, a Decrypt
        # per run (an OAuth tenant has none of these).
        "its sealed API key": secrets_cost.sealed(PLATFORM_TENANTS, consumer.period / 60).total,
    }
    return parts


def _idle_cost(idle: list[Invocation], consumer: Consumer, logs: LogBytes) -> str:
    parts = _idle_parts(idle, consumer, logs)
    n = max(1, len(idle))
    seconds = sum(i.end - i.start for i in idle) / n
    reads = sum(i.reads for i in idle) / n
    writes = sum(i.writes for i in idle) / n
    total = sum(parts.values())
    return (
        f"  idle tenant: a run of {seconds * 1000:.0f} ms ({reads:.1f} reads, {writes:.1f} writes, one page "
        f"of events) every {consumer.period // 60} min: ${total:.4f} a month (budget $0.05): "
        + ", ".join(f"{name} ${value:.4f}" for name, value in parts.items())
    )


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:4])))
