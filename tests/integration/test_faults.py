"""Faults at the boto3 and Stripe boundaries, and crashes at every step of the write path.

The same story of Stripe events runs twice through the real handlers on moto: once cleanly, once with
seeded faults (DynamoDB throttling and conditional-check storms, SQS send failures, Stripe 5xx and
429, a crash before the state write, between it and the projection, and after both). Stripe is
played as Stripe plays it: a delivery answered 5xx is sent again. After retries, and a redrive of
whatever was parked once the faults stop, every record must equal the clean run's. The figures
(faults injected, messages parked and redriven) are printed and quoted in the README.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import stripe
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from revsync.domain.tenancy import Connection, Tenant
from revsync.errors import Deferred
from revsync.store.customers import CustomerStore
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from local.redrive import redrive
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration

CUSTOMERS = [f"cus_fault{n}" for n in range(5)]


def _story() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Events over a month for five customers, and Stripe's final objects (for same-second reads)."""
    rng = random.Random(7)
    events: list[dict[str, Any]] = []
    final: dict[str, dict[str, Any]] = {}
    t = FROZEN_NOW - 30 * 86_400
    for n, customer_id in enumerate(CUSTOMERS):
        customer = S.customer(customer_id, email=f"c{n}@example.com", metadata={"app_id": f"u-{n}"})
        events.append(S.event("customer.created", customer, created=t + n, account="acct_faults"))
        final[customer_id] = customer
        sub = S.subscription(customer_id, [S.subscription_item(S.price(1000 * (n + 1)))], status="trialing")
        events.append(
            S.event("customer.subscription.created", sub, created=t + 100 + n, account="acct_faults")
        )
        for step in range(3):
            t_step = t + 1000 * (step + 1) + n
            quantity = rng.randint(1, 4)
            item = {**sub["items"]["data"][0], "quantity": quantity}
            sub = {**sub, "status": "active", "items": {**sub["items"], "data": [item]}}
            events.append(
                S.event("customer.subscription.updated", sub, created=t_step, account="acct_faults")
            )
            invoice = S.invoice(customer_id, sub["id"], amount_paid=1000 * quantity, paid_at=t_step)
            events.append(S.event("invoice.paid", invoice, created=t_step + 1, account="acct_faults"))
        # Two different snapshots in one second: only a read from Stripe settles which is current.
        for quantity in (7, 8):
            item = {**sub["items"]["data"][0], "quantity": quantity}
            sub = {**sub, "items": {**sub["items"], "data": [item]}}
            events.append(
                S.event("customer.subscription.updated", sub, created=t + 5000 + n, account="acct_faults")
            )
        if n % 2 == 0:
            sub = {**sub, "status": "canceled", "ended_at": t + 9000 + n, "canceled_at": t + 9000 + n}
            events.append(
                S.event("customer.subscription.deleted", sub, created=t + 9000 + n, account="acct_faults")
            )
        final[sub["id"]] = sub
    return events, final


class Faults:
    """Seeded faults, injected only while a function's handler runs (not in the test's own calls)."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng, self.rate, self.on = random.Random(seed), rate, True
        self.injected: Counter[str] = Counter()
        self.in_handler = False

    def roll(self, name: str) -> bool:
        if self.on and self.in_handler and self.rng.random() < self.rate:
            self.injected[name] += 1
            return True
        return False


AWS_FAULTS = {
    "Query": "ProvisionedThroughputExceededException",
    "GetItem": "ThrottlingException",
    "PutItem": "ConditionalCheckFailedException",  # a conditional-check storm on the state write
    "UpdateItem": "ProvisionedThroughputExceededException",
    "SendMessage": "ServiceUnavailable",
}


@contextmanager
def injected(faults: Faults, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_call = BaseClient._make_api_call  # type: ignore[attr-defined]  # botocore defines it at runtime
    real_invoke = lambda_runtime.invoke

    def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        code = AWS_FAULTS.get(operation)
        if code and faults.roll(f"{operation}:{code}"):
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)
        return real_call(self, operation, params)

    def invoke(logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        faults.in_handler = True
        try:
            return real_invoke(logical_id, event)
        finally:
            faults.in_handler = False

    def crashing(method: Callable[..., Any], where: str, after: bool = False) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not after and faults.roll(f"crash:{where}"):
                raise RuntimeError(f"crash {where}")
            result = method(*args, **kwargs)
            if after and faults.roll(f"crash:{where}"):
                raise RuntimeError(f"crash {where}")
            return result

        return wrapper

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    monkeypatch.setattr(lambda_runtime, "invoke", invoke)
    monkeypatch.setattr(CustomerStore, "save", crashing(CustomerStore.save, "before_state_write"))
    monkeypatch.setattr(CustomerStore, "project", crashing(CustomerStore.project, "before_projection"))
    monkeypatch.setattr(
        CustomerStore, "project", crashing(CustomerStore.project, "after_projection", after=True)
    )
    yield


class FlakyStripe(FakeStripe):
    """Stripe's current objects, answering 5xx or 429 at the fault rate."""

    faults: Faults | None = None

    def fetch(self, tenant: Tenant, kind: str, object_id: str) -> Any:
        if self.faults is not None and self.faults.roll("stripe:500"):
            raise stripe.APIError("injected 500", http_status=500)
        if self.faults is not None and self.faults.roll("stripe:429"):
            raise Deferred(0.0, "Stripe rate limit (429)")
        return super().fetch(tenant, kind, object_id)


class NoWait:
    """Locally a deferral is retried at the next poll (no wall-clock wait in a test)."""

    def hide(self, receipt_handle: str, seconds: float) -> None:
        return None


def _run(
    events: list[dict[str, Any]], final: dict[str, Any], faults: Faults | None
) -> tuple[dict[str, Any], Counter[str]]:
    figures: Counter[str] = Counter()
    with InProcessStack(clock=lambda: FROZEN_NOW) as stack:
        TenantStore().save(
            Tenant("faulty", Connection("connected", "oauth", "acct_faults")).with_config("metadata.app_id"),
            FROZEN_NOW,
        )
        flaky = FlakyStripe(objects=dict(final))
        flaky.faults = faults
        stack.wire("WorkerFunction", stripe=flaky, visibility=NoWait())
        for index, event in enumerate(events):
            for _attempt in range(50):  # Stripe retries a delivery that was not answered 2xx
                response = stack.post_webhook(event, PLATFORM_SECRET)
                assert response.status in (200, 503), response.body
                if response.status == 200:
                    break
                figures["deliveries retried by Stripe"] += 1
            else:
                pytest.fail("a delivery never got a 2xx")
            if index % 7 == 6:  # the worker runs while deliveries go on
                stack.drain()
        for _round in range(10):
            stack.drain()
            parked = stack.queue_depth("EventsDeadLetterQueue")
            if not parked:
                break
            figures["messages parked"] += parked
            if faults is not None:
                faults.on = False  # the outage is over: the operator redrives
            sqs = stack.client("sqs")
            figures["messages redriven"] += redrive(
                sqs, stack.queue_url("EventsDeadLetterQueue"), stack.queue_url("EventsQueue")
            ).moved
        assert stack.queue_depth("EventsQueue") == 0
        assert stack.queue_depth("EventsDeadLetterQueue") == 0
        records = {}
        for n in range(len(CUSTOMERS)):
            response = stack.request("GET", f"/tenants/faulty/customers/u-{n}")
            assert response.status == 200, response.body
            records[f"u-{n}"] = response.json()
    return records, figures


@pytest.mark.parametrize(("seed", "rate"), [(1, 0.1), (2, 0.25)])
def test_records_after_faults_retries_and_redrive_equal_the_clean_run(
    seed: int, rate: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, final = _story()
    clean, _ = _run(events, final, None)
    faults = Faults(seed, rate)
    with injected(faults, monkeypatch):
        faulted, figures = _run(events, final, faults)
    print(
        f"\nfaults seed={seed} rate={rate}: {sum(faults.injected.values())} injected "
        f"{dict(sorted(faults.injected.items()))}; {dict(figures)}"
    )
    assert sum(faults.injected.values()) > 20  # the run was really faulty
    for external_id, record in clean.items():
        differing = {
            k: (v, faulted[external_id].get(k)) for k, v in record.items() if faulted[external_id].get(k) != v
        }
        assert not differing, (external_id, differing)
