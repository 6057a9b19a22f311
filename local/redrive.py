"""Redrive: move every message parked in the dead-letter queue back to the events queue.

Run after fixing what parked them (``make redrive`` on the local stack). Each message keeps its body
(an envelope, or a parked delivery that the worker reads again from Stripe's bytes) and its message
group; it gets a fresh deduplication id, so FIFO deduplication does not swallow a message redriven
within five minutes of its first delivery. In AWS, use an SQS message move task instead (README).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

import boto3

from local.environment import REGION
from local.template import LocalNames


@dataclass(frozen=True, slots=True)
class RedriveResult:
    moved: int
    reasons: dict[str, int]


def redrive(sqs: Any, dead_letter_url: str, events_url: str, max_messages: int = 100_000) -> RedriveResult:
    moved, reasons = 0, dict[str, int]()
    while moved < max_messages:
        messages = sqs.receive_message(
            QueueUrl=dead_letter_url,
            MaxNumberOfMessages=10,
            AttributeNames=["MessageGroupId"],
            MessageAttributeNames=["reason"],
            WaitTimeSeconds=0,
            VisibilityTimeout=60,
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            reason = message.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "unknown")
            reasons[reason.split(":", 1)[0]] = reasons.get(reason.split(":", 1)[0], 0) + 1
            sqs.send_message(
                QueueUrl=events_url,
                MessageBody=message["Body"],
                MessageGroupId=message["Attributes"]["MessageGroupId"],
                MessageDeduplicationId=f"redrive-{message['MessageId']}",
            )
            sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return RedriveResult(moved, reasons)


def main() -> None:
    parser = argparse.ArgumentParser(description="Move the local stack's parked messages back to its queue.")
    port = os.environ.get("REVSYNC_AWS_PORT", "5000")
    parser.add_argument("--endpoint", default=f"http://127.0.0.1:{port}", help="the local moto server")
    args = parser.parse_args()
    names = LocalNames(region=REGION, queue_urls={})
    sqs = boto3.client(
        "sqs",
        region_name=REGION,
        endpoint_url=args.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def url(logical_id: str) -> str:
        return str(sqs.get_queue_url(QueueName=names.physical_name(logical_id))["QueueUrl"])

    result = redrive(sqs, url("EventsDeadLetterQueue"), url("EventsQueue"))
    print(f"redrove {result.moved} message(s) from the dead-letter queue: {result.reasons or 'none parked'}")


if __name__ == "__main__":
    main()
