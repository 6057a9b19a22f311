"""PynamoDB models of revsync's four tables.

* customers: the customer records (contract), keyed by (tenant_id, external_id); shared with the
  platform's analytics import, so revsync only ever SETs or REMOVEs the attributes it owns.
* sync: per (tenant, Stripe customer) partition: one ``state`` item (latest observation of the customer
  and its subscriptions, its newest paid invoices and its recent MRR history, optimistic-locked by
  version), the archives of its older paid invoices and of its older MRR history; the ``revenue``
  index lists a tenant's MRR timelines, in pieces.
* tenants: ``tenant#<id>`` items (connection, config and revenue policy, tracking, backfill, a
  policy change's recompute) and ``account#<acct>`` items routing Connect events to their tenant.
* revenue: each tenant's monthly (and yearly) revenue totals, kept from the sync table's stream by
  the rollup (revsync.store.rollup), and how far it has applied each shard of the stream.

PynamoDB binds a table to each model class: the composition root names the tables once per process
(``bind``), before any store is used. The region and endpoint come from botocore's own environment
resolution.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from pynamodb.attributes import (
    Attribute,
    BinaryAttribute,
    BooleanAttribute,
    DiscriminatorAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.constants import BINARY
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from revsync.infra.aws import MAX_POOL_CONNECTIONS

# PynamoDB's own defaults (15 s connect, 30 s read, 3 retries) would outlast every function's timeout.
CONNECT_TIMEOUT_SECONDS = 1
READ_TIMEOUT_SECONDS = 2
MAX_RETRY_ATTEMPTS = 2  # retries after the first attempt


# A preset dictionary for the state item: the keys and common values of the snapshots it holds, in
# the canonical (sorted, compact) JSON they are written in. Small items compress poorly on their own
# (zlib has nothing to refer back to); with these bytes to refer to, a customer with a subscription
# and its history takes about a quarter of the space, under the 1 KB a write unit covers. Never
# edit it: items written with it are read with it. A new one gets a new version byte.
_ZDICT_V1 = (
    b'{"balance":0,"created":null,"currency":"usd","deleted":false,"delinquent":false,"discount":null,'
    b'"email":null,"id":"cus_","metadata":{},"name":null,"object":"customer"}'
    b'{"cancel_at":null,"cancel_at_period_end":false,"canceled_at":null,"created":null,"currency":"usd",'
    b'"current_period_end":null,"customer":"cus_","discounts":[],"ended_at":null,"id":"sub_",'
    b'"items":[{"current_period_end":null,"discounts":[],"id":"si_","price":{"billing_scheme":"per_unit",'
    b'"currency":"usd","divide_by":null,"id":"price_","interval":"month","interval_count":1,'
    b'"nickname":null,"product":"prod_","round":null,"tiers":[],"tiers_mode":null,"unit_amount":"",'
    b'"usage_type":"licensed"},"quantity":1}],"items_complete":true,"object":"subscription",'
    b'"status":"active","trial_end":null}'
    b'{"coupon":{"amount_off":null,"currency":null,"duration":"forever","duration_in_months":null,'
    b'"id":"","percent_off":null},"coupon_id":"","end":null,"expanded":true,"id":"di_","start":null}'
    b'{"event_id":"evt_","observed_at":1,"snapshot":{},"source":"updated"}"fetched""created""deleted"'
    b'{"customer":null,"history":{"entries":[],"views":[]},"invoice_ids":["in_"],"subscriptions":{}}'
)
_ZDICT_V1_MARK = b"\x01"


class CompressedJSONAttribute(Attribute[Any]):
    """JSON, zlib-compressed into a binary attribute: snapshots repeat keys, and writes are billed per KB."""

    attr_type = BINARY

    def serialize(self, value: Any) -> bytes:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        compressor = zlib.compressobj(9, zdict=_ZDICT_V1)
        return _ZDICT_V1_MARK + compressor.compress(text) + compressor.flush()

    def deserialize(self, value: bytes) -> Any:
        if value[:1] == _ZDICT_V1_MARK:
            decompressor = zlib.decompressobj(zdict=_ZDICT_V1)
            return json.loads(decompressor.decompress(value[1:]) + decompressor.flush())
        return json.loads(zlib.decompress(value))  # written before the preset dictionary


# --- sync table -----------------------------------------------------------------------------------

STATE_SK = "state"
INVOICE_SK_PREFIX = "invoice#"


def sync_partition(tenant_id: str, customer_id: str) -> str:
    return f"{tenant_id}#{customer_id}"


class SyncItem(Model):
    class Meta:
        table_name: str | None = None  # bind()
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_retry_attempts = MAX_RETRY_ATTEMPTS
        max_pool_connections = MAX_POOL_CONNECTIONS

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute()


class RevenueIndex(GlobalSecondaryIndex["TimelinePieceItem"]):
    """A tenant's customers that ever had MRR, with their MRR timelines: what ``/revenue`` sums.

    Sparse (an item is in it only while it holds a piece of a timeline with points) and written by the
    write that changes the piece itself: DynamoDB bills an index write only when the timeline (or the
    item's presence) changes. A customer's pieces share its partition key; their sort keys order them
    (history archives, oldest first, then the state), which is how ``/revenue`` puts them together
    (the index does not project ``timeline_start``).
    """

    class Meta:
        index_name = "revenue"
        projection = IncludeProjection(["timeline", "kind"])

    tenant_id = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class TimelinePieceItem(SyncItem):
    """An item holding a piece of a customer's MRR timeline: the state (the newest piece) or a history
    archive (older ones; revsync.domain.history_archive). Query the revenue index through this class
    (``TimelinePieceItem.query(..., index_name=RevenueIndex.Meta.index_name)``): PynamoDB binds an
    inherited index to the subclass defined last, which is why the state comes last below."""

    # The piece ([[at, currency, mrr], ...] as JSON), and its tenant only while it has a point: the
    # keys of the revenue index.
    tenant_id = UnicodeAttribute(null=True)
    timeline = UnicodeAttribute(null=True)
    # Where the piece starts ([currency, mrr, ever_paid] as JSON): absent for a timeline's first piece.
    timeline_start = UnicodeAttribute(null=True)
    revenue_index = RevenueIndex()
    # The tenant whose revenue rollup counts this item's piece (every item holding a piece carries
    # it): an item written before the rollup existed has none, is not counted, and is counted from its
    # next write (or when revsync.store.rollup seeds it).
    rollup_tenant = UnicodeAttribute(null=True)


HISTORY_ARCHIVE_SK_PREFIX = "history#"
# Every history archive's sort key is below this one, the state's and the invoice archives' above: the
# write path's Query starts after it (the history archives are read only for an observation before
# the state's boundary).
HISTORY_KEYS_END = "history#~"


class HistoryArchiveItem(TimelinePieceItem, discriminator="history"):
    """Archived MRR history observations and the piece of the timeline they give, counted by the state."""

    number = NumberAttribute()
    until = NumberAttribute()  # holds the observations before it (and at or after the previous one's)
    spilled_from = NumberAttribute()  # the state version it was written from
    history = CompressedJSONAttribute()  # the observations: {"views": [...], "entries": [...]}


class ReviewIndex(GlobalSecondaryIndex["CustomerStateItem"]):
    """A tenant's customers whose record changes by time alone, by when (revsync.domain.review): what
    the scheduled review lists (``CustomerStates.due_for_review``).

    Sparse (a state is in it only while it has a ``review_at``), keyed by the tenant every state
    carries already (``rollup_tenant``), and written by the state write itself: DynamoDB writes the
    index only when ``review_at`` changes, not at every save. Only the keys (the customer is in the
    partition key) and ``kind``, which PynamoDB filters a subclass's queries on.
    """

    class Meta:
        index_name = "review"
        projection = IncludeProjection(["kind"])

    rollup_tenant = UnicodeAttribute(hash_key=True)
    review_at = NumberAttribute(range_key=True)


class CustomerStateItem(TimelinePieceItem, discriminator="state"):
    """The latest observation of a Stripe customer and of each of its subscriptions, and the kept
    observations of its MRR history (``objects["history"]``: compressed together, they share most
    of their bytes)."""

    version = VersionAttribute()
    objects = CompressedJSONAttribute()
    # The record key last written, and the tenant config version it was derived with.
    external_id = UnicodeAttribute(null=True)
    config_version = NumberAttribute(default=0)
    # The version whose derived record is the current one: the record item must carry at least this
    # ``revsync_version``, else its projection failed and is repaired (no extra write to know it).
    record_version = NumberAttribute(null=True)
    # When its record next changes by time alone (revsync.domain.review): the review index's key.
    review_at = NumberAttribute(null=True)
    review_index = ReviewIndex()


INVOICE_ARCHIVE_SK_PREFIX = "invoices#"


class InvoiceArchiveItem(SyncItem, discriminator="invoices"):
    """Paid invoices moved out of the state item together (store.customer_state), counted by the state."""

    number = NumberAttribute()
    spilled_from = NumberAttribute()  # the state version whose inline invoices these are
    # [[id, amount_paid, currency, paid_at, subscription, observed_at, lines], ...]
    invoices = CompressedJSONAttribute()


REFUND_ARCHIVE_SK_PREFIX = "refunds#"


class RefundArchiveItem(SyncItem, discriminator="refunds"):
    """Credit notes and charges moved out of the state item together (store.customer_state), counted
    by the state."""

    number = NumberAttribute()
    spilled_from = NumberAttribute()  # the state version whose inline credit notes and charges these are
    refunds = CompressedJSONAttribute()  # {id: observation}


class PaidInvoiceItem(SyncItem, discriminator="invoice"):
    """One paid invoice, as the previous format kept them (read only: store.customer_state converts)."""

    number = NumberAttribute(null=True)  # its place in the state's invoice count (store.customer_state)
    invoice_id = UnicodeAttribute()
    amount_paid = NumberAttribute()
    currency = UnicodeAttribute(null=True)
    paid_at = NumberAttribute(null=True)
    subscription_id = UnicodeAttribute(null=True)
    observed_at = NumberAttribute()
    # [[subscription_id, period_end], ...] of the invoice's subscription lines.
    lines = ListAttribute(of=ListAttribute, default=list)


# --- customers table ------------------------------------------------------------------------------


class _RiskIndex(GlobalSecondaryIndex["CustomerRecordItem"]):
    """A tenant's customers at risk of one kind, newest first (revsync.domain.at_risk): sparse, an item
    is in it only while its record carries that kind's signal (the range key). Projected: what
    ``GET .../risks`` answers, and only that, so a record write changes an index entry (a billed index
    write) only when the signal, or the MRR shown with it, changes."""

    tenant_id = UnicodeAttribute(hash_key=True)


class DunningIndex(_RiskIndex):
    class Meta:
        index_name = "risk_dunning"
        projection = IncludeProjection(["stripe_customer_id", "currency", "mrr"])

    dunning_since = NumberAttribute(range_key=True)


class CancelScheduledIndex(_RiskIndex):
    class Meta:
        index_name = "risk_cancel_scheduled"
        projection = IncludeProjection(["stripe_customer_id", "currency", "mrr_at_risk"])

    cancel_scheduled_at = NumberAttribute(range_key=True)


class ChangeScheduledIndex(_RiskIndex):
    class Meta:
        index_name = "risk_change_scheduled"
        projection = IncludeProjection(["stripe_customer_id", "currency", "mrr", "scheduled_mrr"])

    scheduled_change_at = NumberAttribute(range_key=True)


class TrialEndingIndex(_RiskIndex):
    class Meta:
        index_name = "risk_trial_ending"
        projection = IncludeProjection(["stripe_customer_id", "currency", "mrr"])

    trial_ends_at = NumberAttribute(range_key=True)


class CardExpiringIndex(_RiskIndex):
    class Meta:
        index_name = "risk_card_expiring"
        projection = IncludeProjection(["stripe_customer_id", "currency", "mrr"])

    card_expires_at = NumberAttribute(range_key=True)


class CustomerRecordItem(Model):
    """A customer record. Declared attributes are exactly the ones revsync owns."""

    class Meta:
        table_name: str | None = None  # bind()
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_retry_attempts = MAX_RETRY_ATTEMPTS
        max_pool_connections = MAX_POOL_CONNECTIONS

    tenant_id = UnicodeAttribute(hash_key=True)
    external_id = UnicodeAttribute(range_key=True)
    stripe_customer_id = UnicodeAttribute(null=True)
    matched = BooleanAttribute(null=True)
    mrr = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    trialing = BooleanAttribute(null=True)
    trial_end = NumberAttribute(null=True)
    next_renewal_at = NumberAttribute(null=True)
    churned = BooleanAttribute(null=True)
    churned_at = NumberAttribute(null=True)
    deleted_in_stripe = BooleanAttribute(null=True)
    last_payment_at = NumberAttribute(null=True)
    total_paid = NumberAttribute(null=True)
    total_refunded = NumberAttribute(null=True)
    net_paid = NumberAttribute(null=True)
    risk: MapAttribute[str, Any] = MapAttribute(null=True)  # revsync.domain.risk.Risk
    subscriptions: MapAttribute[str, Any] = MapAttribute(null=True)
    traits: MapAttribute[str, Any] = MapAttribute(null=True)
    # State version the record was derived from: older derivations never overwrite newer ones.
    revsync_version = NumberAttribute(null=True)
    # Sparse, set only while the record carries the signal (revsync.domain.at_risk): each kind's time
    # keys its risk index, with the MRR figures the index projects.
    dunning_since = NumberAttribute(null=True)
    cancel_scheduled_at = NumberAttribute(null=True)
    mrr_at_risk = NumberAttribute(null=True)
    scheduled_change_at = NumberAttribute(null=True)
    scheduled_mrr = NumberAttribute(null=True)
    trial_ends_at = NumberAttribute(null=True)
    card_expires_at = NumberAttribute(null=True)
    dunning_index = DunningIndex()
    cancel_scheduled_index = CancelScheduledIndex()
    change_scheduled_index = ChangeScheduledIndex()
    trial_ending_index = TrialEndingIndex()
    card_expiring_index = CardExpiringIndex()


# --- tenants table --------------------------------------------------------------------------------


def tenant_key(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


def account_key(account_id: str) -> str:
    return f"account#{account_id}"


class Connection(MapAttribute[str, Any]):
    status = UnicodeAttribute(default="none")  # connected | revoked | none
    mode = UnicodeAttribute(null=True)  # oauth | api_key
    account_id = UnicodeAttribute(null=True)
    livemode = BooleanAttribute(default=False)
    secret_name = UnicodeAttribute(null=True)  # a connection saved before sealed secrets
    connected_at = NumberAttribute(null=True)
    scope = UnicodeAttribute(null=True)
    # KMS ciphertexts (revsync.infra.secrets): here, the receiver reads its webhook secret with the
    # route it reads anyway (store.tenant_lookup), one GetItem.
    sealed_api_key = BinaryAttribute(null=True, legacy_encoding=False)
    sealed_webhook_secret = BinaryAttribute(null=True, legacy_encoding=False)


class Policy(MapAttribute[str, Any]):
    """The tenant's revenue policy (revsync.domain.policy), key by key; none stored: the default."""

    churn_after_days = NumberAttribute(null=True)
    churn_at = UnicodeAttribute()
    discounts = UnicodeAttribute()
    metered = UnicodeAttribute()


class Config(MapAttribute[str, Any]):
    customer_id_trait = UnicodeAttribute(null=True)
    version = NumberAttribute(default=0)
    policy = Policy(null=True)


class Recompute(MapAttribute[str, Any]):
    """A policy change's recompute (revsync.domain.tenancy.Recompute)."""

    config_version = NumberAttribute()
    started_at = NumberAttribute()
    cursor = UnicodeAttribute(null=True)
    customers_done = NumberAttribute(default=0)
    finished_at = NumberAttribute(null=True)
    updated_at = NumberAttribute(null=True)


class Tracking(MapAttribute[str, Any]):
    revenue = UnicodeAttribute(null=True)
    churn = UnicodeAttribute(null=True)
    trial = UnicodeAttribute(null=True)


class TenantsItem(Model):
    class Meta:
        table_name: str | None = None  # bind()
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_retry_attempts = MAX_RETRY_ATTEMPTS
        max_pool_connections = MAX_POOL_CONNECTIONS

    pk = UnicodeAttribute(hash_key=True)
    kind = DiscriminatorAttribute()
    tenant_id = UnicodeAttribute()


class TenantItem(TenantsItem, discriminator="tenant"):
    connection = Connection(default=Connection)
    config = Config(default=Config)
    tracking = Tracking(default=Tracking)
    backfill: MapAttribute[str, Any] = MapAttribute(null=True)
    recompute = Recompute(null=True)
    updated_at = NumberAttribute(null=True)


class AccountItem(TenantsItem, discriminator="account"):
    """Routes a Connect account's events to its tenant; one tenant per account."""

    account_id = UnicodeAttribute()
    status = UnicodeAttribute()
    livemode = BooleanAttribute(default=False)


# --- revenue table --------------------------------------------------------------------------------


def rollup_partition(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


def rollup_sort_key(currency: str, period: str) -> str:
    """``m#YYYY-MM#<currency>`` for a month, ``y#YYYY#<currency>`` for a year."""
    return f"{'m' if len(period) > 4 else 'y'}#{period}#{currency}"


class RevenueItem(Model):
    class Meta:
        table_name: str | None = None  # bind()
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_retry_attempts = MAX_RETRY_ATTEMPTS

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class RevenuePeriodItem(RevenueItem):
    """A tenant's movements in one month (or year) and currency, summed over its customers."""

    new = NumberAttribute(default=0)
    expansion = NumberAttribute(default=0)
    reactivation = NumberAttribute(default=0)
    contraction = NumberAttribute(default=0)
    churn = NumberAttribute(default=0)
    new_customers = NumberAttribute(default=0)
    reactivated_customers = NumberAttribute(default=0)
    churned_customers = NumberAttribute(default=0)
    # When the newest change applied to it was made (the stream record's time, Unix seconds).
    as_of = NumberAttribute(null=True)


def shard_partition(shard_id: str) -> str:
    return f"shard#{shard_id}"


POSITION_SK = "position"


class ShardPositionItem(RevenueItem):
    """How far the rollup has applied one shard of the sync table's stream (domain.rollup.Position),
    moved in the transaction of each group it applies. Expires once the shard can deliver nothing again."""

    position = UnicodeAttribute()  # Position.key()
    expires_at = NumberAttribute()


# --- binding --------------------------------------------------------------------------------------


def bind(
    *,
    customers: str | None = None,
    sync: str | None = None,
    tenants: str | None = None,
    revenue: str | None = None,
) -> None:
    """Name the tables the models use (each given; subclasses share their base's table); a model
    whose table was never named refuses to be used. The composition root calls it (revsync.bootstrap)
    as a function starts; binding is process-wide (PynamoDB binds a table per model class), and every
    model's connection is opened again on its next use (the local stacks bind a new endpoint)."""
    named = (CustomerRecordItem, customers), (SyncItem, sync), (TenantsItem, tenants), (RevenueItem, revenue)
    for model, table_name in named:
        if table_name is not None:
            model.Meta.table_name = table_name
        for bound in (model, *_subclasses(model)):
            bound._connection = None


def _subclasses(model: type[Model]) -> list[type[Model]]:
    found: list[type[Model]] = []
    for subclass in model.__subclasses__():
        found += [subclass, *_subclasses(subclass)]
    return found


def condition_failed(exc: Exception) -> bool:
    """Whether a PynamoDB write failed on its condition (rather than for any other reason)."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"
