"""The revenue rollup's storage: reading stream images as pieces, applying groups of changes to the
revenue table once each, reading a tenant's periods, and seeding pieces written before the rollup.

Apply (``RevenueRollup.apply``): one transaction per group (revsync.domain.rollup): its shard's
position, put only if it is before the group, and an ADD of its changes to each period item (month
and year, per tenant and currency). A group applied already is cancelled whole by the position,
which the cancellation returns: it says how far the shard is applied.

Read (``RevenueRollup.periods``): two Queries of the tenant's partition, years before the first
month asked and months from that year's January to the last: a few small items per month asked,
whatever the tenant's number of customers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from botocore.exceptions import ClientError
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from revsync.domain.history import Contribution
from revsync.domain.rollup import Group, Piece, PieceChange, Position, RevenuePeriods
from revsync.infra import aws
from revsync.store import models
from revsync.store.history_items import start_from_json, timeline_from_json
from revsync.store.models import CustomerStateItem, RevenuePeriodItem, ShardPositionItem

_FIELDS = Contribution._fields
# Seeding reads the revenue index a page at a time (keys and timelines: ~110 bytes a customer).
SEED_PAGE = 100


def piece_of(image: Mapping[str, Any]) -> Piece | None:
    """The piece an item's image holds, if the rollup counts it (it carries ``rollup_tenant``)."""
    tenant_id, timeline = image.get("rollup_tenant"), image.get("timeline")
    if not tenant_id or timeline is None:
        return None
    start = image.get("timeline_start")
    return Piece(
        str(tenant_id),
        timeline_from_json(str(timeline)) or (),
        start_from_json(None if start is None else str(start)),
    )


class StreamBatch(NamedTuple):
    """A Lambda event of the sync table's stream, as the rollup reads it."""

    shard_id: str | None  # there when the mapping has a tumbling window
    changes: list[PieceChange]
    sequence_numbers: dict[int, str]  # as Lambda gave them (what a reported failure names)


def stream_batch(event: dict[str, Any]) -> StreamBatch:
    """The pieces each record's old and new images hold (images deserialized by Powertools)."""
    stream_event = DynamoDBStreamEvent(event)
    changes: list[PieceChange] = []
    sequences: dict[int, str] = {}
    for record in stream_event.records:
        change = record.dynamodb
        if change is None:  # never: every record of a table's stream carries its change
            continue
        sequence = str(change["SequenceNumber"])
        old, new = change.old_image, change.new_image
        piece = PieceChange(
            str(record["eventID"]),
            int(sequence),
            change.approximate_creation_date_time or 0,
            piece_of(old) if old else None,
            piece_of(new) if new else None,
        )
        changes.append(piece)
        sequences[piece.sequence] = sequence
    return StreamBatch(stream_event.shard_id, changes, sequences)


def _year_before(month: str) -> str:
    return f"{int(month[:4]) - 1:04d}"


class RevenueRollup:
    def __init__(self, region: str) -> None:
        # One connection (one botocore client) for its transactions, with the models' timeouts.
        self._transactions = Connection(
            region=region,
            connect_timeout_seconds=models.CONNECT_TIMEOUT_SECONDS,
            read_timeout_seconds=models.READ_TIMEOUT_SECONDS,
            max_retry_attempts=models.MAX_RETRY_ATTEMPTS,
        )

    def apply(self, shard_id: str, group: Group, expires_at: int) -> Position | None:
        """Add the group's changes to its periods and move its shard's position to its end, all or
        nothing, if the position is before the group's start. None when done now; the position found
        when the group was applied already."""
        position = ShardPositionItem(
            models.shard_partition(shard_id),
            models.POSITION_SK,
            position=group.through.key(),
            expires_at=expires_at,
        )
        before = ShardPositionItem.position.does_not_exist() | (
            ShardPositionItem.position < group.start.key()
        )
        try:
            with TransactWrite(connection=self._transactions) as transaction:
                transaction.save(position, condition=before, return_values="ALL_OLD")
                for key, change in sorted(group.changes.items()):
                    item = RevenuePeriodItem(
                        models.rollup_partition(key.tenant_id),
                        models.rollup_sort_key(key.currency, key.period),
                    )
                    actions: list[Any] = [
                        getattr(RevenuePeriodItem, name).add(value)
                        for name, value in zip(_FIELDS, change, strict=True)
                        if value
                    ]
                    actions.append(RevenuePeriodItem.as_of.set(group.as_of))
                    transaction.update(item, actions=actions)
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons
            found = reasons[0] if reasons else None
            if found is None or found.code != "ConditionalCheckFailed" or not found.raw_item:
                raise
            return Position.from_key(found.raw_item["position"]["S"])
        return None

    def periods(self, tenant_id: str, first: str, last: str) -> RevenuePeriods:
        """The tenant's totals up to ``last``: every year before ``first``'s, then its months."""
        pk = models.rollup_partition(tenant_id)
        years = RevenuePeriodItem.query(
            pk, RevenuePeriodItem.sk.between("y#0000", f"y#{_year_before(first)}#~")
        )
        months = RevenuePeriodItem.query(pk, RevenuePeriodItem.sk.between(f"m#{first[:4]}-01", f"m#{last}#~"))
        totals: dict[str, dict[str, Contribution]] = {}
        as_of: int | None = None
        for item in (*years, *months):
            _, period, currency = item.sk.split("#", 2)
            totals.setdefault(currency, {})[period] = Contribution(
                *(int(getattr(item, name)) for name in _FIELDS)
            )
            if item.as_of is not None:
                as_of = max(as_of or 0, int(item.as_of))
        return RevenuePeriods(totals, as_of)


class UncountedStates:
    """States written before the rollup existed: their timelines are in the revenue index, but the
    rollup does not count them (no ``rollup_tenant``). Setting it (and nothing else: not the state's
    version, so no writer is disturbed) sends the item through the stream once more, where the rollup
    adds its piece; a state written since carries it already and is left alone."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the sync table

    def count_page(self, tenant_id: str, cursor: str | None) -> tuple[int, str | None]:
        """One page of the tenant's revenue index: the number of pieces now counted, and the next
        page's cursor (None: the last page)."""
        page = CustomerStateItem.revenue_index.query(
            tenant_id,
            limit=SEED_PAGE,
            last_evaluated_key=json.loads(cursor) if cursor else None,
        )
        counted = 0
        for item in page:
            # Not through the model: its save and update move the state's version.
            try:
                aws.dynamodb().update_item(
                    TableName=self._table_name,
                    Key={"pk": {"S": item.pk}, "sk": {"S": item.sk}},
                    UpdateExpression="SET rollup_tenant = :tenant",
                    ConditionExpression="attribute_not_exists(rollup_tenant) AND attribute_exists(timeline)",
                    ExpressionAttributeValues={":tenant": {"S": tenant_id}},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue
            counted += 1
        following = page.last_evaluated_key
        return counted, json.dumps(following) if following else None
