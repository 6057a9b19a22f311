"""The write path's storage: load a customer's objects, save them optimistically, project the record.

Per applied observation this costs one Query (the state item and the paid invoices share a
partition), one conditional write of the state item, and one conditional update of the record when
the derived record changed. A new paid invoice adds its own put.

A paid invoice is put before the state write that makes it count, so an invoice whose state write
failed or was lost is not applied yet (it will be, when its event is retried). Which invoice items
count is told by the state without listing them all (the state item stays under 1 KB, one write
unit, however many invoices a customer pays): each new invoice takes the next number of the state's
invoice count, and the state lists the last ``RECENT_INVOICES`` it counted. An item counts when it is
listed, or when its number is older than the listed ones. An item whose state write was lost keeps
a number another invoice took; before that number leaves the list, the state write that pushes it
out deletes the lost item (conditional on its number: a retry may have put it again meanwhile), so
it does not count until its event is retried or redriven, as when it was listed. (Only a put delayed
past ``RECENT_INVOICES`` later invoices of one customer would escape that: README "Known limits".)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from revsync.domain.events import Observation
from revsync.domain.history import Contribution, HistoryLog
from revsync.domain.record import UNMATCHED_PREFIX, CustomerRecord
from revsync.domain.snapshots import InvoiceSnapshot
from revsync.domain.state import CustomerObjects
from revsync.settings import get_settings
from revsync.store import models
from revsync.store.models import CustomerRecordItem, CustomerStateItem, PaidInvoiceItem, RevenueMonthItem

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


RECENT_INVOICES = 8


@dataclass(frozen=True, slots=True)
class InvoiceLog:
    """Which paid-invoice items the stored state counts (see the module docstring)."""

    count: int = 0  # numbers given to invoices so far
    recent: tuple[str, ...] = ()  # the last RECENT_INVOICES counted, oldest first
    numbers: Mapping[str, int | None] = field(default_factory=dict)  # of the counted items
    lost: Mapping[str, int] = field(default_factory=dict)  # items put, not counted: their numbers

    def counts(self, invoice_id: str, number: int | None) -> bool:
        # An item put before invoices were numbered is number 0 (see _invoice_log).
        return invoice_id in self.recent or (number or 0) <= self.count - RECENT_INVOICES

    def after(self, invoice_id: str) -> tuple[InvoiceLog, int | None]:
        """The log once ``invoice_id`` is saved, and the number its item is put with."""
        if invoice_id in self.numbers:  # counted already: an update keeps its number
            return self, self.numbers[invoice_id]
        number = self.count + 1
        recent = (*self.recent, invoice_id)[-RECENT_INVOICES:]
        lost = {lost_id: n for lost_id, n in self.lost.items() if lost_id != invoice_id}
        return InvoiceLog(number, recent, {**self.numbers, invoice_id: number}, lost), number

    def leaving(self) -> dict[str, int]:
        """Lost items whose numbers the list no longer covers: they must go before this log is saved."""
        return {invoice_id: n for invoice_id, n in self.lost.items() if n <= self.count - RECENT_INVOICES}


class ConcurrentUpdate(RuntimeError):
    """Another writer changed the customer's state since it was loaded: load again and retry."""


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class StoredCustomer:
    objects: CustomerObjects
    version: int | None  # None: nothing stored yet
    external_id: str | None  # the record key last projected
    config_version: int
    record_version: int | None = None  # the version the current record derives from
    history: HistoryLog = field(default_factory=HistoryLog)
    invoices: InvoiceLog = field(default_factory=InvoiceLog)


def _invoice_log(stored: Mapping[str, Any]) -> InvoiceLog:
    listed = tuple(stored.get("invoice_ids", ()))
    if "invoice_count" in stored:
        return InvoiceLog(int(stored["invoice_count"]), listed)
    # Written before invoices were numbered: its items have no number and it lists every invoice it
    # counted. Its count starts at RECENT_INVOICES, so they all count as number 0 from now on.
    return InvoiceLog(RECENT_INVOICES, listed) if listed else InvoiceLog()


def _invoice_observation(item: PaidInvoiceItem, customer_id: str) -> Observation:
    snapshot = InvoiceSnapshot(
        object="invoice",
        id=item.invoice_id,
        customer=customer_id,
        status="paid",
        amount_paid=int(item.amount_paid),
        currency=item.currency,
        paid_at=int(item.paid_at) if item.paid_at is not None else None,
        subscription=item.subscription_id,
        lines=[{"subscription": str(sub), "period_end": int(end)} for sub, end in item.lines],
    )
    return Observation(snapshot=snapshot, observed_at=int(item.observed_at), source="updated", event_id=None)


def kept_invoice(observation: Observation) -> Observation:
    """A paid invoice's observation as ``load`` gives it back: what its item keeps (the fields the
    record reads; no event id, and the source of any observation of a paid invoice is "updated")."""
    invoice = observation["snapshot"]
    assert invoice["object"] == "invoice"
    return _invoice_observation(_invoice_item("", observation, None), invoice["customer"])


def _invoice_item(pk: str, observation: Observation, number: int | None) -> PaidInvoiceItem:
    invoice = observation["snapshot"]
    assert invoice["object"] == "invoice"
    return PaidInvoiceItem(
        pk,
        f"{models.INVOICE_SK_PREFIX}{invoice['id']}",
        number=number,
        invoice_id=invoice["id"],
        amount_paid=invoice["amount_paid"],
        currency=invoice["currency"],
        paid_at=invoice["paid_at"],
        subscription_id=invoice["subscription"],
        observed_at=observation["observed_at"],
        lines=[[line["subscription"], line["period_end"]] for line in invoice["lines"]],
    )


def _delete_lost_invoice(pk: str, invoice_id: str, number: int) -> None:
    item = PaidInvoiceItem(pk, f"{models.INVOICE_SK_PREFIX}{invoice_id}")
    try:
        item.delete(condition=PaidInvoiceItem.number == number)
    except DeleteError as exc:
        if not _conditional_failed(exc):
            raise  # else its event was retried meanwhile: the item is put again, with a new number


@lru_cache(maxsize=1)
def _transactions() -> Connection:
    """One connection (one botocore client) per process for transactions, with the models' timeouts."""
    return Connection(
        region=get_settings().region,
        connect_timeout_seconds=models.CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds=models.READ_TIMEOUT_SECONDS,
        max_retry_attempts=models.MAX_RETRY_ATTEMPTS,
    )


class CustomerStore:
    def load(self, tenant_id: str, customer_id: str) -> StoredCustomer:
        pk = models.sync_partition(tenant_id, customer_id)
        state: CustomerStateItem | None = None
        items: list[PaidInvoiceItem] = []
        for item in models.SyncItem.query(pk, consistent_read=True):
            if isinstance(item, CustomerStateItem):
                state = item
            elif isinstance(item, PaidInvoiceItem):
                items.append(item)
        stored = state.objects if state is not None else {}
        log = _invoice_log(stored)
        numbers: dict[str, int | None] = {}
        lost: dict[str, int] = {}
        for item in items:
            number = int(item.number) if item.number is not None else None
            if log.counts(item.invoice_id, number):
                numbers[item.invoice_id] = number
            elif number is not None:
                lost[item.invoice_id] = number
        log = replace(log, numbers=numbers, lost=lost)
        invoices = {
            item.invoice_id: _invoice_observation(item, customer_id)
            for item in items
            if item.invoice_id in numbers
        }
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
            history=HistoryLog.from_json(stored.get("history")),
            invoices=log,
        )

    def save(
        self,
        tenant_id: str,
        stored: StoredCustomer,
        objects: CustomerObjects,
        applied: Observation | None,
        external_id: str,
        config_version: int,
        record_changed: bool = True,
        history: HistoryLog | None = None,
        revenue_changes: Mapping[tuple[str, str], Contribution] | None = None,
    ) -> int:
        """Save the objects unless someone else did since ``stored`` was loaded; return the new version.

        ``record_changed``: whether the derived record differs from the one ``stored`` gives (if not,
        the record keeps deriving from ``stored.record_version``). ``history`` replaces the kept
        observations; ``revenue_changes`` ((currency, month) -> what the customer's new history adds
        to that month) are added to the tenant's monthly totals in the same transaction, so each
        change is counted exactly once: a retry finds the version moved and recomputes."""
        pk = models.sync_partition(tenant_id, objects.customer_id)
        log = stored.invoices
        if applied is not None and applied["snapshot"]["object"] == "invoice":
            # Idempotent put, before the state write that makes it count (see the module docstring).
            log, number = log.after(applied["snapshot"]["id"])
            _invoice_item(pk, applied, number).save()
            for invoice_id, lost_number in log.leaving().items():
                _delete_lost_invoice(pk, invoice_id, lost_number)
        item = CustomerStateItem(
            pk,
            models.STATE_SK,
            objects={
                "customer": objects.customer,
                "subscriptions": dict(objects.subscriptions),
                "invoice_count": log.count,
                "invoice_ids": list(log.recent),
                "history": (history if history is not None else stored.history).to_json(),
            },
            external_id=external_id,
            config_version=config_version,
        )
        new_version = (stored.version or 0) + 1
        carried = stored.record_version if not record_changed else None
        item.record_version = carried if carried is not None else new_version
        if stored.version is not None:
            item.version = stored.version  # unset: the save requires that no state item exists yet
        if revenue_changes:
            self._save_with_revenue(item, tenant_id, revenue_changes)
            return int(item.version)
        try:
            item.save()  # VersionAttribute: conditional on the version we loaded
        except PutError as exc:
            if _conditional_failed(exc):
                raise ConcurrentUpdate(pk) from exc
            raise
        return int(item.version)

    def _save_with_revenue(
        self, item: CustomerStateItem, tenant_id: str, changes: Mapping[tuple[str, str], Contribution]
    ) -> None:
        try:
            with TransactWrite(connection=_transactions()) as transaction:
                transaction.save(item)  # conditional on the version we loaded
                for (currency, month), delta in sorted(changes.items()):
                    total = RevenueMonthItem(
                        models.revenue_partition(tenant_id), models.revenue_sort_key(currency, month)
                    )
                    actions: list[Any] = [
                        getattr(RevenueMonthItem, name).add(value)
                        for name, value in delta._asdict().items()
                        if value
                    ]
                    actions.append(RevenueMonthItem.kind.set(RevenueMonthItem))
                    transaction.update(total, actions=actions)
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                raise ConcurrentUpdate(item.pk) from exc
            raise

    def revenue_totals(self, tenant_id: str) -> dict[str, dict[str, Contribution]]:
        """currency -> month -> the tenant's totals (one Query: a few items per month of history)."""
        found: dict[str, dict[str, Contribution]] = {}
        for item in RevenueMonthItem.query(models.revenue_partition(tenant_id)):
            currency, month = item.sk.split("#", 1)
            found.setdefault(currency, {})[month] = Contribution(
                *(int(getattr(item, name)) for name in Contribution._fields)
            )
        return found

    def history(self, tenant_id: str, customer_id: str) -> HistoryLog | None:
        """The customer's kept observations (None: nothing stored for that customer)."""
        try:
            item = CustomerStateItem.get(
                models.sync_partition(tenant_id, customer_id), models.STATE_SK, consistent_read=True
            )
        except DoesNotExist:
            return None
        return HistoryLog.from_json(item.objects.get("history"))

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
