"""The events queue (SQS FIFO) as the receiver sees it."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from revsync.domain.events import Envelope, message_group
from revsync.infra import aws
from revsync.settings import get_settings


class QueueError(RuntimeError):
    pass


class SqsEventQueue:
    def send(self, envelope: Envelope) -> None:
        try:
            aws.sqs().send_message(
                QueueUrl=get_settings().events_queue_url,
                MessageBody=json.dumps(envelope, separators=(",", ":")),
                MessageGroupId=message_group(envelope),
                # Stripe retries reuse the event id: FIFO drops the copy within its 5-minute window.
                MessageDeduplicationId=envelope["event_id"],
            )
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(type(exc).__name__) from exc


class DeadLetters:
    """Where the worker parks a message it will not retry, with the reason attached."""

    def send(self, body: str, group: str, message_id: str, reason: str) -> None:
        aws.sqs().send_message(
            QueueUrl=get_settings().dead_letter_queue_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=message_id,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
