"""The local stack's queues behave like AWS's where the tests rely on them (local/moto_fifo.py), and
``POST /_local/flush`` waits for deferred messages or says what is left (local/stack.py).

moto's clock (``moto.sqs.models.unix_time_millis``) is replaced by one the test moves: no test here
waits for wall-clock time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from moto.sqs import models as sqs_models

from local import moto_fifo
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from local.moto_fifo import Backlog
from local.stack import LocalStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration


class MotoClock:
    """moto's SQS clock (milliseconds), moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ms = FROZEN_NOW * 1000.0
        monkeypatch.setattr(sqs_models, "unix_time_millis", lambda: self.ms)

    def advance(self, seconds: float) -> None:
        self.ms += seconds * 1000


def _send(stack: InProcessStack, group: str, dedup: str, body: str = "{}") -> None:
    stack.client("sqs").send_message(
        QueueUrl=stack.queue_url("EventsQueue"),
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=dedup,
    )


def _bodies(stack: InProcessStack) -> list[str]:
    messages = stack.client("sqs").receive_message(
        QueueUrl=stack.queue_url("EventsQueue"), MaxNumberOfMessages=10, VisibilityTimeout=30
    )
    return sorted(m["Body"] for m in messages.get("Messages", []))


def test_two_tenants_events_with_one_event_id_are_both_applied(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    """The queue deduplicates per message group (template: DeduplicationScope messageGroup), and a
    group is one tenant's: another tenant's event with the same id is its own."""
    for tenant in ("acme", "globex"):
        connect_oauth(tenant, f"acct_{tenant}")
        customer = S.customer(f"cus_{tenant}", metadata={"app_id": "u-1"})
        event = {**S.event("customer.created", customer, created=FROZEN_NOW, account=f"acct_{tenant}")}
        event["id"] = "evt_shared"
        assert stack.post_webhook(event, PLATFORM_SECRET).status == 200

    assert stack.drain().succeeded == 2
    for tenant in ("acme", "globex"):
        response = stack.request("GET", f"/tenants/{tenant}/customers/u-1")
        assert response.status == 200, (tenant, response.body)


def test_a_true_duplicate_is_dropped_for_five_minutes_even_once_deleted(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = MotoClock(monkeypatch)
    _send(stack, "acme#1", "evt_1", "first")
    _send(stack, "acme#1", "evt_1", "retry")  # Stripe's retry: the same group, the same id
    _send(stack, "acme#2", "evt_1", "other group")
    assert _bodies(stack) == ["first", "other group"]
    sqs = stack.client("sqs")
    sqs.purge_queue(QueueUrl=stack.queue_url("EventsQueue"))  # applied and deleted

    clock.advance(299)
    _send(stack, "acme#1", "evt_1", "retry after it was applied")
    assert _bodies(stack) == []  # AWS keeps the id for five minutes, deleted or not
    clock.advance(2)
    _send(stack, "acme#1", "evt_1", "after the interval")
    assert _bodies(stack) == ["after the interval"]


def test_a_queue_scoped_for_the_whole_queue_deduplicates_across_groups(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    MotoClock(monkeypatch)
    sqs = stack.client("sqs")
    url = sqs.create_queue(
        QueueName="scoped.fifo", Attributes={"FifoQueue": "true", "DeduplicationScope": "queue"}
    )["QueueUrl"]
    for group in ("a", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=group, MessageGroupId=group, MessageDeduplicationId="d")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["a"]


def test_backlog_names_what_waits_behind_a_deferred_message(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What moto's counters say, and what the backlog adds: the group behind a hidden head."""
    MotoClock(monkeypatch)
    for n in range(5):
        _send(stack, "acme#3", f"evt_{n}", f"acme#3 {n}")
    _send(stack, "acme#4", "evt_other", "acme#4")
    sqs, url = stack.client("sqs"), stack.queue_url("EventsQueue")
    head = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)["Messages"][0]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=head["ReceiptHandle"], VisibilityTimeout=90)

    counters = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # moto counts the four behind the deferred head as available, though no receive returns them.
    assert (counters["ApproximateNumberOfMessages"], counters["ApproximateNumberOfMessagesNotVisible"]) == (
        "5",
        "1",
    )
    assert moto_fifo.backlog(url, stack.client("sqs").meta.region_name) == Backlog(
        ready=1, blocked=4, hidden=1, hidden_until=FROZEN_NOW + 90.0
    )
    assert _bodies(stack) == ["acme#4"]


# --- flush ----------------------------------------------------------------------------------------


class Script:
    """A local stack's flush with its clock, sleep and queues played by the test."""

    def __init__(self, states: Callable[[float], Backlog]) -> None:
        self.now = 1_000.0
        self.states = states
        self.stack = LocalStack(clock=lambda: self.now, sleep=self.advance)
        self.stack.backlog = self.backlog  # type: ignore[method-assign]

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def backlog(self, logical_id: str) -> Backlog:
        empty = Backlog(0, 0, 0, None)
        return self.states(self.now) if logical_id == "EventsQueue" else empty


def test_flush_waits_for_deferred_messages_and_the_group_behind_them() -> None:
    # A deferred head until t=1030 holds back 428 messages of its group, which the worker then applies.
    def states(now: float) -> Backlog:
        if now < 1_030:
            return Backlog(ready=0, blocked=428, hidden=1, hidden_until=1_030.0)
        if now < 1_040:
            return Backlog(ready=429, blocked=0, hidden=0, hidden_until=None)
        return Backlog(0, 0, 0, None)

    script = Script(states)

    assert script.stack.flush(timeout=120) == {"flushed": True, "dead_letters": 0}
    assert script.now >= 1_040


def test_flush_past_its_deadline_says_what_is_still_deferred_and_until_when() -> None:
    script = Script(lambda now: Backlog(ready=0, blocked=428, hidden=1, hidden_until=1_300.0))

    answer = script.stack.flush(timeout=60)

    assert answer == {
        "flushed": False,
        "dead_letters": 0,
        "undelivered": 0,
        "queued": 428,
        "deferred": 1,
        "deferred_until": 1_300.0,
    }
    assert 1_060 <= script.now < 1_061
