"""A customer's state as the write path keeps it: what a load gives (``StoredCustomer``) and what a
save writes (``StateWrite``, one value: the write path's commit point).

The write path's storage port (revsync.services.sync.Customers) exchanges these and nothing else, so
a field added to the stored state is added here, in the store's mapping (revsync.store.customer_state)
and in the fake's; the port, the write path's callers and the benches do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from revsync.domain.events import Observation
from revsync.domain.history_archive import HistoryChunk, HistoryUpdate, KeptHistory
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.state import CustomerObjects
from revsync.errors import Conflict

# Paid invoices kept in the state item itself (paying one costs no write of its own); one more moves
# them, together, into an archive item (revsync.store.customer_state).
INLINE_INVOICES = 4
# Credit notes and charges kept in the state item itself; one more moves them, together, into an
# archive item (revsync.store.customer_state), as paid invoices.
INLINE_REFUNDS = 4


class ConcurrentUpdate(Conflict):
    """Another writer changed the customer's state since it was loaded: load again and retry."""

    code = "concurrent_update"


@dataclass(frozen=True, slots=True)
class InvoiceBook:
    """Where the stored state keeps its paid invoices: the newest inline, the others in archives."""

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


@dataclass(frozen=True, slots=True)
class RefundBook:
    """Where the stored state keeps credit notes and charges: the newest observed inline, the others
    in archives. Unlike a paid invoice, one may change once archived (a credit note voided, a charge
    refunded again): its newer observation is kept inline, and a load keeps each id's newest
    observation, inline or archived, so each counts once."""

    archived: int = 0  # archive items counted: numbers 1..archived
    inline: tuple[str, ...] = ()  # ids whose newest observation is in the state item, sorted

    def after(self, refund_id: str | None) -> tuple[RefundBook, list[tuple[str, ...]]]:
        """The book once ``refund_id`` (None: none) is saved, and the inline ids to archive first,
        in chunks (each one archive item, numbered from ``archived + 1``)."""
        added = () if refund_id is None or refund_id in self.inline else (refund_id,)
        if len(self.inline) + len(added) <= INLINE_REFUNDS:
            return replace(self, inline=tuple(sorted(self.inline + added))), []
        chunks = [self.inline[i : i + INLINE_REFUNDS] for i in range(0, len(self.inline), INLINE_REFUNDS)]
        return RefundBook(self.archived + len(chunks), added), chunks


@dataclass(frozen=True, slots=True)
class StoredCustomer:
    """A customer's state as loaded (nothing stored yet: its objects empty, its version None)."""

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
    refunds: RefundBook = field(default_factory=RefundBook)
    # The revenue policy the history's pieces and the record were derived with.
    policy: RevenuePolicy = DEFAULT_POLICY
    # The time the record was derived as of (its risk signals judged at; None: a state saved before
    # the record had them, derived as of its newest observation).
    judged_at: int | None = None
    # When its record next changes by time alone (revsync.domain.review; None: never): the scheduled
    # review finds it by this (Customers.due_for_review).
    review_at: int | None = None


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One write of a customer's state: ``stored`` (as loaded) becomes ``saved()``, unless another
    writer saved since ``stored`` was loaded (then the store raises ``ConcurrentUpdate`` and writes
    nothing). The history's chunks (archives, new or rewritten) go in the same write: the tenant's
    months are sums of the stored pieces, so a change counts once, whoever wins a race."""

    tenant_id: str
    stored: StoredCustomer
    objects: CustomerObjects
    applied: Observation | None  # the observation that changed the objects (None: none did)
    external_id: str | None  # the record key (None: the record waits for its customer object)
    config_version: int  # the tenant config the record derives with
    # Whether the derived record differs from the one ``stored`` gives (if not, the record keeps
    # deriving from ``stored.record_version``).
    record_changed: bool = True
    history: HistoryUpdate | None = None  # None: ``stored``'s history, no chunks
    # No record derives from this state yet (record version 0; its key waits for the customer object).
    record_waits: bool = False
    policy: RevenuePolicy = DEFAULT_POLICY  # the tenant's, which the history and the record derive with
    judged_at: int | None = None  # the time the record is derived as of
    review_at: int | None = None  # when the record next changes by time alone (None: never)

    @property
    def version(self) -> int:
        return (self.stored.version or 0) + 1

    @property
    def record_version(self) -> int:
        if self.record_waits:
            return 0
        carried = self.stored.record_version if not self.record_changed else None
        return carried if carried is not None else self.version

    @property
    def kept_history(self) -> KeptHistory:
        return self.history.kept if self.history is not None else self.stored.history

    @property
    def history_chunks(self) -> tuple[HistoryChunk, ...]:
        return self.history.chunks if self.history is not None else ()

    @property
    def invoice_spills(self) -> list[tuple[str, ...]]:
        """The inline invoice ids of ``stored`` to archive before the state is written, in chunks (one
        archive item each, numbered from ``stored.invoices.archived + 1``)."""
        return self._invoices()[1]

    @property
    def refund_spills(self) -> list[tuple[str, ...]]:
        """The inline credit note and charge ids of ``stored`` to archive before the state is written,
        in chunks (one archive item each, numbered from ``stored.refunds.archived + 1``)."""
        return self._refunds()[1]

    def _refunds(self) -> tuple[RefundBook, list[tuple[str, ...]]]:
        applied = self.applied["snapshot"] if self.applied is not None else None
        kinds = ("credit_note", "charge")
        changed = applied["id"] if applied is not None and applied["object"] in kinds else None
        return self.stored.refunds.after(changed)

    def _invoices(self) -> tuple[InvoiceBook, list[tuple[str, ...]]]:
        applied = self.applied["snapshot"] if self.applied is not None else None
        # (An unpaid invoice's observation changes the failed invoices, kept in the state item.)
        paid = (
            applied["id"]
            if applied is not None and applied["object"] == "invoice" and applied["status"] == "paid"
            else None
        )
        return self.stored.invoices.after(paid)

    def saved(self) -> StoredCustomer:
        """The state once written (its objects as given: a store may keep less of a paid invoice)."""
        return StoredCustomer(
            self.objects,
            self.version,
            self.external_id,
            self.config_version,
            self.record_version,
            self.kept_history,
            self._invoices()[0],
            self._refunds()[0],
            self.policy,
            self.judged_at,
            self.review_at,
        )
