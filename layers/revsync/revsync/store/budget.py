"""One Stripe request budget per connected account, shared by all of its callers (backfill steps,
the catch-up, the worker's reads, the tenant API): reservation clocks in the tenants table.

``budget#<account>`` is the account's clock, ``budget#<account>#<endpoint>`` each endpoint's (e.g.
``budget#acct_1#GET /v1/invoices``). A request waits for the next slot of its endpoint's clock, then
for the next slot of the account's (see ``revsync.stripe_api.pacing``): one conditional write per
clock (two when the clock is busy). Callers sleep until their slots, so together they stay within
both limits.

A clock's spacing is its item's ``interval_ms`` when set, else the default (1000 / Stripe's limit):
when Stripe raises an account's limit, an operator sets it on that item, e.g. 20 for an endpoint
raised to 50/s. A 429 pushes the clock of the limiter Stripe names forward (``slow_down``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

from revsync.domain.ratelimits import DEFAULT_ENDPOINT_RATE, GLOBAL_REASONS
from revsync.infra import aws
from revsync.store.throttling import defers_when_throttled


def _interval_ms(rate: float) -> int:
    return max(1, int(1000 / rate)) if rate > 0 else 0


@defers_when_throttled
class AccountRequestBudget:
    def __init__(
        self,
        table_name: str,  # the tenants table
        account_id: str,
        rate: float,
        clock: Callable[[], float] = time.time,
        endpoint_rate: float = DEFAULT_ENDPOINT_RATE,
    ) -> None:
        self._table_name = table_name
        self.account_id = account_id
        self.interval_ms = _interval_ms(rate)
        self.endpoint_interval_ms = _interval_ms(endpoint_rate)
        self._clock = clock

    def _key(self, endpoint: str | None) -> dict[str, dict[str, str]]:
        suffix = f"#{endpoint}" if endpoint else ""
        return {"pk": {"S": f"budget#{self.account_id}{suffix}"}}

    def _take(self, endpoint: str | None, default_ms: int, not_before_ms: int) -> int:
        """The clock's next slot at or after ``not_before_ms``."""
        table, client = self._table_name, aws.dynamodb()
        values = {":default": {"N": str(default_ms)}, ":at": {"N": str(not_before_ms)}}
        try:
            # The clock is idle (behind): this request goes then, the next one an interval later.
            client.update_item(
                TableName=table,
                Key=self._key(endpoint),
                UpdateExpression="SET next_slot = :at + if_not_exists(interval_ms, :default)",
                ConditionExpression="attribute_not_exists(next_slot) OR next_slot < :at",
                ExpressionAttributeValues=values,
            )
            return not_before_ms
        except client.exceptions.ConditionalCheckFailedException:
            pass
        updated = client.update_item(
            TableName=table,
            Key=self._key(endpoint),
            UpdateExpression="SET next_slot = next_slot + if_not_exists(interval_ms, :default)",
            ExpressionAttributeValues={":default": values[":default"]},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        interval = int(updated.get("interval_ms", values[":default"])["N"])
        return int(updated["next_slot"]["N"]) - interval

    def reserve(self, endpoint: str | None) -> float:
        default_ms = self.interval_ms if endpoint is None else self.endpoint_interval_ms
        return self._take(endpoint, default_ms, int(self._clock() * 1000)) / 1000

    def slow_down(self, reason: str, endpoint: str, seconds: float) -> None:
        until = {":until": {"N": str(int((self._clock() + seconds) * 1000))}}
        client = aws.dynamodb()
        # Already held back at least that long: nothing to do.
        with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
            client.update_item(
                TableName=self._table_name,
                Key=self._key(None if reason in GLOBAL_REASONS else endpoint),
                UpdateExpression="SET next_slot = :until",
                ConditionExpression="attribute_not_exists(next_slot) OR next_slot < :until",
                ExpressionAttributeValues=until,
            )

    def rates(self, endpoints: Iterable[str]) -> tuple[float, dict[str, float]]:
        """The account's limit and each endpoint's, as their clocks space requests (for planning)."""
        wanted = [None, *endpoints]
        keys = [self._key(endpoint) for endpoint in wanted]
        table = self._table_name
        found = aws.dynamodb().batch_get_item(
            RequestItems={table: {"Keys": keys, "ProjectionExpression": "pk, interval_ms"}}
        )["Responses"][table]
        set_ms = {item["pk"]["S"]: int(item["interval_ms"]["N"]) for item in found if "interval_ms" in item}

        def rate(endpoint: str | None, default_ms: int) -> float:
            ms = set_ms.get(self._key(endpoint)["pk"]["S"], default_ms)
            return 1000 / ms if ms > 0 else float("inf")

        return rate(None, self.interval_ms), {e: rate(e, self.endpoint_interval_ms) for e in endpoints}
