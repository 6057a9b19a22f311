"""What the tenant API reads of its customers: a record (the customers table), the customers at risk
of one kind (the table's risk indexes), a customer's MRR history (its pieces in the sync table), and
the tenant's months recomputed from the revenue index (what the rollup, store.rollup, is checked
against)."""

from __future__ import annotations

import logging
from typing import Any

from pynamodb.exceptions import DoesNotExist, QueryError

from revsync.domain.at_risk import Position, RiskKind, at_risk_entry
from revsync.domain.history import Contribution, Timeline, revenue_totals
from revsync.domain.history_archive import HistoryChunk, whole_timeline
from revsync.domain.record import risk_of
from revsync.errors import RetryLater
from revsync.store import models
from revsync.store.history_items import chunk_of, kept_of, timeline_from_json
from revsync.store.models import CustomerRecordItem, CustomerStateItem, HistoryArchiveItem, TimelinePieceItem
from revsync.store.records import OWNED_RECORD_FIELDS
from revsync.store.throttling import defers_when_throttled

logger = logging.getLogger("revsync.read_models")
INDEX_NOT_READY = frozenset({"ValidationException", "ResourceNotFoundException"})


class RiskIndexUnavailable(RetryLater):
    """The kind's index is not there yet, or still being built (a stack adding its risk indexes, one
    per deploy: docs/operations.md)."""

    code = "risk_index_unavailable"


@defers_when_throttled
class CustomerRecords:
    def get_record(self, tenant_id: str, external_id: str) -> dict[str, Any] | None:
        """The record revsync keeps at that key (None: none, or a platform-only customer)."""
        try:
            item = CustomerRecordItem.get(tenant_id, external_id, consistent_read=True)
        except DoesNotExist:
            return None
        if item.stripe_customer_id is None:  # a platform-only customer, nothing from Stripe
            return None
        document: dict[str, Any] = {"tenant_id": tenant_id, "external_id": external_id}
        for name in OWNED_RECORD_FIELDS:
            value = getattr(item, name)
            document[name] = value.as_dict() if hasattr(value, "as_dict") else value
        document["risk"] = risk_of(document["risk"])  # the item keeps the raised signals only
        return document

    def at_risk(
        self, tenant_id: str, kind: RiskKind, after: Position | None, limit: int
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """A page of the tenant's customers at risk of ``kind``, newest first, after ``after``; and
        where the next page starts (None: this is the last). One Query of the kind's index, one item
        past the page to know whether another follows."""
        start = (
            None
            if after is None
            else {
                "tenant_id": {"S": tenant_id},
                "external_id": {"S": after.external_id},
                kind.since: {"N": str(after.since)},
            }
        )
        try:
            items = list(
                CustomerRecordItem.query(
                    tenant_id,
                    index_name=kind.index,
                    scan_index_forward=False,
                    limit=limit + 1,
                    page_size=limit + 1,
                    last_evaluated_key=start,
                )
            )
        except QueryError as exc:
            # DynamoDB's answers for an index not there (or still backfilling): never the caller's fault.
            if getattr(exc, "cause_response_code", None) not in INDEX_NOT_READY:
                raise
            logger.warning("risk index unavailable: %s", kind.index)
            raise RiskIndexUnavailable(
                f"the {kind.name} list is being built; try again in a few minutes"
            ) from None
        entries = [at_risk_entry(kind, {**item.attribute_values}) for item in items[:limit]]
        if len(items) <= limit:
            return entries, None
        last = entries[-1]
        return entries, Position(last["since"], last["external_id"])


@defers_when_throttled
class MrrHistories:
    def timeline(self, tenant_id: str, customer_id: str) -> Timeline | None:
        """The customer's whole MRR timeline (None: nothing stored for that customer)."""
        state: CustomerStateItem | None = None
        chunks: list[HistoryChunk] = []
        for item in TimelinePieceItem.query(
            models.sync_partition(tenant_id, customer_id), consistent_read=True
        ):
            if isinstance(item, CustomerStateItem):
                state = item
            elif isinstance(item, HistoryArchiveItem):
                chunks.append(chunk_of(item))
        return None if state is None else whole_timeline(kept_of(state), chunks)


@defers_when_throttled
class RevenueRecomputation:
    def revenue_totals(self, tenant_id: str) -> dict[str, dict[str, Contribution]]:
        """currency -> month -> the tenant's totals, summed over its customers' MRR timelines (one
        Query of the revenue index: ~100 bytes a customer that ever had MRR, more for long histories).
        A customer's pieces, in key order (archives, oldest first, then the state), make its timeline:
        each starts where the one before ended, and a piece without points (not in the index) changes
        nothing."""
        pieces: dict[str, list[tuple[str, Timeline]]] = {}
        index = models.RevenueIndex.Meta.index_name
        for item in TimelinePieceItem.query(tenant_id, index_name=index):
            pieces.setdefault(item.pk, []).append((item.sk, timeline_from_json(item.timeline) or ()))
        timelines = (
            found[0][1] if len(found) == 1 else tuple(p for _, piece in sorted(found) for p in piece)
            for found in pieces.values()
        )
        return revenue_totals(timelines)
