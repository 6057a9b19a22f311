"""Backfill import time against Stripe's floor, per-endpoint rate use, 429s, and the history limit.

The import of an account of 100,000 customers (each with a subscription and a paid invoice, as the
sandbox seeds them, and a credit note refunded to the card on ``REFUNDED_SHARE`` of the paid invoices)
with DynamoDB in the write path is far more CPU than this 2-core machine has in the minutes Stripe
allows it (306,000 write paths on moto). So the bench takes it in two parts:

1. **Measured: the write path on moto.** Pages read from the Stripe sandbox (its seed, through the
   real client) go through the importer step's page write (``revsync.services.backfill._apply_page``:
   the real write path, ``CustomerStore`` on in-process moto). Per object and per list it measures
   the code's own time (the wall time less the time moto took to answer) and counts the DynamoDB
   calls. A page's write time on Lambda is then modelled as that code time at the importer's share
   of a vCPU (``MemorySize`` / 1,769 MB, from template.yaml) plus its calls at ``DYNAMODB_SECONDS``
   each, ``BACKFILL_WRITERS`` customers at a time (the template's setting).
2. **Modelled time, real code: the import at full size.** The real state machine steps
   (``services.backfill.start``, ``import_segment``, ``collect_round``, ``continue_run``, in the
   ASL's order: a Map round ends with its slowest step), the real pacer and ``call_paced`` (429s
   honoured by their ``Stripe-Rate-Limited-Reason``), the real planner, with the template's settings,
   run side by side in modelled time (``bench.modelled_time``). Modelled: Stripe's list endpoints
   (pages of the seeded shape, newest first, ``created`` ranges and cursors; ``STRIPE_SECONDS`` an
   answer) behind the sandbox's own limiters (``local.stripe_sandbox.limits``: 25 requests/s per
   endpoint, 100/s live or 25/s test for the account, a 429 naming the limiter); the request budget's
   DynamoDB calls (``DYNAMODB_SECONDS`` each, two a clock); a page's writes (part 1); Lambda's invoke
   and Step Functions' transitions (``STEP_OVERHEAD_SECONDS``).

Prints import time ÷ Stripe's floor (the account's pages at Stripe's limits: each list's pages at its
endpoint's 25/s, all pages within the account's limit; budget 1.25), each endpoint's rate use, 429s,
list requests against the minimum (budget 1.02), and at 1M customers / 1M subscriptions / 3M paid
invoices and their credit notes and refunds (and three times that) the executions used and the most
history events in any one (limit 25,000).
Run: ``python -m bench.backfill [customers]`` (default 100,000).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import stripe
from moto.core.botocore_stubber import BotocoreStubber
from revsync.domain.backfill import HISTORY_LIMIT, KINDS, PAGE_SIZE, Segment, list_params, plan
from revsync.domain.ratelimits import DEFAULT_ENDPOINT_RATE, list_endpoint
from revsync.domain.tenancy import BackfillOutcome, Connection, Tenant
from revsync.services import backfill
from revsync.services.backfill import _apply_page, _Inline
from revsync.store.customers import CustomerStore
from revsync.store.tenants import CachedTenantStore, TenantStore
from revsync.stripe_api.client import StripeAccounts
from revsync.stripe_api.pacing import LocalBudget, Pacer, call_paced

from bench.modelled_time import ModelledExecutor, ModelledTime
from local.inprocess import InProcessStack
from local.stripe_sandbox import credit_notes
from local.stripe_sandbox.core import Account, Sandbox
from local.stripe_sandbox.history import OPENED_BEFORE_FIRST_CUSTOMER_SECONDS
from local.stripe_sandbox.limits import Limiters, Limits
from local.stripe_sandbox.server import serve
from local.template import load_template
from tests.e2e.conftest import free_port
from tests.fakes import FakeBackfillRuns, FakeCustomers, FakeStripe, FakeTenants

STRIPE_SECONDS = 0.3  # a list page's answer (Stripe: ~300 ms and more)
REFUSED_SECONDS = 0.05  # a 429's answer
DYNAMODB_SECONDS = 0.005  # one DynamoDB call (a single-digit-millisecond service: its floor)
STEP_OVERHEAD_SECONDS = 0.1  # a Lambda invoke from a Map iteration, and a state's transition
LAMBDA_FULL_VCPU_MB = 1769  # Lambda gives one vCPU at this memory size, a share in proportion below
SPAN_SECONDS = 2 * 365 * 86_400  # the seed spreads an account's objects over two years
START = 1_780_000_000
# A credit note refunded to the card (one credit note, one refund) on 3 in 100 paid invoices, a week
# after the payment: a subscription business refunds a few percent of its payments (3 % errs high, so
# the two small lists weigh at least their share).
REFUNDED_SHARE = 0.03
REFUNDED_AFTER_SECONDS = 7 * 86_400
# Stripe's id prefix of each list's objects (the modelled lists' ids and cursors).
ID_PREFIXES = {
    "customers": "cus",
    "subscriptions": "sub",
    "invoices": "in",
    "credit_notes": "cn",
    "refunds": "re",
}


def account_counts(customers: int, invoices: int | None = None) -> dict[str, int]:
    """Each list's objects in an account of ``customers`` customers (a subscription each) and
    ``invoices`` paid invoices (one each unless said), ``REFUNDED_SHARE`` of them refunded."""
    invoices = customers if invoices is None else invoices
    refunded = round(invoices * REFUNDED_SHARE)
    return {
        "customers": customers,
        "subscriptions": customers,
        "invoices": invoices,
        "credit_notes": refunded,
        "refunds": refunded,
    }


def seed_refunds(sandbox: Sandbox, account: Account) -> int:
    """A credit note refunding the whole invoice to its card, through the sandbox's own credit notes
    (a refund each), on every ``1 / REFUNDED_SHARE``-th paid invoice, ``REFUNDED_AFTER_SECONDS`` after
    it. Returns how many."""
    paid = sorted(
        (invoice for invoice in account.table("invoice").values() if invoice["status"] == "paid"),
        key=lambda invoice: (invoice["created"], invoice["id"]),
    )
    every = round(1 / REFUNDED_SHARE)
    refunded = paid[every // 2 :: every]
    for invoice in refunded:
        with sandbox.at(invoice["created"] + REFUNDED_AFTER_SECONDS):
            amount = invoice["amount_paid"]
            credit_notes.create(
                sandbox,
                account,
                {
                    "invoice": invoice["id"],
                    "amount": amount,
                    "refund_amount": amount,
                    "reason": "requested_by_customer",
                },
            )
    return len(refunded)


def deployed() -> dict[str, int]:
    """The importer's settings as template.yaml deploys them."""
    importer = load_template()["Resources"]["ImporterFunction"]["Properties"]
    variables = importer["Environment"]["Variables"]
    return {
        "max_walks": int(variables["BACKFILL_CONCURRENCY"]),
        "pages_per_step": int(variables["BACKFILL_PAGES_PER_STEP"]),
        "writers": int(variables["BACKFILL_WRITERS"]),
        "memory_mb": int(importer["MemorySize"]),
        "timeout": int(importer["Timeout"]),
    }


@dataclass
class WriteCost:
    """The write path per object of each list, measured on moto: its code's seconds (at this
    machine's full core) and its DynamoDB calls."""

    code_seconds: dict[str, float]
    calls: dict[str, float]
    objects: dict[str, int]
    moto_seconds: float = 0.0
    wall_seconds: float = 0.0

    def page_seconds(self, kind: str, objects: int, cpu_share: float, writers: int) -> float:
        cpu = objects * self.code_seconds[kind] / cpu_share  # the GIL: one core's worth at most
        waiting = math.ceil(objects / writers) * self.calls[kind] * DYNAMODB_SECONDS
        return cpu + waiting


class _MotoTime:
    """The CPU time moto takes answering this thread's AWS calls, and how many there were (moto runs
    in the caller's thread: its time is taken out of the write path's)."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.calls = 0

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        original = BotocoreStubber.__call__

        def timed(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            response = original(stubber, event_name, request, **kwargs)
            if response is not None:
                self.cpu += time.thread_time() - started
                self.calls += 1
            return response

        BotocoreStubber.__call__ = timed  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            BotocoreStubber.__call__ = original  # type: ignore[method-assign]


def measure_write_path(customers: int) -> WriteCost:
    """Part 1: seeded pages through the real page write on in-process moto, one writer; the code's
    time is its thread's CPU time less moto's (so other load on the machine does not count)."""
    server, app = serve(free_port())
    url, key = f"http://127.0.0.1:{server.server_port}", "sk_test_benchbackfillwrites"
    try:
        accounts = StripeAccounts(platform_key=lambda: key, tenant_api_key=lambda _: key, api_base=url)
        account_id = accounts.client_for(_tenant("acct_x")).v1.accounts.retrieve_current().id
        tenant = _tenant(account_id)
        with app.sandbox.lock:
            account = app.sandbox.resolve(key, None)
            app.sandbox.seed(account, customers, START - SPAN_SECONDS, START)
            seed_refunds(app.sandbox, account)
        pages: dict[str, list[list[dict[str, Any]]]] = {}
        for kind in KINDS:
            segment = plan(1)[KINDS.index(kind)]
            pages[kind], more = [], True
            while more:
                listed, more = accounts.list_page(tenant, kind, list_params(segment), Pacer())
                pages[kind].append(listed)
                segment["cursor"] = listed[-1]["id"] if listed else None
    finally:
        server.shutdown()
        app.stop()
    cost = WriteCost(code_seconds={}, calls={}, objects={})
    moto = _MotoTime()
    with InProcessStack(), moto.hooked():
        TenantStore().save(tenant, START)
        tenants, store = CachedTenantStore(TenantStore()), CustomerStore()
        started_all = time.perf_counter()
        for kind in KINDS:
            cpu, moto_cpu, calls = time.thread_time(), moto.cpu, moto.calls
            objects = sum(len(page) for page in pages[kind])
            for page in pages[kind]:
                _apply_page(
                    "bench", kind, page, START, tenants, store, FakeStripe(), time.time, None, _Inline()
                )
            code = time.thread_time() - cpu - (moto.cpu - moto_cpu)
            cost.code_seconds[kind], cost.calls[kind] = code / objects, (moto.calls - calls) / objects
            cost.objects[kind] = objects
        cost.wall_seconds, cost.moto_seconds = time.perf_counter() - started_all, moto.cpu
    return cost


def _tenant(account_id: str) -> Tenant:
    connection = Connection("connected", "api_key", account_id, secret_name="bench")
    return Tenant("bench", connection).with_config("metadata.app_id")


class ModelledStripe(FakeStripe):
    """Stripe's list endpoints over an account of ``counts`` objects per list (created evenly over two
    years, newest first, as the sandbox seeds them, in an account opened before them as the sandbox
    backdates it), answering after ``STRIPE_SECONDS``, behind the sandbox's limiters in modelled
    time."""

    def __init__(self, counts: dict[str, int], limits: Limits, clock: ModelledTime) -> None:
        super().__init__(account_opened=START - SPAN_SECONDS - OPENED_BEFORE_FIRST_CUSTOMER_SECONDS)
        self.counts, self.limits, self.clock = counts, limits, clock
        self.limiters = Limiters(clock.time)
        self.requests: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self._lock = threading.Lock()

    def created(self, kind: str, index: int) -> int:
        return START - index * SPAN_SECONDS // self.counts[kind]

    def _first_before(self, kind: str, lt: int | None) -> int:
        """The index of the newest object created before ``lt``."""
        if lt is None:
            return 0
        return bisect.bisect_left(range(self.counts[kind]), True, key=lambda i: self.created(kind, i) < lt)

    def _end(self, kind: str, gte: int) -> int:
        """One past the index of the oldest object created at or after ``gte``."""
        return bisect.bisect_left(range(self.counts[kind]), True, key=lambda i: self.created(kind, i) < gte)

    def page(self, kind: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        created = params["created"]
        first, end = self._first_before(kind, created.get("lt")), self._end(kind, created["gte"])
        if params.get("starting_after"):
            first = int(params["starting_after"].removeprefix(f"{ID_PREFIXES[kind]}_")) + 1
        last = min(end, first + params["limit"])
        prefix = ID_PREFIXES[kind]
        objects = [{"id": f"{prefix}_{i}", "created": self.created(kind, i)} for i in range(first, last)]
        return objects, last < end

    def account_created(self, tenant: Tenant) -> int | None:
        """``GET /v1/account`` once a run: its budget's clocks, then Stripe's answer."""
        self.clock.sleep(2 * 2 * DYNAMODB_SECONDS + STRIPE_SECONDS)
        return super().account_created(tenant)

    def list_page(
        self, tenant: Tenant, kind: str, params: dict[str, Any], pacer: Pacer
    ) -> tuple[list[dict[str, Any]], bool]:
        endpoint = list_endpoint(kind)

        def request() -> tuple[list[dict[str, Any]], bool]:
            now = self.clock.time()
            with self._lock:
                self.requests[endpoint] += 1
                self.first.setdefault(endpoint, now)
                self.last[endpoint] = now
            reason = self.limiters.admit(tenant.connection.account_id or "", endpoint, self.limits)
            if reason is not None:
                with self._lock:
                    self.refused[reason] += 1
                self.clock.sleep(REFUSED_SECONDS)
                raise stripe.RateLimitError(
                    "Too many requests", headers={"Stripe-Rate-Limited-Reason": reason}
                )
            try:
                self.clock.sleep(STRIPE_SECONDS)
                return self.page(kind, params)
            finally:
                self.limiters.release(tenant.connection.account_id or "")

        return call_paced(pacer, endpoint, request)


class ModelledBudget(LocalBudget):
    """The account's request budget as ``store.budget`` keeps it: its clocks as ``LocalBudget``'s,
    each reservation a DynamoDB call or two (two when busy: modelled as two)."""

    def __init__(self, clock: ModelledTime, **kwargs: Any) -> None:
        super().__init__(clock=clock.time, **kwargs)
        self.modelled = clock

    def reserve(self, endpoint: str | None) -> float:
        self.modelled.sleep(2 * DYNAMODB_SECONDS)
        return super().reserve(endpoint)

    def slow_down(self, reason: str, endpoint: str, seconds: float) -> None:
        self.modelled.sleep(DYNAMODB_SECONDS)
        super().slow_down(reason, endpoint, seconds)


class _Progress:
    def backfill_started(
        self, tenant_id: str, now: int, stage: str, counts: dict[str, int] | None = None
    ) -> None: ...

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None: ...

    def set_execution(self, tenant_id: str, execution: str) -> None: ...

    def fail_if_running(self, tenant_id: str, execution: str, now: int, error: str) -> bool:
        return False

    def backfill_finished(self, tenant_id: str, now: int, outcome: BackfillOutcome) -> None: ...


class _Executions:
    def __init__(self) -> None:
        self.started = 0

    def start(self, state_machine: str, name: str, tenant_id: str) -> str:
        self.started += 1
        return name


@dataclass
class Outcome:
    counts: dict[str, int]
    seconds: float
    floor: float
    requests: Counter[str]
    refused: Counter[str]
    active: dict[str, float]
    totals: dict[str, int]
    executions: int
    most_history: int
    rounds: int
    walks_most: int = 0
    imported: dict[str, int] = field(default_factory=dict)


def simulate(
    counts: dict[str, int], live: bool, cost: WriteCost, settings: dict[str, int], endpoint_rate: float = 25.0
) -> Outcome:
    """Part 2: the state machine's loop over the real steps, in modelled time. ``endpoint_rate``: the
    endpoint limit the budget assumes (Stripe's is 25/s: above it, Stripe's 429s do the rest)."""
    random.seed(11)  # the backoff's jitter
    clock = ModelledTime(float(START))
    global_rate = 100.0 if live else 25.0
    limits = Limits(global_rate=global_rate, endpoint_rate=DEFAULT_ENDPOINT_RATE)
    stripe_api = ModelledStripe(counts, limits, clock)
    budget = ModelledBudget(clock, rate=global_rate, endpoint_rate=endpoint_rate)
    tenant = Tenant("bench", Connection("connected", "oauth", "acct_bench", livemode=live)).with_config("id")
    tenants, runs, progress, executions = (
        FakeTenants({"bench": tenant}),
        FakeBackfillRuns(),
        _Progress(),
        _Executions(),
    )
    cpu_share = min(1.0, settings["memory_mb"] / LAMBDA_FULL_VCPU_MB)

    def limits_of(_: Tenant, endpoints: list[str]) -> tuple[float, dict[str, float]]:
        clock.sleep(2 * DYNAMODB_SECONDS)  # the budget's items, read in one batch
        return budget.rate, dict.fromkeys(endpoints, budget.endpoint_rate)

    def write_page(kind: str, objects: list[dict[str, Any]], requested_at: int) -> None:
        clock.sleep(cost.page_seconds(kind, len(objects), cpu_share, settings["writers"]))

    def step(segment: Segment) -> list[Segment]:
        clock.sleep(STEP_OVERHEAD_SECONDS)
        started = clock.time()
        return backfill.import_segment(
            "bench",
            segment,
            tenants=tenants,
            customers=FakeCustomers(),
            stripe=stripe_api,
            progress=progress,
            pacer=Pacer(budget, clock=clock.time, sleep=clock.sleep),
            max_pages=settings["pages_per_step"],
            deadline=started + settings["timeout"] - 15,
            clock=clock.time,
            monotonic=clock.time,
            write_page=write_page,
            ahead=lambda: ModelledExecutor(clock),
        )

    def start() -> dict[str, Any]:
        clock.sleep(STEP_OVERHEAD_SECONDS)
        return backfill.start(
            "bench",
            tenants=tenants,
            progress=progress,
            runs=runs,
            limits=limits_of,
            stripe=stripe_api,
            max_walks=settings["max_walks"],
            now=int(clock.time()),
        )

    state, most_history, rounds, walks_most = start(), 0, 0, 0
    while True:
        if state["continue"]:
            most_history = max(most_history, state["run"]["history"] + 7)  # the Continue task, the end
            backfill.continue_run(
                "bench", state["run"], executions=executions, state_machine="sm", progress=progress
            )
            state = start()
        elif state["active"]:
            rounds += 1
            walks_most = max(walks_most, state["active"])
            produced = clock.run_all([functools.partial(step, s) for s in state["segments"]])
            clock.sleep(STEP_OVERHEAD_SECONDS)
            state = backfill.collect_round(
                "bench",
                state["run"],
                produced,
                tenants=tenants,
                runs=runs,
                limits=limits_of,
                max_walks=settings["max_walks"],
            )
        else:
            most_history = max(most_history, state["run"]["history"] + 7)  # Finish, the end
            break
    seconds = clock.time() - START
    pages = {kind: math.ceil(n / PAGE_SIZE) for kind, n in counts.items()}
    floor = max(*(p / DEFAULT_ENDPOINT_RATE for p in pages.values()), sum(pages.values()) / global_rate)
    active = {e: stripe_api.last[e] - stripe_api.first[e] + STRIPE_SECONDS for e in stripe_api.first}
    totals = state["run"]["totals"]
    return Outcome(
        counts=counts,
        seconds=seconds,
        floor=floor,
        requests=stripe_api.requests,
        refused=stripe_api.refused,
        active=active,
        totals=dict(totals),
        executions=executions.started + 1,
        most_history=most_history,
        rounds=rounds,
        walks_most=walks_most,
    )


def report(name: str, outcome: Outcome, live: bool) -> bool:
    counts = outcome.counts
    minimum = sum(math.ceil(n / PAGE_SIZE) for n in counts.values())
    listed = outcome.totals["requests"]
    sent = sum(outcome.requests.values())
    refused = sum(outcome.refused.values())
    ratio = outcome.seconds / outcome.floor
    print(
        f"{name}: {counts['customers']:,} customers / {counts['subscriptions']:,} subscriptions / "
        f"{counts['invoices']:,} paid invoices / {counts['credit_notes']:,} credit notes / "
        f"{counts['refunds']:,} refunds, {'live' if live else 'test'} mode "
        f"({100 if live else 25}/s account, 25/s per endpoint)"
    )
    print(
        f"  import {outcome.seconds:,.0f} s, Stripe's floor {outcome.floor:,.0f} s: "
        f"{ratio:.3f}x the floor (budget 1.25x); {outcome.rounds} rounds, up to {outcome.walks_most} walks"
    )
    uses = ", ".join(
        f"{endpoint} {outcome.requests[endpoint] / (DEFAULT_ENDPOINT_RATE * outcome.active[endpoint]):.0%}"
        f" of 25/s over {outcome.active[endpoint]:,.0f} s"
        for endpoint in sorted(outcome.active)
    )
    print(f"  per-endpoint rate use: {uses}")
    account_use = sent / ((100 if live else 25) * outcome.seconds)
    print(
        f"  account: {sent:,} requests sent, {account_use:.0%} of its limit over the import; "
        f"429s {refused} ({refused / sent:.2%} of requests: {dict(outcome.refused) or 'none'})"
    )
    print(
        f"  list requests {listed:,} = {listed / minimum:.3f}x the minimum {minimum:,} (budget 1.02x); "
        f"imported {'/'.join(f'{outcome.totals[kind]:,}' for kind in KINDS)}"
    )
    print(
        f"  executions {outcome.executions}, most history events in one {outcome.most_history:,} "
        f"(limit {HISTORY_LIMIT:,})"
    )
    complete = all(outcome.totals[kind] == counts[kind] for kind in KINDS)
    return (
        complete
        and ratio <= 1.25
        and listed <= 1.02 * minimum
        and refused <= 0.01 * sent
        and outcome.most_history < HISTORY_LIMIT
    )


def main(customers: int = 100_000) -> int:
    settings = deployed()
    started = time.perf_counter()
    cost = measure_write_path(1_000)
    cpu_share = min(1.0, settings["memory_mb"] / LAMBDA_FULL_VCPU_MB)
    print(
        f"write path on moto (measured, {sum(cost.objects.values()):,} objects, one writer; "
        f"{cost.wall_seconds:.1f} s wall of which moto {cost.moto_seconds:.1f} s):"
    )
    for kind in KINDS:
        print(
            f"  {kind}: code {cost.code_seconds[kind] * 1000:.2f} ms and {cost.calls[kind]:.2f} DynamoDB "
            f"calls an object -> a page of 100 on Lambda ({settings['memory_mb']} MB, {cpu_share:.2f} vCPU, "
            f"{settings['writers']} writers, {DYNAMODB_SECONDS * 1000:.0f} ms a call): "
            f"{cost.page_seconds(kind, 100, cpu_share, settings['writers']):.2f} s"
        )
    print(
        f"settings (template.yaml): BACKFILL_CONCURRENCY {settings['max_walks']}, BACKFILL_PAGES_PER_STEP "
        f"{settings['pages_per_step']}, BACKFILL_WRITERS {settings['writers']}; modelled: Stripe "
        f"{STRIPE_SECONDS * 1000:.0f} ms a page, DynamoDB {DYNAMODB_SECONDS * 1000:.0f} ms a call, "
        f"{STEP_OVERHEAD_SECONDS * 1000:.0f} ms a step's invoke"
    )
    ok = True
    for live in (True, False):
        counts = account_counts(customers)
        ok &= report("import", simulate(counts, live, cost, settings), live)
    # What if the budget assumes more than Stripe allows (a wrong raise, or Stripe lowering a limit):
    # shown, not a budget (see README, "Known limits").
    counts = account_counts(customers)
    report("what if the budget assumed 40/s an endpoint", simulate(counts, True, cost, settings, 40.0), True)
    big = account_counts(1_000_000, invoices=3_000_000)
    ok &= report("planner at full size", simulate(big, True, cost, settings), True)
    # Three times that: past one execution's history budget, the run continues in new ones.
    bigger = {kind: 3 * n for kind, n in big.items()}
    ok &= report("planner at three times that", simulate(bigger, True, cost, settings), True)
    print(f"bench time {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
