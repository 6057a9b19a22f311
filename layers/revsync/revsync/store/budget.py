"""One Stripe request budget per connected account, shared by every concurrent backfill step.

A reservation clock in the tenants table (``budget#<account>``): each request takes the next slot,
``interval`` after the previous one, with one conditional write (two when the clock has fallen
behind and is moved to now). Steps sleep until their slot, so together they never exceed the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from revsync.infra import aws
from revsync.settings import get_settings
from revsync.store.throttling import defers_when_throttled


@defers_when_throttled
class AccountRequestBudget:
    def __init__(self, account_id: str, rate: float, clock: Callable[[], float] = time.time) -> None:
        self.key = {"pk": {"S": f"budget#{account_id}"}}
        self.interval_ms = max(1, int(1000 / rate)) if rate > 0 else 0
        self._clock = clock

    def reserve(self) -> float:
        """The wall-clock second this request may start."""
        table, now_ms = get_settings().tenants_table, int(self._clock() * 1000)
        client = aws.dynamodb()
        try:
            # The clock is idle (behind now): this request goes now, the next one interval later.
            client.update_item(
                TableName=table,
                Key=self.key,
                UpdateExpression="SET next_slot = :next",
                ConditionExpression="attribute_not_exists(next_slot) OR next_slot < :now",
                ExpressionAttributeValues={
                    ":next": {"N": str(now_ms + self.interval_ms)},
                    ":now": {"N": str(now_ms)},
                },
            )
            return now_ms / 1000
        except client.exceptions.ConditionalCheckFailedException:
            pass
        updated = client.update_item(
            TableName=table,
            Key=self.key,
            UpdateExpression="ADD next_slot :interval",
            ExpressionAttributeValues={":interval": {"N": str(self.interval_ms)}},
            ReturnValues="UPDATED_NEW",
        )
        return (int(updated["Attributes"]["next_slot"]["N"]) - self.interval_ms) / 1000
