"""Feeds a DynamoDB stream to a function like Lambda's event source mapping for DynamoDB streams.

Per shard, in order: a batch of up to the mapping's ``BatchSize`` records from the shard's checkpoint,
in Lambda's event shape (DynamoDB JSON images, binary values base64, the creation time in Unix
seconds, the stream's ARN). The checkpoint moves past the batch when the function succeeds, to the
lowest sequence number it reports failed (``ReportBatchItemFailures``), and not at all when it
raises: the same batch is delivered again. Locally a batch is taken as soon as it is there (no
batching window) and retried at the next poll.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from local.template import load_template


@dataclass
class StreamStats:
    batches: int = 0
    records: int = 0
    failed: int = 0  # batches retried (an error, or records reported failed)


def _wire(value: Any) -> Any:
    """A value as the Lambda event carries it (boto3 gives binary values as bytes)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record["eventVersion"],
        "eventSource": "aws:dynamodb",
        "awsRegion": record["awsRegion"],
        "dynamodb": _wire(stream),
        "eventSourceARN": stream_arn,
    }


def stream_functions() -> dict[str, tuple[str, int]]:
    """Functions fed by a table's stream in the template: logical id -> (table, BatchSize)."""
    found = {}
    for logical_id, resource in load_template()["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "DynamoDB":
                table, _ = event["Properties"]["Stream"]["Fn::GetAtt"]
                found[logical_id] = (table, int(event["Properties"].get("BatchSize", 100)))
    return found


def mapping(
    function: str,
    names: Any,
    invoke: Callable[[str, dict[str, Any]], Any],
    region: str,
    endpoint_url: str | None = None,
) -> StreamMapping:
    """``function``'s mapping as the template declares it, on the local table's stream."""
    table, size = stream_functions()[function]
    dynamodb = boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url)
    arn = dynamodb.describe_table(TableName=names.physical_name(table))["Table"]["LatestStreamArn"]
    # botocore addresses DynamoDB Streams by account (<account>.streams-ddb...); moto answers only
    # the regional endpoint.
    streams = boto3.client(
        "dynamodbstreams",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(account_id_endpoint_mode="disabled"),
    )
    return StreamMapping(streams, arn, lambda event: invoke(function, event), size)


@dataclass
class StreamMapping:
    """One function fed from one table's stream (``TRIM_HORIZON``: from the stream's start)."""

    streams: Any  # a boto3 dynamodbstreams client
    stream_arn: str
    invoke: Callable[[dict[str, Any]], dict[str, Any]]
    batch_size: int
    stats: StreamStats = field(default_factory=StreamStats)
    # shard id -> where its next batch starts (absent: the shard's start)
    checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)

    def _iterator(self, shard_id: str) -> str:
        position = self.checkpoints.get(shard_id, {"ShardIteratorType": "TRIM_HORIZON"})
        iterator: str = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]
        return iterator

    def poll_once(self) -> int:
        """One batch from each shard that has records. Returns how many records were delivered."""
        delivered = 0
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            records = self.streams.get_records(ShardIterator=self._iterator(shard_id), Limit=self.batch_size)[
                "Records"
            ]
            if not records:
                continue
            delivered += len(records)
            self.stats.batches += 1
            self.stats.records += len(records)
            try:
                result = self.invoke({"Records": [_lambda_record(r, self.stream_arn) for r in records]})
                failed = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
            except Exception:  # an invocation error: the whole batch again
                self.stats.failed += 1
                continue
            if failed:
                self.stats.failed += 1
                at = min(failed, key=int)
                self.checkpoints[shard_id] = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": at}
            else:
                last = records[-1]["dynamodb"]["SequenceNumber"]
                self.checkpoints[shard_id] = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": last,
                }
        return delivered

    def drain(self, max_batches: int = 1000) -> StreamStats:
        """Poll until no shard has records (or ``max_batches`` polls ran)."""
        for _ in range(max_batches):
            if self.poll_once() == 0:
                break
        return self.stats
