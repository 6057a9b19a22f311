"""A customer's state and its archives: the write path's load, and its one conditional save.

Per applied observation this costs one Query (the state item and the paid-invoice archives share a
partition) and one conditional write of the state item (its MRR timeline included: the tenant's months
are summed from the sparse ``revenue`` index over those, which DynamoDB writes only when a timeline
changes). The record is projected after it (store.records).

The MRR history is kept in pieces (revsync.domain.history_archive, store.history_items): the state
holds its newest seconds, history archives (``history#<until>``, numbered) the older ones, each with
its piece of the timeline (and in the revenue index while that piece has points). The Query above
stops short of the history archives (their keys sort first); they are read only when an observation
falls before the state's boundary. Archives are written in one transaction with the state write that
counts them (new or rewritten), conditioned as invoice archives are: a piece of a timeline is never
counted without the state that counts it, and a stale writer never overwrites one.

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

Credit notes and charges are kept the same way (``INLINE_REFUNDS`` inline, then ``refunds#000001``,
...), with one difference: one may change once archived (a credit note voided, a charge refunded
again). Its newer observation goes inline, and a load keeps each id's newest observation, archived
or inline: each counts once, and an archive is never rewritten for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pynamodb.connection import Connection as DynamoConnection
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from revsync.domain.events import Observation
from revsync.domain.history_archive import HistoryChunk, KeptHistory
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.snapshots import InvoiceSnapshot
from revsync.domain.state import CustomerObjects
from revsync.domain.stored_state import (
    ConcurrentUpdate,
    InvoiceBook,
    RefundBook,
    StateWrite,
    StoredCustomer,
)
from revsync.store import models
from revsync.store.history_items import (
    chunk_of,
    history_key,
    kept_of,
    start_to_json,
    timeline_to_json,
)
from revsync.store.models import (
    CustomerStateItem,
    HistoryArchiveItem,
    InvoiceArchiveItem,
    PaidInvoiceItem,
    RefundArchiveItem,
)
from revsync.store.throttling import defers_when_throttled

# The previous format's list length (read only: see _legacy_invoices).
RECENT_INVOICES = 8
# A transaction holds at most 100 items: the state, or a check of its version, and 99 chunks.
CHUNKS_PER_TRANSACTION = 99


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
    document = [
        invoice["id"],
        invoice["amount_paid"],
        invoice["currency"],
        invoice["paid_at"],
        invoice["subscription"],
        observation["observed_at"],
        lines,
    ]
    intents = invoice.get("payment_intents")
    return [*document, intents] if intents else document  # (documents before them have 7 fields)


def _invoice_from_document(document: list[Any], customer_id: str) -> Observation:
    invoice_id, amount_paid, currency, paid_at, subscription, observed_at, lines, *more = document
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
    if more and more[0]:
        snapshot["payment_intents"] = [str(intent) for intent in more[0]]
    # Any observation of a paid invoice is an update of it; the event id is not kept.
    return Observation(snapshot=snapshot, observed_at=int(observed_at), source="updated", event_id=None)


def kept_invoice(observation: Observation) -> Observation:
    """A paid invoice's observation as ``load`` gives it back (what the store keeps of it)."""
    invoice = observation["snapshot"]
    assert invoice["object"] == "invoice"
    return _invoice_from_document(_invoice_document(observation), invoice["customer"])


def _archive_key(number: int) -> str:
    return f"{models.INVOICE_ARCHIVE_SK_PREFIX}{number:06d}"


def _refunds_of(
    stored: Mapping[str, Any], archives: dict[int, dict[str, Observation]]
) -> tuple[dict[str, Observation], RefundBook]:
    """Each credit note's and charge's newest observation, from the counted archives and the state
    (a state from before the archives: all of its are inline)."""
    archived = int(stored.get("refunds_archived", 0))
    inline: dict[str, Observation] = stored.get("refunds", {})
    newest: dict[str, Observation] = {}
    counted = [archives[number] for number in sorted(archives) if number <= archived]
    for kept in (*counted, inline):
        for refund_id, observation in kept.items():
            held = newest.get(refund_id)
            if held is None or observation["observed_at"] >= held["observed_at"]:
                newest[refund_id] = observation
    return newest, RefundBook(archived, tuple(sorted(inline)))


def _stored(
    customer_id: str,
    state: CustomerStateItem | None,
    archives: dict[int, list[list[Any]]],
    legacy: list[PaidInvoiceItem],
    refund_archives: dict[int, dict[str, Observation]],
) -> StoredCustomer:
    """The customer's state from its items (nothing stored: empty, version None)."""
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
    refunds, refund_book = _refunds_of(stored, refund_archives)
    objects = CustomerObjects(
        customer_id=customer_id,
        customer=stored.get("customer"),
        subscriptions=stored.get("subscriptions", {}),
        invoices=invoices,
        refunds=refunds,
        failed_invoices=stored.get("failed_invoices", {}),
        schedules=stored.get("schedules", {}),
        payment_methods=stored.get("payment_methods", {}),
        usage=stored.get("usage", {}),
    )
    if state is None:
        return StoredCustomer(objects, None, None, 0, invoices=book, refunds=refund_book)
    version = int(state.version) if state.version is not None else None
    return StoredCustomer(
        objects=objects,
        version=version,
        external_id=state.external_id,
        config_version=int(state.config_version),
        record_version=int(state.record_version) if state.record_version is not None else version,
        history=kept_of(state),
        invoices=book,
        refunds=refund_book,
        policy=RevenuePolicy.from_json(stored["policy"]) if "policy" in stored else DEFAULT_POLICY,
        judged_at=stored.get("judged_at"),
        review_at=None if state.review_at is None else int(state.review_at),
    )


def _state_item(write: StateWrite) -> CustomerStateItem:
    """The state item ``write`` puts (its version attribute: the one loaded, which the save checks)."""
    saved = write.saved()
    objects, kept = saved.objects, saved.history
    item = CustomerStateItem(
        models.sync_partition(write.tenant_id, objects.customer_id),
        models.STATE_SK,
        objects={
            "customer": objects.customer,
            "subscriptions": dict(objects.subscriptions),
            "archived": saved.invoices.archived,
            "invoices": [_invoice_document(objects.invoices[i]) for i in saved.invoices.inline],
            "refunds_archived": saved.refunds.archived,
            "refunds": {i: objects.refunds[i] for i in saved.refunds.inline},
            "history": kept.to_json(),
            # What risk signals read, a few of each (revsync.domain.state bounds them); none: no key.
            **{
                key: dict(kept_objects)
                for key, kept_objects in (
                    ("failed_invoices", objects.failed_invoices),
                    ("schedules", objects.schedules),
                    ("payment_methods", objects.payment_methods),
                    # (and what the policy's metered: last_invoice counts)
                    ("usage", objects.usage),
                )
                if kept_objects
            },
        }
        | ({} if saved.judged_at is None else {"judged_at": saved.judged_at})
        # Only a tenant's own policy takes bytes (the default is what a state without one was made with).
        | ({} if saved.policy == DEFAULT_POLICY else {"policy": saved.policy.to_json()}),
        external_id=saved.external_id,
        config_version=saved.config_version,
        record_version=saved.record_version,
        review_at=saved.review_at,
    )
    if write.stored.version is not None:
        item.version = write.stored.version  # unset: the save requires that no state item exists yet
    _set_piece(item, write.tenant_id, kept)
    return item


def _set_piece(item: CustomerStateItem, tenant_id: str, kept: KeptHistory) -> None:
    """The state's piece of the timeline, and the keys that list it."""
    if kept.timeline is not None:
        item.timeline = timeline_to_json(kept.timeline)
        # In the revenue index only with a point (sparse: customers that never had MRR stay out).
        item.tenant_id = tenant_id if kept.timeline else None
    item.rollup_tenant = tenant_id  # the revenue rollup counts its piece (store.rollup)
    item.timeline_start = start_to_json(kept.checkpoint.start)


@defers_when_throttled
class CustomerStates:
    def load(self, tenant_id: str, customer_id: str) -> StoredCustomer:
        pk = models.sync_partition(tenant_id, customer_id)
        state: CustomerStateItem | None = None
        archives: dict[int, list[list[Any]]] = {}
        legacy: list[PaidInvoiceItem] = []
        refund_archives: dict[int, dict[str, Observation]] = {}
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
            elif isinstance(item, RefundArchiveItem):
                refund_archives[int(item.number)] = item.refunds
        return _stored(customer_id, state, archives, legacy, refund_archives)

    def due_for_review(self, tenant_id: str, now: int, limit: int) -> list[str]:
        """The customers whose record changes by time alone at or before ``now``, the longest due
        first (one Query of the sparse review index)."""
        due = CustomerStateItem.review_index.query(tenant_id, CustomerStateItem.review_at <= now, limit=limit)
        prefix = models.sync_partition(tenant_id, "")
        return [item.pk.removeprefix(prefix) for item in due]

    def history_archive(self, tenant_id: str, customer_id: str) -> list[HistoryChunk]:
        """The customer's archived MRR history (its state counts the first ``history.archived``)."""
        pk = models.sync_partition(tenant_id, customer_id)
        archived = HistoryArchiveItem.sk.startswith(models.HISTORY_ARCHIVE_SK_PREFIX)
        return [chunk_of(item) for item in HistoryArchiveItem.query(pk, archived, consistent_read=True)]

    def history_chunk(self, tenant_id: str, customer_id: str, at: int) -> HistoryChunk | None:
        """The history archive holding time ``at`` (the first that ends after it; None: none does)."""
        pk = models.sync_partition(tenant_id, customer_id)
        after = HistoryArchiveItem.sk.between(history_key(at + 1), models.HISTORY_KEYS_END)
        found = HistoryArchiveItem.query(pk, after, consistent_read=True, limit=1)
        return next((chunk_of(item) for item in found), None)

    def save(self, write: StateWrite) -> int:
        """Write the state unless someone else did since ``write.stored`` was loaded (then raise
        ``ConcurrentUpdate``); return the new version. Its invoice archives go first, its history
        chunks in one transaction with it (see the module docstring)."""
        pk = models.sync_partition(write.tenant_id, write.objects.customer_id)
        for offset, spill in enumerate(write.invoice_spills, start=1):
            # Before the state write that counts it (see the module docstring).
            self._archive(pk, write.stored, write.stored.invoices.archived + offset, spill)
        for offset, refund_ids in enumerate(write.refund_spills, start=1):
            self._archive_refunds(pk, write.stored, write.stored.refunds.archived + offset, refund_ids)
        item = _state_item(write)
        if write.history_chunks:
            self._save_with_chunks(write, item)
            return int(item.version)
        try:
            item.save()  # VersionAttribute: conditional on the version we loaded
        except PutError as exc:
            if models.condition_failed(exc):
                raise ConcurrentUpdate(pk) from exc
            raise
        return int(item.version)

    def _save_with_chunks(self, write: StateWrite, state: CustomerStateItem) -> None:
        """The chunks and the state in one transaction (the state's version checked). Over 99 chunks
        (a late observation that changes years of pieces), the first transactions check the state's
        version and write the newest chunks only; the oldest, which hold the new observations, go
        with the state in the last: if it loses, the observations are not archived, so their retry
        replays the whole history again and rewrites what differs."""
        stored, tenant_id = write.stored, write.tenant_id
        version = stored.version or 0
        items = [
            HistoryArchiveItem(
                state.pk,
                history_key(chunk.until),
                number=chunk.number,
                until=chunk.until,
                spilled_from=version,
                history=chunk.log.to_json(),
                timeline=timeline_to_json(chunk.timeline),
                timeline_start=start_to_json(chunk.start),
                tenant_id=tenant_id if chunk.timeline else None,
                rollup_tenant=tenant_id,  # the revenue rollup counts its piece (store.rollup)
            )
            for chunk in write.history_chunks
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
        _save_spilled(pk, archive, version)

    def _archive_refunds(
        self, pk: str, stored: StoredCustomer, number: int, refund_ids: tuple[str, ...]
    ) -> None:
        """As ``_archive``: before the state write that counts it, only over one spilled from the
        same or an older state version."""
        version = stored.version or 0
        archive = RefundArchiveItem(
            pk,
            f"{models.REFUND_ARCHIVE_SK_PREFIX}{number:06d}",
            number=number,
            spilled_from=version,
            refunds={i: stored.objects.refunds[i] for i in refund_ids},
        )
        _save_spilled(pk, archive, version)


def _save_spilled(pk: str, archive: InvoiceArchiveItem | RefundArchiveItem, version: int) -> None:
    """Write an archive before the state write that counts it, only over one spilled from the same
    or an older state version: a stale writer cannot overwrite an archive a newer state counts."""
    spilled_from = type(archive).spilled_from
    try:
        archive.save(condition=spilled_from.does_not_exist() | (spilled_from <= version))
    except PutError as exc:
        if models.condition_failed(exc):
            raise ConcurrentUpdate(pk) from exc  # a newer state spilled it: this one is stale
        raise
