"""Per-tenant event progress (``events#<tenant_id>`` in the tenants table): the watermark the worker
advances, and the reconciler's state. An item of its own, so the tenant item's writes never race it.

Plain boto3 (one small item, conditional updates): the worker touches it at most once per
watermark step, never per event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from revsync.domain.reconcile import EventsState, watermark_due
from revsync.infra import aws
from revsync.settings import get_settings
from revsync.store.throttling import defers_when_throttled


def _key(tenant_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"events#{tenant_id}"}}


def _number(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


@defers_when_throttled
class EventsProgressStore:
    def get(self, tenant_id: str) -> EventsState:
        item = (
            aws.dynamodb()
            .get_item(TableName=get_settings().tenants_table, Key=_key(tenant_id), ConsistentRead=True)
            .get("Item", {})
        )
        return EventsState(
            last_event_at=_number(item, "last_event_at"),
            reconciled_through=_number(item, "reconciled_through"),
            last_reconciled_at=_number(item, "last_reconciled_at"),
            recovered=_number(item, "recovered") or 0,
            running_since=_number(item, "running_since") or 0,
            backfill_needed=bool(item.get("backfill_needed", {}).get("BOOL", False)),
        )

    def advance_watermark(self, tenant_id: str, event_created: int) -> None:
        client = aws.dynamodb()
        # A failed condition means a newer watermark is already stored.
        with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
            client.update_item(
                TableName=get_settings().tenants_table,
                Key=_key(tenant_id),
                UpdateExpression="SET last_event_at = :t",
                ConditionExpression="attribute_not_exists(last_event_at) OR last_event_at < :t",
                ExpressionAttributeValues={":t": {"N": str(event_created)}},
            )

    def claim(self, tenant_id: str, now: int, stale_after: int = 900) -> bool:
        """Start a reconcile unless one runs (a claim older than ``stale_after`` counts as dead)."""
        client = aws.dynamodb()
        try:
            client.update_item(
                TableName=get_settings().tenants_table,
                Key=_key(tenant_id),
                UpdateExpression="SET running_since = :now",
                ConditionExpression=(
                    "attribute_not_exists(running_since) OR running_since = :idle OR running_since < :stale"
                ),
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":idle": {"N": "0"},
                    ":stale": {"N": str(now - stale_after)},
                },
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def finish(
        self, tenant_id: str, now: int, recovered: int, reconciled_through: int | None, backfill_needed: bool
    ) -> None:
        """Release the claim; ``reconciled_through`` is None when the run stopped before the end."""
        expression = (
            "SET running_since = :idle, last_reconciled_at = :now, backfill_needed = :b ADD recovered :n"
        )
        values: dict[str, Any] = {
            ":idle": {"N": "0"},
            ":now": {"N": str(now)},
            ":b": {"BOOL": backfill_needed},
            ":n": {"N": str(recovered)},
        }
        if reconciled_through is not None:
            expression = expression.replace(" ADD", ", reconciled_through = :through ADD")
            values[":through"] = {"N": str(reconciled_through)}
        aws.dynamodb().update_item(
            TableName=get_settings().tenants_table,
            Key=_key(tenant_id),
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )


class CachedWatermarks:
    """The worker's watermark writes: at most one per tenant per step of wall time, per process."""

    def __init__(self, store: EventsProgressStore, clock: Callable[[], float] = time.time) -> None:
        self._store, self._clock = store, clock
        self._written: dict[str, tuple[int, float]] = {}

    def note(self, tenant_id: str, event_created: int) -> None:
        written, written_at = self._written.get(tenant_id, (None, None))
        now = self._clock()
        if watermark_due(written, written_at, event_created, now):
            self._store.advance_watermark(tenant_id, event_created)
            self._written[tenant_id] = (max(event_created, written or 0), now)
