"""Feeds a DynamoDB stream to a function like Lambda's event source mapping for DynamoDB streams.

Per shard, in order: a batch of up to the mapping's ``BatchSize`` records from the shard's checkpoint,
in Lambda's event shape (DynamoDB JSON images, binary values base64, the creation time in Unix
seconds, the stream's ARN). The checkpoint moves past the batch when the function succeeds, to the
lowest sequence number it reports failed (``ReportBatchItemFailures``), and not at all when it
raises: the same batch is delivered again. With a ``TumblingWindowInSeconds`` the event also carries
the window's fields (``shardId``, ``window``, the ``state`` the function last answered), and an
answer without ``state`` is a failure, as in Lambda. Locally a batch is taken as soon as it is there
(no batching window), retried at the next poll, and a window's final invocation (no records) is not
made.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from local.template import LocalNames, load_template


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


def stream_event(function: str) -> dict[str, Any]:
    """The properties of the function's DynamoDB event in the template."""
    events = load_template()["Resources"][function]["Properties"]["Events"]
    [properties] = [event["Properties"] for event in events.values() if event["Type"] == "DynamoDB"]
    spec: dict[str, Any] = properties
    return spec


def mapping(
    function: str,
    names: LocalNames,
    invoke: Callable[[str, dict[str, Any]], Any],
    region: str,
    endpoint_url: str | None = None,
) -> StreamMapping:
    """``function``'s mapping as the template declares it, on the local table's stream."""
    spec = stream_event(function)
    table, _ = spec["Stream"]["Fn::GetAtt"]
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
    return StreamMapping(
        streams,
        arn,
        lambda event: invoke(function, event),
        int(spec.get("BatchSize", 100)),
        windowed=bool(spec.get("TumblingWindowInSeconds")),
    )


@dataclass
class StreamMapping:
    """One function fed from one table's stream (``TRIM_HORIZON``: from the stream's start)."""

    streams: Any  # a boto3 dynamodbstreams client
    stream_arn: str
    invoke: Callable[[dict[str, Any]], dict[str, Any]]
    batch_size: int
    windowed: bool = False  # a TumblingWindowInSeconds: the window's fields in each event
    stats: StreamStats = field(default_factory=StreamStats)
    states: dict[str, Any] = field(default_factory=dict)  # shard id -> the state last answered
    # shard id -> where its next batch starts (absent: the shard's start)
    checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)

    def _iterator(self, shard_id: str) -> str:
        position = self.checkpoints.get(shard_id, {"ShardIteratorType": "TRIM_HORIZON"})
        iterator: str = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, **position
        )["ShardIterator"]
        return iterator

    def _window(self, shard_id: str) -> dict[str, Any]:
        # One window for the local stack's lifetime: its start and end are not used by revsync.
        return {
            "window": {"start": "1970-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z"},
            "state": self.states.get(shard_id, {}),
            "shardId": shard_id,
            "eventSourceARN": self.stream_arn,
            "isFinalInvokeForWindow": False,
            "isWindowTerminatedEarly": False,
        }

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
            event: dict[str, Any] = {"Records": [_lambda_record(r, self.stream_arn) for r in records]}
            if self.windowed:
                event.update(self._window(shard_id))
            try:
                result = self.invoke(event) or {}
                failed = [f["itemIdentifier"] for f in result.get("batchItemFailures", [])]
                if self.windowed:
                    self.states[shard_id] = result["state"]  # none: a failed invocation, as in Lambda
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
