"""The scheduled catch-up as deployed: EventBridge Scheduler's ``queue_catch_ups`` puts one job per
connected tenant on the catch-up queue, and the queue's event source mapping hands the reconciler
one job per invocation (drained here as Lambda would, on moto)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from revsync.domain.reconcile import RunEnd
from revsync.domain.tenancy import Connection, ConnectionStatus, Tenant
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe

pytestmark = pytest.mark.integration


def _tenants(statuses: list[tuple[str, ConnectionStatus]]) -> None:
    for tenant_id, status in statuses:
        tenant = Tenant(
            tenant_id, Connection(status, "oauth", f"acct_{tenant_id}", connected_at=FROZEN_NOW - 3600)
        )
        TenantStore().save(tenant.with_config("metadata.app_id"), FROZEN_NOW)


@pytest.fixture
def stripe_events(stack: InProcessStack) -> FakeStripe:
    fake = FakeStripe()
    customer = S.customer("cus_1", metadata={"app_id": "u-1"})
    fake.events = [S.event("customer.created", customer, created=FROZEN_NOW - 60, account="acct_x")]
    stack.wire("ReconcilerFunction", stripe=fake)
    return fake


def _queued(stack: InProcessStack, queue: str = "ReconcileQueue") -> list[dict[str, Any]]:
    """What waits on a queue (received and made visible again at once)."""
    sqs = stack.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=stack.queue_url(queue), MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_the_schedule_queues_one_job_per_connected_tenant_least_recently_reconciled_first(
    stack: InProcessStack, stripe_events: FakeStripe
) -> None:
    _tenants([("alpha", "connected"), ("beta", "connected"), ("gamma", "revoked"), ("delta", "connected")])
    progress = stack.graph("ReconcilerFunction").progress
    progress.finish("alpha", RunEnd(FROZEN_NOW - 100, 0, FROZEN_NOW - 100, False, None))
    progress.finish("delta", RunEnd(FROZEN_NOW - 900, 0, FROZEN_NOW - 900, False, None))
    assert stack.graph("ReconcilerFunction").candidates.last_reconciled() == {
        "alpha": FROZEN_NOW - 100,
        "beta": None,
        "delta": FROZEN_NOW - 900,
    }

    result: Any = lambda_runtime.invoke("ReconcilerFunction", {"action": "queue_catch_ups"})

    assert result == {"queued": 3}
    assert [job["tenant_id"] for job in _queued(stack)] == ["beta", "delta", "alpha"]
    lambda_runtime.invoke("ReconcilerFunction", {"action": "queue_catch_ups"})  # a retried schedule
    assert len(_queued(stack)) == 3  # the same period's jobs are queued once

    stats = stack.drain(queue="ReconcileQueue")

    assert (stats.received, stats.failed) == (3, 0)
    for tenant_id in ("alpha", "beta", "delta"):
        assert stack.graph("ReconcilerFunction").progress.get(tenant_id).recovered == 1
        assert stack.request("GET", f"/tenants/{tenant_id}/customers/u-1").status == 200
    assert stack.request("GET", "/tenants/gamma/customers/u-1").status == 404
    assert stack.graph("ReconcilerFunction").progress.get("gamma").last_reconciled_at is None


class _FailsFor(FakeStripe):
    """Stripe as one broken account sees it: every list of its events fails."""

    def __init__(self, account: str) -> None:
        super().__init__()
        self.account = account

    def list_events(self, tenant: Tenant, **kwargs: Any) -> Any:
        if tenant.connection.account_id == self.account:
            raise RuntimeError("this account's catch-up keeps failing")
        return super().list_events(tenant, **kwargs)


def test_a_tenant_whose_catch_up_keeps_failing_lands_in_the_dead_letter_queue_and_others_go_on(
    stack: InProcessStack,
) -> None:
    _tenants([("alpha", "connected"), ("bad", "connected"), ("omega", "connected")])
    fake = _FailsFor("acct_bad")
    fake.events = [
        S.event("customer.created", S.customer("cus_1", metadata={"app_id": "u-1"}), created=FROZEN_NOW - 60)
    ]
    stack.wire("ReconcilerFunction", stripe=fake)
    lambda_runtime.invoke("ReconcilerFunction", {"action": "queue_catch_ups"})

    stats = stack.drain(queue="ReconcileQueue")

    assert stats.failed == 3  # the queue's maxReceiveCount: then SQS moves it to the dead letters
    [parked] = _queued(stack, "ReconcileDeadLetterQueue")
    assert (parked["tenant_id"], parked["reason"]) == ("bad", "schedule")
    for tenant_id in ("alpha", "omega"):
        assert stack.graph("ReconcilerFunction").progress.get(tenant_id).recovered == 1
    assert stack.queue_depth("ReconcileQueue") == 0


@pytest.fixture
def short_runs(stack: InProcessStack) -> list[float]:
    """Each run's deadline, from a monotonic clock the test moves: a run ends after one page."""
    now = [0.0]

    def monotonic() -> float:
        now[0] += 60.0  # each look at the clock is a minute later: the 105 s budget lasts one page
        return now[0]

    stack.wire("ReconcilerFunction", monotonic=monotonic)
    return now


def test_a_run_out_of_time_goes_on_in_a_job_of_its_own_until_the_window_is_listed_to_its_end(
    stack: InProcessStack, short_runs: list[float]
) -> None:
    _tenants([("alpha", "connected")])
    fake = FakeStripe()
    fake.events = [
        S.event(
            "customer.created",
            S.customer(f"cus_{n}", metadata={"app_id": f"u-{n}"}),
            created=FROZEN_NOW - 3000 + n,
            account="acct_alpha",
        )
        for n in range(250)
    ]
    stack.wire("ReconcilerFunction", stripe=fake)
    assert stack.request("POST", "/tenants/alpha/stripe/reconcile").status == 202

    stats = stack.drain(queue="ReconcileQueue")

    assert (stats.received, stats.failed) == (3, 0)  # the request's job, then two continuations
    assert fake.event_pages == 3  # each page listed once
    state = stack.graph("ReconcilerFunction").progress.get("alpha")
    assert (state.recovered, state.pending, state.reconciled_through) == (250, None, FROZEN_NOW)
    assert stack.request("GET", "/tenants/alpha/customers/u-0").status == 200


def test_the_status_document_shows_a_window_left_pending_and_how_far_it_got(
    stack: InProcessStack, short_runs: list[float]
) -> None:
    _tenants([("alpha", "connected")])
    fake = FakeStripe()
    fake.events = [
        S.event(
            "customer.created", S.customer(f"cus_{n}"), created=FROZEN_NOW - 3000 + n, account="acct_alpha"
        )
        for n in range(150)
    ]
    stack.wire("ReconcilerFunction", stripe=fake)
    stack.request("POST", "/tenants/alpha/stripe/reconcile")
    stack.drain(queue="ReconcileQueue", max_batches=1)  # the first run only

    events = stack.request("GET", "/tenants/alpha/stripe").json()["events"]

    assert events["pending"] == {
        "from": FROZEN_NOW - 3600 - 15 * 60,  # the connection's start, less the margin
        "through": FROZEN_NOW,
        "listed": 100,
        "recovered": 100,
        "continuing": True,
    }
    answer = stack.request("POST", "/tenants/alpha/stripe/reconcile")  # the chain is on its way
    assert (answer.status, answer.json()["error"]) == (409, "reconcile_running")
