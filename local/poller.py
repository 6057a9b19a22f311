"""Feeds a queue to a function's handler like the Lambda SQS event-source mapping does.

Batches of up to the event source's batch size, partial batch failures (only the reported messages
stay on the queue), and redrive to the dead-letter queue by the queue's own policy after its receive
count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class PollStats:
    batches: int = 0
    received: int = 0
    succeeded: int = 0
    failed: int = 0


def _lambda_record(message: dict[str, Any], queue_url: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": attributes.get("SenderId", "local"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
            "MessageGroupId": attributes.get("MessageGroupId"),
            "MessageDeduplicationId": attributes.get("MessageDeduplicationId"),
            "SequenceNumber": attributes.get("SequenceNumber"),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324 (SQS's own checksum)
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:123456789012:{queue_url.rsplit('/', 1)[-1]}",
        "awsRegion": region,
    }


def poll_once(
    sqs: Any,
    queue_url: str,
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
    region: str,
    stats: PollStats,
    retry_visibility: int = 0,
    batch_size: int = 10,
) -> int:
    """One batch: receive, invoke, delete what succeeded. Returns how many messages were received.

    Lambda leaves a failed message invisible until its visibility timeout ends; locally the caller
    chooses how long (``retry_visibility``, 0: retry at once) by receiving with that timeout, so a
    handler that hides a message for longer (a deferral) is not undone.
    """
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=batch_size,
        AttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
        WaitTimeSeconds=0,
        VisibilityTimeout=retry_visibility,
    )
    messages = response.get("Messages", [])
    if not messages:
        return 0
    stats.batches += 1
    stats.received += len(messages)
    try:
        result = invoke({"Records": [_lambda_record(m, queue_url, region) for m in messages]})
        failed_ids = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
    except Exception:  # an invocation error fails the whole batch, as with Lambda
        failed_ids = {m["MessageId"] for m in messages}
    for message in messages:
        if message["MessageId"] in failed_ids:
            stats.failed += 1
        else:
            stats.succeeded += 1
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(messages)


def drain(
    sqs: Any,
    queue_url: str,
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
    region: str,
    max_batches: int = 1000,
    batch_size: int = 10,
) -> PollStats:
    """Poll until the queue is empty (or ``max_batches`` batches ran)."""
    stats = PollStats()
    for _ in range(max_batches):
        if poll_once(sqs, queue_url, invoke, region, stats, batch_size=batch_size) == 0:
            break
    return stats
