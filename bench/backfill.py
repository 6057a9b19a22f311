"""Backfill speed: how much of the account's rate limit the import keeps busy (target: at least 85%).

10,000 customers (each with a subscription and a paid invoice) are seeded in the Stripe sandbox over
two years; the sandbox answers each call after ~300 ms and allows 25 requests/s, like Stripe in test
mode, from a process of its own (Stripe's work does not compete for this process's CPU). The real
importer steps (revsync.services.backfill) and Stripe client walk it over HTTP in the
state machine's rounds, `BACKFILL_CONCURRENCY` walks at a time like the Map state. Storage is in
memory here: this measures the Stripe side (the schedule of list requests), not local DynamoDB.
Prints the share of the rate limit used, the requests against the minimum, and the wall time; exits 1
when either budget (at least 85% of the rate, at most 1.02x the minimum) is missed.
Run: `make bench` (or `python -m bench.backfill [customers]`).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from revsync.domain.backfill import Segment, collect, new_totals
from revsync.domain.tenancy import Connection, Tenant
from revsync.services import backfill
from revsync.stripe_api.client import StripeAccounts
from revsync.stripe_api.pacing import Pacer

from local.http import http
from local.stripe_sandbox.server import serve
from local.template import load_template
from tests.e2e.conftest import free_port
from tests.fakes import FakeCustomers, FakeTenants

LATENCY_MS = 300  # Stripe-like: what the bench simulates, not a setting of revsync
KEY = "sk_test_benchbackfill0001"
LISTS = ("/v1/customers", "/v1/subscriptions", "/v1/invoices")


def deployed_settings() -> dict[str, float]:
    """The importer's settings exactly as template.yaml deploys them (no bench-only knobs)."""
    variables = load_template()["Resources"]["ImporterFunction"]["Properties"]["Environment"]["Variables"]
    return {
        "concurrency": int(variables["BACKFILL_CONCURRENCY"]),
        "pages_per_step": int(variables["BACKFILL_PAGES_PER_STEP"]),
        # Unset in the template: Settings' default, Stripe's test-mode limit.
        "rate_limit": float(variables.get("STRIPE_RATE_LIMIT_TEST", 25.0)),
    }


DEPLOYED = deployed_settings()
RATE_LIMIT = DEPLOYED["rate_limit"]
CONCURRENCY = int(DEPLOYED["concurrency"])
PAGES_PER_STEP = int(DEPLOYED["pages_per_step"])


class _Progress:
    def backfill_started(self, tenant_id: str, now: int, stage: str) -> None: ...

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None: ...

    def backfill_finished(
        self,
        tenant_id: str,
        now: int,
        counts: dict[str, int],
        error: str | None,
        requests: int = 0,
        walks: int = 0,
    ) -> None: ...


def _serve_sandbox(port: int, ready: threading.Event) -> None:
    serve(port)
    ready.set()
    threading.Event().wait()  # until the bench ends this process


def main(customers: int = 10_000) -> int:
    port, spawn = free_port(), multiprocessing.get_context("spawn")
    ready = spawn.Event()
    sandbox = spawn.Process(target=_serve_sandbox, args=(port, ready), daemon=True)
    sandbox.start()
    if not ready.wait(60):
        raise RuntimeError("the Stripe sandbox did not start")
    try:
        return _run(f"http://127.0.0.1:{port}", customers)
    finally:
        sandbox.terminate()
        sandbox.join()


def _run(url: str, customers: int) -> int:
    auth = {"authorization": f"Bearer {KEY}"}
    account_id = http("GET", f"{url}/v1/account", headers=auth)[1]["id"]
    now = int(time.time())
    http("POST", f"{url}/_sandbox/seed", {"customers": customers, "start": now - 2 * 365 * 86_400}, auth)
    http("POST", f"{url}/_sandbox/config", {"latency_ms": LATENCY_MS, "rate_limit_per_second": RATE_LIMIT})

    tenant = Tenant("bench", Connection("connected", "api_key", account_id, secret_name="bench")).with_config(
        "id"
    )
    tenants, store, progress = FakeTenants({"bench": tenant}), FakeCustomers(), _Progress()
    stripe = StripeAccounts(platform_key=lambda: KEY, tenant_api_key=lambda _: KEY, api_base=url)

    budget = Pacer(RATE_LIMIT)  # one budget shared by every walk, as store.budget does across Lambdas

    def step(segment: Segment) -> list[Segment]:
        pacer = budget
        return backfill.import_segment(
            "bench",
            segment,
            tenants=tenants,
            customers=store,
            stripe=stripe,
            progress=progress,
            pacer=pacer,
            max_pages=PAGES_PER_STEP,
            deadline=float("inf"),
        )

    started = time.monotonic()
    active = backfill.start(
        "bench", tenants=tenants, progress=progress, walks=CONCURRENCY, now=int(time.time())
    )
    totals, rounds = new_totals(), 0
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        while active:
            rounds += 1
            produced = list(pool.map(step, active))
            totals, active = collect(totals, produced, CONCURRENCY)
    elapsed = time.monotonic() - started
    stats = http("GET", f"{url}/_sandbox/stats")[1]["requests"]
    listed = sum(
        v for k, v in stats.items() if k.startswith(f"{account_id} GET /v1/") and k.split()[-1] in LISTS
    )
    throttled = stats.get(f"{account_id} 429", 0)
    minimum = 3 * math.ceil(customers / 100)
    used = listed / (elapsed * RATE_LIMIT)
    imported = f"{totals['customers']}/{totals['subscriptions']}/{totals['invoices']}"
    print(
        f"customers {customers}, imported {imported} (customers/subscriptions/invoices), "
        f"records {len(store.records)}"
    )
    print(
        f"list requests {listed} = {listed / minimum:.3f}x the minimum {minimum} (budget 1.02x), "
        f"+{listed - minimum} over {totals['walks']} walks, 429s {throttled}, rounds {rounds}"
    )
    print(
        f"wall {elapsed:.1f}s at {LATENCY_MS} ms/call; rate limit used {used:.0%} of {RATE_LIMIT:.0f}/s "
        f"(target at least 85%)"
    )
    ok = (
        used >= 0.85
        and listed <= 1.02 * minimum
        and throttled == 0
        and totals["customers"] == customers
        and len(store.records) == customers
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
