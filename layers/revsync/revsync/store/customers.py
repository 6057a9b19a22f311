"""The write path's storage: load a customer's objects, save them optimistically, project the record.

Per applied observation this costs one Query (the state item and the paid-invoice archives share a
partition), one conditional write of the state item (its MRR timeline included: the tenant's months
are summed from the sparse ``revenue`` index over those, which DynamoDB writes only when a timeline
changes), and one conditional update of the record when the derived record changed.

The MRR history is kept in pieces (revsync.domain.history_archive): the state holds its newest
seconds, history archives (``history#<until>``, numbered) the older ones, each with its piece of the
timeline (and in the revenue index while that piece has points). The Query above stops short of the
history archives (their keys sort first); they are read only when an observation falls before the
state's boundary. Archives are written in one transaction with the state write that counts them
(new or rewritten), conditioned as invoice archives are: a piece of a timeline is never counted
without the state that counts it, and a stale writer never overwrites one.

Paid invoices live in the state item itself, the newest ``INLINE_INVOICES`` of them, so paying one
costs no write of its own. When one more arrives, the state's inline invoices move, together, into
an archive item (``invoices#000001``, ``#000002``, ...) and the state counts one more archive: the
state write stays the one commit point. An archive is written before the state write that counts
it, as exactly the inline invoices of the state version it was spilled from (every writer holding
that version writes the same bytes), and only over an archive spilled from the same or an older
version: a spill whose state write lost never changes a counted archive, and the next spill
overwrites it. A paid invoice is final: once archived, a later observation of it changes nothing.
States from before the archives (paid invoices as one item each, numbered) are read as they were
written and converted by their next save.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pynamodb.connection import Connection as DynamoConnection
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from revsync.domain.events import Observation
from revsync.domain.history import (
    FROM_NOTHING,
    Contribution,
    HistoryLog,
    Timeline,
    TimelineStart,
    revenue_totals,
)
from revsync.domain.history_archive import HistoryChunk, HistoryUpdate, KeptHistory, whole_timeline
from revsync.domain.record import UNMATCHED_PREFIX, CustomerRecord
from revsync.domain.snapshots import InvoiceSnapshot
from revsync.domain.state import CustomerObjects
from revsync.errors import Conflict
from revsync.store import models
from revsync.store.models import (
    CustomerRecordItem,
    CustomerStateItem,
    HistoryArchiveItem,
    InvoiceArchiveItem,
    PaidInvoiceItem,
    TimelinePieceItem,
)
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
    "subscriptions",
    "traits",
)


INLINE_INVOICES = 4
# The previous format's list length (read only: see _legacy_invoices).
RECENT_INVOICES = 8


@dataclass(frozen=True, slots=True)
class InvoiceBook:
    """Where the stored state keeps its paid invoices (see the module docstring)."""

    archived: int = 0  # archive items counted: numbers 1..archived
    inline: tuple[str, ...] = ()  # ids kept in the state item, oldest first
    # Archived ids: final, never written again.
    archived_ids: frozenset[str] = frozenset()

    def after(self, invoice_id: str | None) -> tuple[InvoiceBook, list[tuple[str, ...]]]:
        """The book once ``invoice_id`` (None: no invoice) is saved, and the inline ids to archive
        first, in chunks (each chunk one archive item, numbered from ``archived + 1``)."""
        if invoice_id is None or invoice_id in self.inline or invoice_id in self.archived_ids:
            added: tuple[str, ...] = ()
        else:
            added = (invoice_id,)
        if len(self.inline) + len(added) <= INLINE_INVOICES:
            return replace(self, inline=self.inline + added), []
        chunks = [self.inline[i : i + INLINE_INVOICES] for i in range(0, len(self.inline), INLINE_INVOICES)]
        spilled = self.archived_ids | frozenset(self.inline)
        return InvoiceBook(self.archived + len(chunks), added, spilled), chunks


class ConcurrentUpdate(Conflict):
    """Another writer changed the customer's state since it was loaded: load again and retry."""

    code = "concurrent_update"


def _timeline_to_json(timeline: Timeline) -> str:
    return json.dumps([list(point) for point in timeline], separators=(",", ":"))


def _timeline_from_json(text: str | None) -> Timeline | None:
    """None: a state written before timelines were kept (sync derives it from the history)."""
    if text is None:
        return None
    return tuple((int(at), currency, int(mrr)) for at, currency, mrr in json.loads(text))


def _start_to_json(start: TimelineStart) -> str | None:
    """None (the attribute absent): the piece starts from nothing, as a whole timeline does."""
    return None if start == FROM_NOTHING else json.dumps(list(start), separators=(",", ":"))


def _start_from_json(text: str | None) -> TimelineStart:
    if text is None:
        return FROM_NOTHING
    currency, mrr, ever_paid = json.loads(text)
    return TimelineStart(currency, int(mrr), bool(ever_paid))


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class StoredCustomer:
    objects: CustomerObjects
    version: int | None  # None: nothing stored yet
    external_id: str | None  # the record key last projected
    config_version: int
    # The version the current record derives from (0: none yet, its key waits for the customer).
    record_version: int | None = None
    # The MRR history's observations since the state's boundary, its checkpoint there, the piece of
    # the timeline from there on, and how many history archives hold the rest.
    history: KeptHistory = field(default_factory=KeptHistory)
    invoices: InvoiceBook = field(default_factory=InvoiceBook)


def _legacy_invoices(stored: Mapping[str, Any], items: list[PaidInvoiceItem]) -> list[PaidInvoiceItem]:
    """The invoice items a state of the previous format counted: the last RECENT_INVOICES it listed,
    and every item whose number is older than those (an unnumbered item, from before numbers, is
    number 0; a state from then lists every invoice and counts from RECENT_INVOICES)."""
    listed = set(stored.get("invoice_ids", ()))
    count = int(stored.get("invoice_count", RECENT_INVOICES if listed else 0))
    counted = [
        item
        for item in items
        if item.invoice_id in listed or int(item.number or 0) <= count - RECENT_INVOICES
    ]
    return sorted(counted, key=lambda item: (int(item.number or 0), item.invoice_id))


def _legacy_document(item: PaidInvoiceItem) -> list[Any]:
    lines = [[str(sub), int(end)] for sub, end in item.lines]
    paid_at = None if item.paid_at is None else int(item.paid_at)
    return [
        item.invoice_id,
        int(item.amount_paid),
        item.currency,
        paid_at,
        item.subscription_id,
        int(item.observed_at),
        lines,
    ]


def _invoice_document(observation: Observation) -> list[Any]:
    """What is kept of a paid invoice (the fields the record reads), compactly: a list, not a map."""
    invoice = observation["snapshot"]
    assert invoice["object"] == "invoice"
    lines = [[line["subscription"], line["period_end"]] for line in invoice["lines"]]
    return [
        invoice["id"],
        invoice["amount_paid"],
        invoice["currency"],
        invoice["paid_at"],
        invoice["subscription"],
        observation["observed_at"],
        lines,
    ]


def _invoice_from_document(document: list[Any], customer_id: str) -> Observation:
    invoice_id, amount_paid, currency, paid_at, subscription, observed_at, lines = document
    snapshot = InvoiceSnapshot(
        object="invoice",
        id=invoice_id,
        customer=customer_id,
        status="paid",
        amount_paid=int(amount_paid),
        currency=currency,
        paid_at=None if paid_at is None else int(paid_at),
        subscription=subscription,
        lines=[{"subscription": str(sub), "period_end": int(end)} for sub, end in lines],
    )
    # Any observation of a paid invoice is an update of it; the event id is not kept.
    return Observation(snapshot=snapshot, observed_at=int(observed_at), source="updated", event_id=None)


def kept_invoice(observation: Observation) -> Observation:
    """A paid invoice's observation as ``load`` gives it back (what the store keeps of it)."""
    invoice = observation["snapshot"]
    assert invoice["object"] == "invoice"
    return _invoice_from_document(_invoice_document(observation), invoice["customer"])


def _archive_key(number: int) -> str:
    return f"{models.INVOICE_ARCHIVE_SK_PREFIX}{number:06d}"


def _history_key(until: int) -> str:
    """A history archive's sort key: by the time it ends (its range never changes), so the archive
    holding a time is the first key after it, and keys sort in time order."""
    return f"{models.HISTORY_ARCHIVE_SK_PREFIX}{until:012d}"


def _chunk(item: HistoryArchiveItem) -> HistoryChunk:
    return HistoryChunk(
        int(item.number),
        int(item.until),
        HistoryLog.from_json(item.history),
        _start_from_json(item.timeline_start),
        _timeline_from_json(item.timeline) or (),
    )


def _kept(state: CustomerStateItem) -> KeptHistory:
    return KeptHistory.from_json(
        state.objects.get("history"),
        _timeline_from_json(state.timeline),
        _start_from_json(state.timeline_start),
    )


# A transaction holds at most 100 items: the state, or a check of its version, and 99 chunks.
CHUNKS_PER_TRANSACTION = 99


@defers_when_throttled
class CustomerStore:
    def load(self, tenant_id: str, customer_id: str) -> StoredCustomer:
        pk = models.sync_partition(tenant_id, customer_id)
        state: CustomerStateItem | None = None
        archives: dict[int, list[list[Any]]] = {}
        legacy: list[PaidInvoiceItem] = []
        # The state and the invoice archives; not the history archives (read when needed: see
        # ``history_archive``), whose keys sort before.
        after_history = models.SyncItem.sk > models.HISTORY_KEYS_END
        for item in models.SyncItem.query(pk, after_history, consistent_read=True):
            if isinstance(item, CustomerStateItem):
                state = item
            elif isinstance(item, InvoiceArchiveItem):
                archives[int(item.number)] = item.invoices
            elif isinstance(item, PaidInvoiceItem):
                legacy.append(item)
        stored = state.objects if state is not None else {}
        if "archived" in stored or not legacy:
            archived = int(stored.get("archived", 0))
            inline: list[list[Any]] = stored.get("invoices", [])
            counted = [doc for number in sorted(archives) if number <= archived for doc in archives[number]]
        else:  # the previous format: its counted items are this state's inline invoices, to archive
            archived, counted = 0, []
            inline = [_legacy_document(item) for item in _legacy_invoices(stored, legacy)]
        invoices = {doc[0]: _invoice_from_document(doc, customer_id) for doc in (*counted, *inline)}
        book = InvoiceBook(archived, tuple(doc[0] for doc in inline), frozenset(doc[0] for doc in counted))
        objects = CustomerObjects(
            customer_id=customer_id,
            customer=stored.get("customer"),
            subscriptions=stored.get("subscriptions", {}),
            invoices=invoices,
        )
        return StoredCustomer(
            objects=objects,
            version=int(state.version) if state is not None and state.version is not None else None,
            external_id=state.external_id if state is not None else None,
            config_version=int(state.config_version) if state is not None else 0,
            record_version=(
                int(state.record_version)
                if state is not None and state.record_version is not None
                else (int(state.version) if state is not None and state.version is not None else None)
            ),
            history=KeptHistory() if state is None else _kept(state),
            invoices=book,
        )

    def history_archive(self, tenant_id: str, customer_id: str) -> list[HistoryChunk]:
        """The customer's archived MRR history (its state counts the first ``history.archived``)."""
        pk = models.sync_partition(tenant_id, customer_id)
        archived = HistoryArchiveItem.sk.startswith(models.HISTORY_ARCHIVE_SK_PREFIX)
        return [_chunk(item) for item in HistoryArchiveItem.query(pk, archived, consistent_read=True)]

    def history_chunk(self, tenant_id: str, customer_id: str, at: int) -> HistoryChunk | None:
        """The history archive holding time ``at`` (the first that ends after it; None: none does)."""
        pk = models.sync_partition(tenant_id, customer_id)
        after = HistoryArchiveItem.sk.between(_history_key(at + 1), models.HISTORY_KEYS_END)
        found = HistoryArchiveItem.query(pk, after, consistent_read=True, limit=1)
        return next((_chunk(item) for item in found), None)

    def save(
        self,
        tenant_id: str,
        stored: StoredCustomer,
        objects: CustomerObjects,
        applied: Observation | None,
        external_id: str | None,
        config_version: int,
        record_changed: bool = True,
        history: HistoryUpdate | None = None,
        record_waits: bool = False,
    ) -> int:
        """Save the objects unless someone else did since ``stored`` was loaded; return the new version.

        ``record_changed``: whether the derived record differs from the one ``stored`` gives (if not,
        the record keeps deriving from ``stored.record_version``); ``record_waits``: no record derives
        from this state yet (record version 0; its key waits for the customer object). ``history``
        replaces the MRR history (None: ``stored``'s), in the same write: the tenant's months are sums
        of the stored timelines, so a change counts once. Its chunks (history archives, new or
        rewritten) are written in one transaction with the state, so a piece of a timeline is never
        counted twice nor lost whoever wins a race."""
        pk = models.sync_partition(tenant_id, objects.customer_id)
        kept = history.kept if history is not None else stored.history
        invoice = applied["snapshot"] if applied is not None else None
        applied_invoice = invoice["id"] if invoice is not None and invoice["object"] == "invoice" else None
        book, chunks = stored.invoices.after(applied_invoice)
        for offset, chunk in enumerate(chunks, start=1):
            # Before the state write that counts it (see the module docstring).
            self._archive(pk, stored, stored.invoices.archived + offset, chunk)
        item = CustomerStateItem(
            pk,
            models.STATE_SK,
            objects={
                "customer": objects.customer,
                "subscriptions": dict(objects.subscriptions),
                "archived": book.archived,
                "invoices": [_invoice_document(objects.invoices[i]) for i in book.inline],
                "history": kept.to_json(),
            },
            external_id=external_id,
            config_version=config_version,
        )
        new_version = (stored.version or 0) + 1
        carried = stored.record_version if not record_changed else None
        item.record_version = 0 if record_waits else carried if carried is not None else new_version
        if stored.version is not None:
            item.version = stored.version  # unset: the save requires that no state item exists yet
        if kept.timeline is not None:
            item.timeline = _timeline_to_json(kept.timeline)
            # In the revenue index only with a point (sparse: customers that never had MRR stay out).
            item.tenant_id = tenant_id if kept.timeline else None
        item.rollup_tenant = tenant_id  # the revenue rollup counts its piece (store.rollup)
        item.timeline_start = _start_to_json(kept.checkpoint.start)
        history_chunks = history.chunks if history is not None else ()
        if history_chunks:
            self._save_with_chunks(tenant_id, stored, item, history_chunks)
            return int(item.version)
        try:
            item.save()  # VersionAttribute: conditional on the version we loaded
        except PutError as exc:
            if _conditional_failed(exc):
                raise ConcurrentUpdate(pk) from exc
            raise
        return int(item.version)

    def _save_with_chunks(
        self,
        tenant_id: str,
        stored: StoredCustomer,
        state: CustomerStateItem,
        chunks: tuple[HistoryChunk, ...],
    ) -> None:
        """The chunks and the state in one transaction (the state's version checked). Over 99 chunks
        (a late observation that changes years of pieces), the first transactions check the state's
        version and write the newest chunks only; the oldest, which hold the new observations, go
        with the state in the last: if it loses, the observations are not archived, so their retry
        replays the whole history again and rewrites what differs."""
        version = stored.version or 0
        items = [
            HistoryArchiveItem(
                state.pk,
                _history_key(chunk.until),
                number=chunk.number,
                until=chunk.until,
                spilled_from=version,
                history=chunk.log.to_json(),
                timeline=_timeline_to_json(chunk.timeline),
                timeline_start=_start_to_json(chunk.start),
                tenant_id=tenant_id if chunk.timeline else None,
                rollup_tenant=tenant_id,  # the revenue rollup counts its piece (store.rollup)
            )
            for chunk in chunks
        ]
        # Only over a chunk written from the same or an older state version (as invoice archives).
        fresh = HistoryArchiveItem.spilled_from.does_not_exist() | (
            HistoryArchiveItem.spilled_from <= version
        )
        unchanged = (
            CustomerStateItem.version.does_not_exist()
            if stored.version is None
            else CustomerStateItem.version == stored.version
        )
        newest_first = sorted(items, key=lambda item: -int(item.number))
        batches = [
            newest_first[i : i + CHUNKS_PER_TRANSACTION]
            for i in range(0, len(newest_first), CHUNKS_PER_TRANSACTION)
        ]
        connection = DynamoConnection(
            connect_timeout_seconds=models.CONNECT_TIMEOUT_SECONDS,
            read_timeout_seconds=models.READ_TIMEOUT_SECONDS,
            max_retry_attempts=models.MAX_RETRY_ATTEMPTS,
        )
        try:
            for number, batch in enumerate(batches, start=1):
                with TransactWrite(connection=connection) as transaction:
                    for chunk_item in batch:
                        transaction.save(chunk_item, condition=fresh)
                    if number == len(batches):
                        transaction.save(state)  # VersionAttribute: conditional on the version we loaded
                    else:
                        transaction.condition_check(
                            CustomerStateItem, state.pk, models.STATE_SK, condition=unchanged
                        )
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            if any(
                r is not None and r.code in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons
            ):
                raise ConcurrentUpdate(state.pk) from exc
            raise

    def _archive(self, pk: str, stored: StoredCustomer, number: int, invoice_ids: tuple[str, ...]) -> None:
        version = stored.version or 0
        archive = InvoiceArchiveItem(
            pk,
            _archive_key(number),
            number=number,
            spilled_from=version,
            invoices=[_invoice_document(stored.objects.invoices[i]) for i in invoice_ids],
        )
        try:
            archive.save(
                condition=InvoiceArchiveItem.spilled_from.does_not_exist()
                | (InvoiceArchiveItem.spilled_from <= version)
            )
        except PutError as exc:
            if _conditional_failed(exc):
                raise ConcurrentUpdate(pk) from exc  # a newer state spilled it: this one is stale
            raise

    def revenue_totals(self, tenant_id: str) -> dict[str, dict[str, Contribution]]:
        """currency -> month -> the tenant's totals, summed over its customers' MRR timelines (one
        Query of the revenue index: ~100 bytes a customer that ever had MRR, more for long histories).
        A customer's pieces, in key order (archives, oldest first, then the state), make its timeline:
        each starts where the one before ended, and a piece without points (not in the index) changes
        nothing."""
        pieces: dict[str, list[tuple[str, Timeline]]] = {}
        index = models.RevenueIndex.Meta.index_name
        for item in TimelinePieceItem.query(tenant_id, index_name=index):
            pieces.setdefault(item.pk, []).append((item.sk, _timeline_from_json(item.timeline) or ()))
        timelines = (
            found[0][1] if len(found) == 1 else tuple(p for _, piece in sorted(found) for p in piece)
            for found in pieces.values()
        )
        return revenue_totals(timelines)

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
                chunks.append(_chunk(item))
        return None if state is None else whole_timeline(_kept(state), chunks)

    def project(
        self, record: CustomerRecord, version: int, previous_external_id: str | None, *, repair: bool
    ) -> bool:
        """Write the record's owned attributes unless a newer derivation is already there.

        ``repair`` (a redelivery, or a retry after a conflict) rewrites at the same version, so a
        crash between the state write and this one heals on the next delivery.
        """
        key = CustomerRecordItem(record["tenant_id"], record["external_id"])
        actions: list[Any] = []
        for name in OWNED_RECORD_FIELDS:
            attribute = getattr(CustomerRecordItem, name)
            value = record[name]  # type: ignore[literal-required]
            actions.append(attribute.remove() if value is None else attribute.set(value))
        actions.append(CustomerRecordItem.revsync_version.set(version))
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
            if _conditional_failed(exc):
                return False  # a newer derivation is already stored
            raise
        if previous_external_id and previous_external_id != record["external_id"]:
            self._release(record["tenant_id"], previous_external_id, record["stripe_customer_id"])
        return True

    def projected_version(self, tenant_id: str, external_id: str, customer_id: str) -> int | None:
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
                    getattr(CustomerRecordItem, n).remove() for n in (*OWNED_RECORD_FIELDS, "revsync_version")
                ],
                condition=belongs,
            )
            # The raw item, platform attributes included (the model maps only revsync's own).
            if not set(response.get("Attributes", {})) - {"tenant_id", "external_id"}:
                old.delete(condition=CustomerRecordItem.stripe_customer_id.does_not_exist())
        except (DeleteError, UpdateError) as exc:
            if not _conditional_failed(exc):
                raise

    def get_record(self, tenant_id: str, external_id: str) -> dict[str, Any] | None:
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
        return document
