"""The revenue rollup's storage: reading stream images as pieces, applying groups of changes to the
revenue table once each, reading a tenant's periods, and seeding pieces written before the rollup.

Apply (``RevenueRollup.apply``): one transaction per group (revsync.domain.rollup): the group's
marker, put only if absent, and an ADD of its changes to each period item (month and year, per
tenant and currency). A group already applied is cancelled whole by its marker, which the
cancellation returns: its ``through`` says which records it covered.

Read (``RevenueRollup.periods``): two Queries of the tenant's partition, years before the first
month asked and months from that year's January to the last: a few small items per month asked,
whatever the tenant's number of customers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pynamodb.connection import Connection, TableConnection
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from revsync.domain.history import Contribution, TimelineStart
from revsync.domain.rollup import Group, Piece, PieceChange, RevenuePeriods
from revsync.settings import get_settings
from revsync.store import models
from revsync.store.models import AppliedGroupItem, CustomerStateItem, RevenuePeriodItem

_FIELDS = Contribution._fields
# Seeding reads the revenue index a page at a time (keys and timelines: ~110 bytes a customer).
SEED_PAGE = 100


def piece_of(image: Mapping[str, Any]) -> Piece | None:
    """The piece an item's image holds, if the rollup counts it (it carries ``rollup_tenant``)."""
    tenant_id, timeline = image.get("rollup_tenant"), image.get("timeline")
    if not tenant_id or timeline is None:
        return None
    points = tuple((int(at), currency, int(mrr)) for at, currency, mrr in json.loads(str(timeline)))
    start = image.get("timeline_start")
    if start is None:
        return Piece(str(tenant_id), points)
    currency, mrr, ever_paid = json.loads(str(start))
    return Piece(str(tenant_id), points, TimelineStart(currency, int(mrr), bool(ever_paid)))


def piece_change(
    event_id: str,
    sequence: str,
    changed_at: int,
    old_image: Mapping[str, Any] | None,
    new_image: Mapping[str, Any] | None,
) -> PieceChange:
    """A stream record (images deserialized) as the rollup sees it."""
    return PieceChange(
        event_id,
        int(sequence),
        changed_at,
        piece_of(old_image) if old_image else None,
        piece_of(new_image) if new_image else None,
    )


@lru_cache(maxsize=1)
def _transactions() -> Connection:
    """One connection (one botocore client) per process for transactions, with the models' timeouts."""
    return Connection(
        region=get_settings().region,
        connect_timeout_seconds=models.CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds=models.READ_TIMEOUT_SECONDS,
        max_retry_attempts=models.MAX_RETRY_ATTEMPTS,
    )


def _year_before(month: str) -> str:
    return f"{int(month[:4]) - 1:04d}"


class RevenueRollup:
    def apply(self, group: Group, expires_at: int) -> int | None:
        """Apply the group's changes and put its marker, all or nothing. None when done now; the
        ``through`` of the marker found when the group was applied already."""
        marker = AppliedGroupItem(
            models.applied_partition(group.event_id, group.part),
            models.APPLIED_SK,
            through=str(group.through),
            expires_at=expires_at,
        )
        try:
            with TransactWrite(connection=_transactions()) as transaction:
                transaction.save(
                    marker, condition=AppliedGroupItem.pk.does_not_exist(), return_values="ALL_OLD"
                )
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
            return int(found.raw_item["through"]["S"])
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


@lru_cache(maxsize=1)
def _sync_table() -> TableConnection:
    return TableConnection(
        get_settings().sync_table,
        region=get_settings().region,
        connect_timeout_seconds=models.CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds=models.READ_TIMEOUT_SECONDS,
        max_retry_attempts=models.MAX_RETRY_ATTEMPTS,
    )


class UncountedStates:
    """States written before the rollup existed: their timelines are in the revenue index, but the
    rollup does not count them (no ``rollup_tenant``). Setting it (and nothing else: not the state's
    version, so no writer is disturbed) sends the item through the stream once more, where the rollup
    adds its piece; a state written since carries it already and is left alone."""

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
            try:
                _sync_table().update_item(
                    item.pk,
                    range_key=item.sk,
                    actions=[CustomerStateItem.rollup_tenant.set(tenant_id)],
                    condition=CustomerStateItem.rollup_tenant.does_not_exist()
                    & CustomerStateItem.timeline.exists(),
                )
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                    raise
                continue
            counted += 1
        following = page.last_evaluated_key
        return counted, json.dumps(following) if following else None
