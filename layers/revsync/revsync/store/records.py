"""The record projection: a customer's record (the customers table, shared with the platform) written
from the state it derives from, after the state write (store.customer_state).

One conditional update of the record's owned attributes when the derived record changed, never over a
newer derivation; when the record moved to a new key, the old key released. The same update sets or
removes the sparse attributes that list the customer under each risk kind it is at risk of
(revsync.domain.at_risk): DynamoDB keeps the kinds' indexes in step with the item, and bills an index
write only when an entry appears, goes or changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError

from revsync.domain.at_risk import RISK_ATTRIBUTES, Undated, risk_attributes
from revsync.domain.record import UNMATCHED_PREFIX, CustomerRecord, raised_signals
from revsync.store import models
from revsync.store.models import CustomerRecordItem
from revsync.store.throttling import defers_when_throttled

# The record attributes revsync owns; everything else on the item belongs to the platform.
OWNED_RECORD_FIELDS = (
    "stripe_customer_id",
    "matched",
    "mrr",
    "currency",
    "trialing",
    "trial_end",
    "next_renewal_at",
    "churned",
    "churned_at",
    "deleted_in_stripe",
    "last_payment_at",
    "total_paid",
    "total_refunded",
    "net_paid",
    "risk",
    "subscriptions",
    "traits",
)


@defers_when_throttled
class RecordProjection:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        # Dates a dunning signal that has none of its own when revsync first records it.
        self._clock = clock

    def project(
        self, record: CustomerRecord, version: int, previous_external_id: str | None, *, repair: bool
    ) -> bool:
        """Write the record's owned attributes unless a newer derivation is already there.

        ``repair`` (a redelivery, or a retry after a conflict) rewrites at the same version, so a
        crash between the state write and this one heals on the next delivery.
        """
        key = CustomerRecordItem(record["tenant_id"], record["external_id"])
        actions: list[Any] = []
        # ``risk`` is absent from a record derived without risk signals (removed, as a None field).
        fields = cast(Mapping[str, Any], record)
        for name in OWNED_RECORD_FIELDS:
            attribute = getattr(CustomerRecordItem, name)
            value = fields.get(name)
            if name == "risk" and value is not None:  # its raised signals only (none: no attribute)
                value = raised_signals(value) or None
            actions.append(attribute.remove() if value is None else attribute.set(value))
        actions.append(CustomerRecordItem.revsync_version.set(version))
        actions += self._risk_actions(fields.get("risk"))
        newer = (
            CustomerRecordItem.revsync_version <= version
            if repair
            else CustomerRecordItem.revsync_version < version
        )
        condition = (
            CustomerRecordItem.stripe_customer_id.does_not_exist()
            | (CustomerRecordItem.stripe_customer_id != record["stripe_customer_id"])
            | CustomerRecordItem.revsync_version.does_not_exist()
            | newer
        )
        try:
            key.update(actions=actions, condition=condition)
        except UpdateError as exc:
            if models.condition_failed(exc):
                return False  # a newer derivation is already stored
            raise
        if previous_external_id and previous_external_id != record["external_id"]:
            self._release(record["tenant_id"], previous_external_id, record["stripe_customer_id"])
        return True

    def _risk_actions(self, risk: Mapping[str, Any] | None) -> list[Any]:
        """The sparse attributes keying the risk indexes: set while the signal is, removed (the item
        leaves that index) when it clears."""
        actions: list[Any] = []
        for name, value in risk_attributes(risk).items():
            attribute = getattr(CustomerRecordItem, name)
            if value is None:
                actions.append(attribute.remove())
            elif isinstance(value, Undated):  # keep the date already listed (DynamoDB's if_not_exists)
                fallback = int(self._clock()) if value.fallback is None else value.fallback
                actions.append(attribute.set(attribute | fallback))
            else:
                actions.append(attribute.set(value))
        return actions

    def projected_version(self, tenant_id: str, external_id: str, customer_id: str) -> int | None:
        """The state version the record at that key was derived from (None: no record of this customer)."""
        try:
            item = CustomerRecordItem.get(
                tenant_id,
                external_id,
                consistent_read=True,
                attributes_to_get=["stripe_customer_id", "revsync_version"],
            )
        except DoesNotExist:
            return None
        if item.stripe_customer_id != customer_id or item.revsync_version is None:
            return None
        return int(item.revsync_version)

    def customer_ids(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """The Stripe customers of the tenant's records, a page of at most ``limit`` records from the
        cursor ``after`` (None: the first); the next cursor (None: no more). From the records table:
        every customer with a record has one item there (a customer whose record waits for its
        customer object has none, and is derived again at its next write), so its Query reads each
        once, with no index to keep; the platform's customers without Stripe data are skipped."""
        start = None if after is None else {"tenant_id": {"S": tenant_id}, "external_id": {"S": after}}
        found = CustomerRecordItem.query(
            tenant_id,
            limit=limit,
            last_evaluated_key=start,
            attributes_to_get=["external_id", "stripe_customer_id"],
        )
        ids = [item.stripe_customer_id for item in found if item.stripe_customer_id is not None]
        cursor = found.last_evaluated_key
        return ids, None if cursor is None else str(cursor["external_id"]["S"])

    def _release(self, tenant_id: str, external_id: str, customer_id: str) -> None:
        """The record moved to a new key: the old one is gone. A ``stripe:`` key is revsync's own and is
        deleted; on a matched key only revsync's attributes are removed, and the item is deleted if
        nothing else was on it (the platform's attributes, if any, stay). A platform write landing on
        that same item between the two calls (one round trip) would be lost with it."""
        old = CustomerRecordItem(tenant_id, external_id)
        belongs = CustomerRecordItem.stripe_customer_id == customer_id
        try:
            if external_id.startswith(UNMATCHED_PREFIX):
                old.delete(condition=belongs)
                return
            response = old.update(
                actions=[
                    getattr(CustomerRecordItem, n).remove()
                    for n in (*OWNED_RECORD_FIELDS, "revsync_version", *RISK_ATTRIBUTES)
                ],
                condition=belongs,
            )
            # The raw item, platform attributes included (the model maps only revsync's own).
            if not set(response.get("Attributes", {})) - {"tenant_id", "external_id"}:
                old.delete(condition=CustomerRecordItem.stripe_customer_id.does_not_exist())
        except (DeleteError, UpdateError) as exc:
            if not models.condition_failed(exc):
                raise
