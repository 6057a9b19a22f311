"""Per-tenant event progress (``events#<tenant_id>`` in the tenants table): the watermark the worker
advances, and the catch-up's state (its claim, and the window a run left pending with its cursor).
An item of its own, so the tenant item's writes never race it.

Plain boto3 (one small item, conditional updates): the worker touches it at most once per
watermark step, never per event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from revsync.domain.reconcile import EventsState, PendingWindow, RunEnd, watermark_due
from revsync.infra import aws
from revsync.store.throttling import defers_when_throttled


def _key(tenant_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"events#{tenant_id}"}}


def _number(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


def _pending_from(item: dict[str, Any]) -> PendingWindow | None:
    value = item.get("pending", {}).get("M")
    if not value:
        return None
    cursor = value.get("cursor", {}).get("S")
    continuation = value.get("continuation", {}).get("S")
    return PendingWindow(
        start=int(value["start"]["N"]),
        through=int(value["through"]["N"]),
        cursor=cursor,
        listed=int(value.get("listed", {}).get("N", "0")),
        recovered=int(value.get("recovered", {}).get("N", "0")),
        gap_too_old=bool(value.get("gap_too_old", {}).get("BOOL", False)),
        continuation=continuation,
        continued_at=_number(value, "continued_at"),
    )


def _pending_value(pending: PendingWindow) -> dict[str, Any]:
    def text(value: str | None) -> dict[str, Any]:
        return {"S": value} if value is not None else {"NULL": True}

    return {
        "M": {
            "start": {"N": str(pending.start)},
            "through": {"N": str(pending.through)},
            "cursor": text(pending.cursor),
            "listed": {"N": str(pending.listed)},
            "recovered": {"N": str(pending.recovered)},
            "gap_too_old": {"BOOL": pending.gap_too_old},
            "continuation": text(pending.continuation),
            "continued_at": {"N": str(pending.continued_at)}
            if pending.continued_at is not None
            else {"NULL": True},
        }
    }


def _state_from(item: dict[str, Any]) -> EventsState:
    return EventsState(
        last_event_at=_number(item, "last_event_at"),
        reconciled_through=_number(item, "reconciled_through"),
        last_reconciled_at=_number(item, "last_reconciled_at"),
        recovered=_number(item, "recovered") or 0,
        running_since=_number(item, "running_since") or 0,
        backfill_needed=bool(item.get("backfill_needed", {}).get("BOOL", False)),
        pending=_pending_from(item),
    )


@defers_when_throttled
class EventsProgressStore:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the tenants table

    def get(self, tenant_id: str) -> EventsState:
        item = (
            aws.dynamodb()
            .get_item(TableName=self._table_name, Key=_key(tenant_id), ConsistentRead=True)
            .get("Item", {})
        )
        return _state_from(item)

    def advance_watermark(self, tenant_id: str, event_created: int) -> None:
        client = aws.dynamodb()
        # A failed condition means a newer watermark is already stored.
        with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
            client.update_item(
                TableName=self._table_name,
                Key=_key(tenant_id),
                UpdateExpression="SET last_event_at = :t",
                ConditionExpression="attribute_not_exists(last_event_at) OR last_event_at < :t",
                ExpressionAttributeValues={":t": {"N": str(event_created)}},
            )

    def claim(self, tenant_id: str, now: int, stale_after: int) -> EventsState | None:
        """Start a run unless one holds the claim (one older than ``stale_after`` counts as dead);
        the progress as claimed (one write, no read before it), or None."""
        client = aws.dynamodb()
        try:
            response = client.update_item(
                TableName=self._table_name,
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
                ReturnValues="ALL_NEW",
            )
        except client.exceptions.ConditionalCheckFailedException:
            return None
        return _state_from(response.get("Attributes", {}))

    def checkpoint(self, tenant_id: str, pending: PendingWindow) -> None:
        aws.dynamodb().update_item(
            TableName=self._table_name,
            Key=_key(tenant_id),
            UpdateExpression="SET pending = :pending",
            ExpressionAttributeValues={":pending": _pending_value(pending)},
        )

    def release(self, tenant_id: str) -> None:
        """Let go of a claim that ran nothing."""
        aws.dynamodb().update_item(
            TableName=self._table_name,
            Key=_key(tenant_id),
            UpdateExpression="SET running_since = :idle",
            ExpressionAttributeValues={":idle": {"N": "0"}},
        )

    def finish(self, tenant_id: str, end: RunEnd) -> None:
        """Release the claim; ``reconciled_through`` only when the window was listed to its end."""
        sets = ["running_since = :idle", "last_reconciled_at = :now", "backfill_needed = :b"]
        values: dict[str, Any] = {
            ":idle": {"N": "0"},
            ":now": {"N": str(end.now)},
            ":b": {"BOOL": end.backfill_needed},
            ":n": {"N": str(end.recovered)},
        }
        if end.reconciled_through is not None:
            sets.append("reconciled_through = :through")
            values[":through"] = {"N": str(end.reconciled_through)}
        if end.pending is not None:
            sets.append("pending = :pending")
            values[":pending"] = _pending_value(end.pending)
        expression = f"SET {', '.join(sets)} ADD recovered :n"
        if end.pending is None:
            expression += " REMOVE pending"
        aws.dynamodb().update_item(
            TableName=self._table_name,
            Key=_key(tenant_id),
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
        )


@defers_when_throttled
class ConnectedTenants:
    """The schedule's list: every tenant with a live connection, with when it was last reconciled
    (one scan of the tenants table: tenant items and their ``events#`` items)."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the tenants table

    def last_reconciled(self) -> dict[str, int | None]:
        client = aws.dynamodb()
        connected: set[str] = set()
        reconciled: dict[str, int | None] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "FilterExpression": (
                "(begins_with(pk, :tenant) AND #c.#s = :connected) OR begins_with(pk, :events)"
            ),
            "ProjectionExpression": "pk, tenant_id, last_reconciled_at",
            "ExpressionAttributeNames": {"#c": "connection", "#s": "status"},
            "ExpressionAttributeValues": {
                ":tenant": {"S": "tenant#"},
                ":events": {"S": "events#"},
                ":connected": {"S": "connected"},
            },
        }
        while True:
            page = client.scan(**kwargs)
            for item in page.get("Items", []):
                pk = item["pk"]["S"]
                if pk.startswith("events#"):
                    reconciled[pk.removeprefix("events#")] = _number(item, "last_reconciled_at")
                elif "tenant_id" in item:
                    connected.add(item["tenant_id"]["S"])
            if "LastEvaluatedKey" not in page:
                return {tenant_id: reconciled.get(tenant_id) for tenant_id in connected}
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


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
