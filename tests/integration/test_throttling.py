"""A throttled DynamoDB write is retried, never lost, never parked: the worker defers the message.

DynamoDB throttling is injected at the boto3 boundary (every client's ``_make_api_call``, as
``test_faults.py`` does: above botocore's and PynamoDB's own retries, so it is what they give up
with) for every DynamoDB call the worker makes, for more deliveries than ``MaxReceiveCount``. The
worker hides each message for a growing, jittered while (in moto: its SQS clock is the test's); no
message reaches the dead-letter queue. Once throttling stops, every event is applied, once.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto.sqs import models as sqs_models
from revsync.domain.events import envelope_for, event_from_dict

from local import lambda_runtime, moto_fifo
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from local.template import load_template
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration

DYNAMODB_OPERATIONS = {"Query", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
CODES = ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded")


class Throttling:
    def __init__(self) -> None:
        self.operations, self.in_worker = set(DYNAMODB_OPERATIONS), False
        self.codes = itertools.cycle(CODES)
        self.injected: Counter[str] = Counter()


@contextmanager
def throttled(throttling: Throttling, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_call = BaseClient._make_api_call  # type: ignore[attr-defined]  # botocore defines it at runtime
    real_invoke = lambda_runtime.invoke

    def call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if throttling.in_worker and operation in throttling.operations:
            throttling.injected[operation] += 1
            code = next(throttling.codes)
            raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)
        return real_call(self, operation, params)

    def invoke(logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        throttling.in_worker = logical_id == "WorkerFunction"
        try:
            return real_invoke(logical_id, event)
        finally:
            throttling.in_worker = False

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    monkeypatch.setattr(lambda_runtime, "invoke", invoke)
    yield


def test_throttled_writes_are_deferred_past_max_receive_count_then_applied_once(
    stack: InProcessStack, connect_oauth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_ms = [FROZEN_NOW * 1000.0]
    monkeypatch.setattr(sqs_models, "unix_time_millis", lambda: moto_ms[0])
    connect_oauth("acme", "acct_acme")
    hidden: list[float] = []
    real_hide = stack.graph("WorkerFunction").visibility.hide

    def hide(receipt_handle: str, seconds: float) -> None:
        hidden.append(seconds)
        real_hide(receipt_handle, seconds)

    stack.wire("WorkerFunction", visibility=SimpleNamespace(hide=hide))
    sub = S.subscription("cus_1", [S.subscription_item(S.price(2500))], status="active")
    invoice = S.invoice("cus_1", sub["id"], amount_paid=2500, paid_at=FROZEN_NOW - 10)
    events = [
        S.event("customer.created", S.customer("cus_1", metadata={"app_id": "u-1"}), created=FROZEN_NOW - 30),
        S.event("customer.subscription.created", sub, created=FROZEN_NOW - 20),
        S.event("invoice.paid", invoice, created=FROZEN_NOW - 10),
        S.event("customer.created", S.customer("cus_2", metadata={"app_id": "u-2"}), created=FROZEN_NOW - 5),
    ]
    for event in events:
        assert stack.post_webhook({**event, "account": "acct_acme"}, PLATFORM_SECRET).status == 200
    max_receive_count = int(load_template()["Parameters"]["MaxReceiveCount"]["Default"])
    queue, region = stack.queue_url("EventsQueue"), stack.client("sqs").meta.region_name

    def deliver() -> int:
        """One delivery of what is visible, then moto's clock past every deferral."""
        applied = stack.drain().succeeded
        assert stack.queue_depth("EventsDeadLetterQueue") == 0
        backlog = moto_fifo.backlog(queue, region)
        if backlog.hidden_until is not None:
            moto_ms[0] = backlog.hidden_until * 1000 + 1
        return applied

    throttling = Throttling()
    applied = 0
    with throttled(throttling, monkeypatch):
        # Every call throttled, for more deliveries than MaxReceiveCount: nothing applied, all kept.
        for _delivery in range(max_receive_count + 2):
            assert deliver() == 0
            assert moto_fifo.backlog(queue, region).messages == len(events)
        # Then one kind of call at a time: each store's reads and writes (the tenant, the state's
        # Query and write, the record's update, the watermark's) throttled somewhere on the way.
        for operation in ("Query", "PutItem", "UpdateItem", "GetItem"):
            throttling.operations = {operation}
            applied += deliver()
        throttling.operations = set()
        applied += deliver()

    assert set(throttling.injected) == {"GetItem", "Query", "PutItem", "UpdateItem"}, throttling.injected
    assert hidden[0] <= 1.5 < max(hidden)  # a growing wait, not a fixed one
    assert applied == len(events)
    assert moto_fifo.backlog(queue, region).messages == 0
    assert stack.queue_depth("EventsDeadLetterQueue") == 0
    record = stack.request("GET", "/tenants/acme/customers/u-1").json()
    assert (record["mrr"], record["total_paid"]) == (2500, 2500)  # the invoice counted once
    assert stack.request("GET", "/tenants/acme/customers/u-2").status == 200


def test_a_batch_held_back_by_a_deferral_is_not_a_failed_invocation_and_waits_as_one(
    stack: InProcessStack, connect_oauth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throttled head defers its group: its skipped group mates are hidden as long (SQS holds a
    FIFO group while any of its messages is in flight), and a batch that only that held back is
    reported as such, not as an error of the whole invocation (an alarm, and Lambda scaling back)."""
    connect_oauth("acme", "acct_acme")
    hidden: dict[str, float] = {}
    stack.wire("WorkerFunction", visibility=SimpleNamespace(hide=hidden.__setitem__))
    customer = S.customer("cus_1", metadata={"app_id": "u-1"})
    records = [
        _sqs_record(
            f"m{n}", S.event("customer.updated", customer, created=FROZEN_NOW + n, account="acct_acme")
        )
        for n in range(3)
    ]

    throttling = Throttling()
    with throttled(throttling, monkeypatch):
        throttling.in_worker = True
        result = lambda_runtime.invoke("WorkerFunction", {"Records": records})

    assert result == {"batchItemFailures": [{"itemIdentifier": f"m{n}"} for n in range(3)]}
    assert set(hidden) == {"r-m0", "r-m1", "r-m2"}
    assert len(set(hidden.values())) == 1


def _sqs_record(message_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The receiver's envelope of ``event``, as the event source mapping hands it to the worker."""
    envelope = envelope_for(event_from_dict(event), "acme")
    return {
        "messageId": message_id,
        "receiptHandle": f"r-{message_id}",
        "body": json.dumps(envelope),
        "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": "acme#3"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }
