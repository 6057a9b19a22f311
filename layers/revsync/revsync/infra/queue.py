"""The events queue (SQS FIFO) and its dead-letter queue, where undeliverable messages are parked."""

from __future__ import annotations

import hashlib
import json

from botocore.exceptions import BotoCoreError, ClientError

from revsync.domain.events import Envelope, ParkedEvent, message_group, parked_group
from revsync.errors import UpstreamUnavailable
from revsync.infra import aws


class QueueError(UpstreamUnavailable):
    """SQS did not take the message."""

    code = "queue_unavailable"


class SqsEventQueue:
    """The events queue (``url``); a tenant's events spread over ``tenant_message_groups`` groups."""

    def __init__(self, url: str, tenant_message_groups: int) -> None:
        self._url, self._groups = url, tenant_message_groups

    def send(self, envelope: Envelope) -> None:
        try:
            aws.sqs().send_message(
                QueueUrl=self._url,
                MessageBody=json.dumps(envelope, separators=(",", ":")),
                MessageGroupId=message_group(envelope, self._groups),
                # Stripe retries reuse the event id: FIFO drops the copy within its 5-minute window
                # (per message group: a customer's events are in one group).
                MessageDeduplicationId=envelope["event_id"],
            )
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(type(exc).__name__) from exc


class DeadLetters:
    """The dead-letter queue (``url``): messages parked with a ``reason`` attribute, to be redriven
    after a fix."""

    def __init__(self, url: str) -> None:
        self._url = url

    def send(self, body: str, group: str, deduplication_id: str, reason: str) -> None:
        try:
            aws.sqs().send_message(
                QueueUrl=self._url,
                MessageBody=body,
                MessageGroupId=group,
                MessageDeduplicationId=deduplication_id,
                MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
            )
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(type(exc).__name__) from exc

    def park(self, parked: ParkedEvent) -> None:
        """A verified delivery the receiver could not read (the bytes as Stripe sent them)."""
        body = json.dumps(parked, separators=(",", ":"))
        digest = hashlib.sha256(parked["body"].encode()).hexdigest()
        self.send(body, parked_group(parked), digest, parked["reason"])


class EventsQueueVisibility:
    """Hide a message of the events queue (``url``) for a while (Stripe asked us to wait)."""

    MAX_SECONDS = 12 * 3600  # SQS's limit on a visibility timeout

    def __init__(self, url: str) -> None:
        self._url = url

    def hide(self, receipt_handle: str, seconds: float) -> None:
        aws.sqs().change_message_visibility(
            QueueUrl=self._url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(1, min(self.MAX_SECONDS, round(seconds))),
        )
