"""Local stack only: moto's SQS FIFO deduplication made AWS's, and what a queue still holds.

moto 5.2.5 (``moto/sqs/models.py``, ``Queue.add_message``) drops a FIFO message when any message
still in the queue has its deduplication id: per queue, whatever the queue's ``DeduplicationScope``,
and only while that message has not been deleted. AWS deduplicates within the scope the queue
declares (``messageGroup``: a message group's own ids; ``queue``: the whole queue's) and for five
minutes after the first message was accepted, deleted or not. The template's events queue declares
``messageGroup``, so on moto one tenant's event id suppressed another tenant's event (a record never
written), and a Stripe retry arriving after its first delivery was applied was queued again.
``install`` replaces that check with AWS's rule; everything else about sending is moto's.

``backlog`` reads what a queue holds the way ``POST /_local/flush`` needs it: moto's
``ApproximateNumberOfMessages`` counts messages that wait behind a hidden message of their FIFO group
(visible, yet no receive returns them) and ``ApproximateNumberOfMessagesNotVisible`` the hidden ones,
in flight or hidden by a deferral, without saying until when.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from moto.sqs import models as sqs_models
from moto.sqs.models import DEDUPLICATION_TIME_IN_SECONDS, Message, Queue, sqs_backends

LOCAL_ACCOUNT = "123456789012"  # moto's default account, where the local stack's queues live

_DedupKey = tuple[str | None, str]  # (message group, or None for the queue scope; deduplication id)


def _moto_now_ms() -> float:
    """moto's SQS clock, looked up where moto's own messages look it up (a test may move it)."""
    now: float = sqs_models.unix_time_millis()  # type: ignore[attr-defined]  # moto imports it there
    return now


def _accepted(queue: Queue) -> OrderedDict[_DedupKey, int]:
    """The deduplication ids a queue accepted in the last five minutes, oldest first (sent time, ms)."""
    accepted: OrderedDict[_DedupKey, int] | None = getattr(queue, "_revsync_accepted", None)
    if accepted is None:
        accepted = OrderedDict()
        queue._revsync_accepted = accepted  # type: ignore[attr-defined]  # kept on moto's object
    return accepted


def is_duplicate(queue: Queue, message: Message) -> bool:
    """AWS's rule: a FIFO message whose deduplication id the queue accepted within the interval, in
    the queue's deduplication scope, is accepted but not delivered. Records the id otherwise."""
    if not queue.fifo_queue or not message.deduplication_id or message.approximate_receive_count:
        return False  # (a message received before is moving to the dead-letter queue: not a send)
    now = int(message.sent_timestamp or _moto_now_ms())
    accepted = _accepted(queue)
    horizon = now - DEDUPLICATION_TIME_IN_SECONDS * 1000
    while accepted and next(iter(accepted.values())) <= horizon:
        accepted.popitem(last=False)
    scope = message.group_id if getattr(queue, "deduplication_scope", "queue") == "messageGroup" else None
    key = (scope, message.deduplication_id)
    if key in accepted:
        return True
    accepted[key] = now
    return False


def install() -> None:
    """Patch moto's SQS in this process (idempotent)."""
    if getattr(Queue.add_message, "_revsync_local", False):
        return
    original = Queue.add_message

    def add_message(self: Queue, message: Message) -> None:
        if self.lambda_event_source_mappings:  # moto's own Lambda polling: left as moto has it
            original(self, message)
            return
        if is_duplicate(self, message):
            return
        with self._messages_lock:
            self._messages.append(message)
            self._messages_lock.notify_all()

    add_message._revsync_local = True  # type: ignore[attr-defined]
    Queue.add_message = add_message  # type: ignore[method-assign]


class Backlog(NamedTuple):
    """What a queue holds. ``hidden``: received and not deleted (in flight, or hidden by a deferral or
    a failed attempt) until ``hidden_until`` at the latest; ``blocked``: visible, but queued behind a
    hidden message of their FIFO group; ``ready``: the rest, which a receive returns now."""

    ready: int
    blocked: int
    hidden: int
    hidden_until: float | None  # Unix seconds

    @property
    def messages(self) -> int:
        return self.ready + self.blocked + self.hidden


def backlog(queue_url: str, region: str) -> Backlog:
    """The queue's backlog, read from moto's backend in this process (in-process or server mode)."""
    queue = sqs_backends[LOCAL_ACCOUNT][region].get_queue(queue_url.rsplit("/", 1)[-1])
    now = _moto_now_ms()
    with queue._messages_lock:
        messages = list(queue._messages)
    hidden = [m for m in messages if m.visible_at > now]
    held_groups = {m.group_id for m in hidden if m.group_id is not None} if queue.fifo_queue else set()
    visible = [m for m in messages if m.visible_at <= now]
    blocked = sum(1 for m in visible if m.group_id in held_groups)
    until = max((m.visible_at for m in hidden), default=None)
    return Backlog(
        ready=len(visible) - blocked,
        blocked=blocked,
        hidden=len(hidden),
        hidden_until=None if until is None else until / 1000,
    )
