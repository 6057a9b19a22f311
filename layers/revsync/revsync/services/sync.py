"""The one write path: apply a Stripe object snapshot observed at time T to a tenant's records.

Webhooks (through the worker) and backfill pages both come through ``apply_observation``; the
semantics live in the domain, this module only sequences load → decide → save → project.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from revsync.domain.changes import RECORD_CHANGED, RISK_CHANGED, record_change, risk_change
from revsync.domain.events import Observation
from revsync.domain.history import history_entries
from revsync.domain.history_archive import (
    HistoryChunk,
    HistoryUpdate,
    KeptHistory,
    archived_times,
    history_after,
    past_due_runs,
    whole_timeline,
    without_archived,
)
from revsync.domain.policy import RevenuePolicy
from revsync.domain.record import CustomerRecord, derive_record, record_key_unknown
from revsync.domain.review import next_review
from revsync.domain.snapshots import (
    Coupon,
    InvoiceLineItems,
    InvoiceSnapshot,
    Snapshot,
    SubscriptionItem,
    customer_id_of,
    fetch_target,
    has_unexpanded_discounts,
    unresolved_coupon_ids,
    with_all_items,
    with_all_lines,
    with_coupons,
    with_known_discounts,
)
from revsync.domain.state import (
    CustomerObjects,
    apply,
    clock_of,
    licensed_prices,
    stored_usage_lines,
    without_licensed_lines,
)
from revsync.domain.stored_state import ConcurrentUpdate, StateWrite, StoredCustomer
from revsync.domain.tenancy import Tenant
from revsync.errors import RetryLater

__all__ = ["RetryLater", "SyncResult", "apply_observation", "rederive"]

MAX_ATTEMPTS = 5
MAX_REFETCHES = 2


class Tenants(Protocol):
    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None: ...


class CustomerStates(Protocol):
    """A customer's state: loaded whole, saved as one conditional write (revsync.domain.stored_state)."""

    def load(self, tenant_id: str, customer_id: str) -> StoredCustomer: ...

    def save(self, write: StateWrite) -> int:
        """Write the state unless another writer saved since ``write.stored`` was loaded (then raise
        ``ConcurrentUpdate``, writing nothing); the new version."""
        ...

    def history_archive(self, tenant_id: str, customer_id: str) -> list[HistoryChunk]:
        """The customer's archived MRR history (read only for an observation before the state's boundary)."""
        ...

    def history_chunk(self, tenant_id: str, customer_id: str, at: int) -> HistoryChunk | None:
        """The history archive holding time ``at`` (the first that ends after it; None: none does)."""
        ...


class RecordProjection(Protocol):
    def project(
        self, record: CustomerRecord, version: int, previous_external_id: str | None, *, repair: bool
    ) -> bool:
        """Write the record unless a newer derivation is there (``repair``: or the same one); whether
        it was written. A record that moved leaves nothing at ``previous_external_id``."""
        ...

    def projected_version(self, tenant_id: str, external_id: str, customer_id: str) -> int | None:
        """The state version the record at that key was derived from (None: no record of this customer)."""
        ...


class CustomerListing(Protocol):
    """Which customers to derive again (``rederive``): all of a tenant's, or those due for review."""

    def customer_ids(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """The tenant's Stripe customer ids, a page of at most ``limit`` from the cursor ``after``
        (None: the first); the next cursor (None: no more)."""
        ...

    def due_for_review(self, tenant_id: str, now: int, limit: int) -> list[str]:
        """At most ``limit`` customer ids whose record changes by time alone at or before ``now``
        (their state's ``review_at``), the longest due first."""
        ...


class Customers(CustomerStates, RecordProjection, CustomerListing, Protocol):
    """The write path's storage: a customer's state, then the record derived from it; and which
    customers to derive again."""


class StripeObjects(Protocol):
    def fetch(self, tenant: Tenant, kind: str, object_id: str) -> Snapshot | None:
        """The object as Stripe has it now, discounts expanded; None if Stripe no longer has it."""
        ...

    def coupons(self, tenant: Tenant, coupon_ids: set[str]) -> dict[str, Coupon]: ...

    def subscription_items(self, tenant: Tenant, subscription_id: str) -> list[SubscriptionItem]:
        """Every item of a subscription (``/v1/subscription_items``), for a payload that had more."""
        ...

    def invoice_lines(self, tenant: Tenant, invoice_id: str) -> InvoiceLineItems:
        """Every subscription line of an invoice (``/v1/invoices/{id}/lines``)."""
        ...

    def test_clock_time(self, tenant: Tenant, clock_id: str) -> int | None:
        """A Stripe test clock's ``frozen_time``: now, for its objects; None if it is gone."""
        ...


class ChangeFeed(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        """Queue one event (``Customer Record Changed`` or ``Customer Risk Changed``: revsync.domain.
        changes), sent when the caller flushes."""
        ...


class Unset:
    """No account to check: the observation did not come from a webhook."""


UNSET = Unset()


def _from_current_account(tenant: Tenant, account: str | None) -> bool:
    connection = tenant.connection
    if account is None:
        return connection.mode == "api_key"
    return connection.mode == "oauth" and connection.account_id == account


@dataclass(frozen=True, slots=True)
class SyncResult:
    outcome: str  # applied | unchanged | dropped
    reason: str
    refetches: int = 0
    conflicts: int = 0
    record_written: bool = False


def _with_all_lines(
    invoice: InvoiceSnapshot, objects: CustomerObjects, tenant: Tenant, stripe: StripeObjects
) -> InvoiceSnapshot:
    """An invoice whose webhook carried the first page of its lines, with all of them where they
    matter: a paid invoice's subscription lines (renewal dates; an unpaid one is not stored) and a
    finalized one's usage lines (``metered: last_invoice``). A finalized invoice's lines never change:
    read once, the first time it is seen, then taken from what is stored."""
    needs_lines, needs_usage = invoice["status"] == "paid", "finalized_at" in invoice
    stored = objects.invoices.get(invoice["id"])
    lines = stored["snapshot"]["lines"] if stored and stored["snapshot"]["object"] == "invoice" else None
    usage = stored_usage_lines(objects.usage, invoice["id"])
    if usage is None and (lines is not None or invoice["id"] in objects.failed_invoices):
        # Seen (and read) before: what it had of usage lines was joined then (none, licensed, or
        # older than the invoices kept: joined again, the same).
        usage = []
    if (needs_lines and lines is None) or (needs_usage and usage is None):
        return with_all_lines(invoice, stripe.invoice_lines(tenant, invoice["id"]))
    if not needs_lines and not needs_usage:
        return invoice
    return with_all_lines(
        invoice, InvoiceLineItems(invoice["lines"] if lines is None else lines, usage or [])
    )


def _enriched(
    observation: Observation, objects: CustomerObjects, tenant: Tenant, stripe: StripeObjects
) -> Observation:
    """Fill in what the webhook did not carry: discount coupons sent only as ids (from what is stored,
    else from Stripe), the rest of a subscription's items, and the rest of a paid invoice's lines."""
    snapshot = with_known_discounts(observation["snapshot"], objects.known_discounts())
    if snapshot["object"] == "subscription" and snapshot.get("items_complete") is False:
        snapshot = with_all_items(snapshot, stripe.subscription_items(tenant, snapshot["id"]))
    if snapshot["object"] == "invoice" and snapshot.get("lines_complete") is False:
        snapshot = _with_all_lines(snapshot, objects, tenant, stripe)
    missing = unresolved_coupon_ids(snapshot)
    if missing:
        snapshot = with_coupons(snapshot, stripe.coupons(tenant, missing))
    return {**observation, "snapshot": snapshot}


def _history_after(
    customers: Customers,
    tenant_id: str,
    policy: RevenuePolicy,
    customer_id: str,
    stored: StoredCustomer,
    seen: list[Observation],
    imported: bool,
) -> HistoryUpdate | None:
    """The MRR history with ``seen`` added, by the tenant's policy (None: nothing to write). An
    observation before the state's boundary (a late one, or an import's start years back) reads the
    archive that holds its time: if it is there already (a redelivery), nothing changes; if not, the
    whole archived history. So does a policy other than the one the pieces were made with: every
    piece is replayed by the tenant's."""
    additions = [entry for kept in seen for entry in history_entries(kept, imported=imported)]
    again = policy != stored.policy
    archive = None
    if again:
        if stored.history.boundary is not None:
            archive = customers.history_archive(tenant_id, customer_id)
        return history_after(stored.history, additions, archive, policy=policy, again=True)
    late = archived_times(stored.history, additions)
    holding: list[HistoryChunk] = []
    for at in late:
        if not holding or at >= holding[-1].until:
            chunk = customers.history_chunk(tenant_id, customer_id, at)
            holding += [chunk] if chunk is not None else []
    if late:
        left = without_archived(stored.history, additions, holding)
        if left is None:
            archive = customers.history_archive(tenant_id, customer_id)
        else:
            additions = left
    return history_after(stored.history, additions, archive, policy=policy)


def _stopped_paying(kept: KeptHistory) -> bool:
    """Whether MRR fell to zero after being positive, at some time of the customer's timeline."""
    start = kept.checkpoint.start  # what the archived history ended with
    if start.ever_paid and start.mrr == 0:
        return True
    paying = start.mrr > 0
    timeline = kept.timeline if kept.timeline is not None else whole_timeline(kept, ())
    for _, _, mrr in timeline:
        if mrr > 0:
            paying = True
        elif paying:
            return True
    return False


def _publish(
    changes: ChangeFeed,
    stored: StoredCustomer,
    previous: CustomerRecord | None,
    record: CustomerRecord,
    observed_at: int,
) -> None:
    # Whether it paid before matters only to a change from no MRR to some (new or reactivation): it
    # did if a paying stretch of its timeline ended before (the record may show a stretch that began
    # before the record did: one that waited for its customer object).
    ever_paid = False
    if (previous is None or not previous["mrr"]) and record["mrr"] > 0:
        ever_paid = _stopped_paying(stored.history)
    detail = record_change(previous, record, observed_at, ever_paid)
    if detail is not None:
        changes.publish(RECORD_CHANGED, detail)
    risk = risk_change(previous, record, observed_at)
    if risk is not None:
        changes.publish(RISK_CHANGED, risk)


@dataclass(frozen=True, slots=True)
class _Derived:
    """What a customer's state gives by the tenant's config as of ``judged_at``: the record, the one
    ``stored`` gave (by the policy and time it was derived with; None: none), whether the record
    waits for its customer object (then nothing is projected yet), the history to write, and when
    the record next changes by time alone."""

    record: CustomerRecord
    previous: CustomerRecord | None
    waits: bool
    history: HistoryUpdate | None
    judged_at: int
    review_at: int | None

    def differs_from(self, stored: StoredCustomer, tenant: Tenant) -> bool:
        """Whether saving it changes the stored state (beyond the time it was judged at)."""
        return (
            self.history is not None
            or (not self.waits and self.record != self.previous)
            or self.review_at != stored.review_at
            or stored.config_version != tenant.config_version
            or stored.judged_at is None
        )


def _derived(
    customers: Customers,
    tenant_id: str,
    tenant: Tenant,
    stored: StoredCustomer,
    objects: CustomerObjects,
    seen: list[Observation],
    imported: bool,
    judged_at: int,
) -> _Derived:
    trait, policy = tenant.customer_id_trait, tenant.policy
    # An invoice's lines of licensed prices move no MRR: they stay out of the history (after
    # 2025-03-31 only the customer's subscriptions tell them from metered ones).
    licensed = licensed_prices(objects.subscriptions)
    seen = [
        {**kept, "snapshot": without_licensed_lines(kept["snapshot"], licensed)}
        if kept["snapshot"]["object"] == "invoice"
        else kept
        for kept in seen
    ]
    history = _history_after(customers, tenant_id, policy, objects.customer_id, stored, seen, imported)
    kept = history.kept if history is not None else stored.history
    since = past_due_runs(kept)
    record = derive_record(tenant_id, objects, trait, policy, past_due_since=since, as_of=judged_at)
    shown = stored.version is not None and stored.record_version != 0  # a record derives from it
    previous = None
    if shown:
        previous = derive_record(
            tenant_id,
            stored.objects,
            trait,
            stored.policy,
            past_due_since=past_due_runs(stored.history),
            as_of=stored.judged_at,
        )
    # A record keyed by a trait of the customer object waits for that object: an event of its
    # subscription that arrives first (Stripe's order is any) would otherwise make a stripe: record
    # that moves, and is published twice, a moment later. A backfill lists customers first, so a
    # customer it did not list (deleted) is final and kept unmatched.
    waits = not shown and not imported and record_key_unknown(objects, trait)
    review_at = next_review(objects, policy, since, judged_at)
    return _Derived(record, previous, waits, history, judged_at, review_at)


def _judged_at(clock_now: int, stored: StoredCustomer, objects: CustomerObjects) -> int:
    """When a customer is judged (its record derived as of): now by the caller's clock, but never
    before what was observed of it (a Stripe test clock's customer lives in its clock's time, which
    its events carry) nor before it was last judged (a record never goes back in time)."""
    return max(clock_now, objects.newest_observation, stored.judged_at or 0)


def _save_and_project(
    customers: Customers,
    changes: ChangeFeed | None,
    tenant_id: str,
    tenant: Tenant,
    stored: StoredCustomer,
    objects: CustomerObjects,
    applied: Observation | None,
    derived: _Derived,
    *,
    retried: bool,
    observed_at: int,
) -> tuple[int, bool]:
    """Save the state (raises ``ConcurrentUpdate`` if another writer saved since ``stored`` was
    loaded, writing nothing), then project the record and publish its change; the new version, and
    whether the record was written. ``retried``: after a conflict (the record may be at this
    version already)."""
    record, previous, waits = derived.record, derived.previous, derived.waits
    config_moved = stored.config_version != tenant.config_version
    # A state saved before records had risk signals: its record has none, write it whole once.
    unjudged = stored.version is not None and stored.judged_at is None
    repair = retried or config_moved or unjudged
    version = customers.save(
        StateWrite(
            tenant_id=tenant_id,
            stored=stored,
            objects=objects,
            applied=applied,
            external_id=None if waits else record["external_id"],
            config_version=tenant.config_version,
            record_changed=not waits and (record != previous or config_moved or unjudged),
            history=derived.history,
            record_waits=waits,
            policy=tenant.policy,
            judged_at=derived.judged_at,
            review_at=derived.review_at,
        )
    )
    if waits:
        return version, False
    written = False
    if record != previous or repair:
        written = customers.project(record, version, stored.external_id, repair=repair)
    # The version-checked state write is the change; a newer record projected first (another
    # worker's later event) does not undo it, so it is published either way.
    if changes is not None and record != previous:
        _publish(changes, stored, previous, record, observed_at)
    return version, written


def apply_observation(
    tenant_id: str,
    observation: Observation,
    *,
    tenants: Tenants,
    customers: Customers,
    stripe: StripeObjects,
    account: str | Unset | None = UNSET,
    clock: Callable[[], float] = time.time,
    changes: ChangeFeed | None = None,
    imported: bool = False,
    repair_record: bool = True,
) -> SyncResult:
    """Apply ``observation`` for ``tenant_id``; ``account`` is the Connect account the event came
    from (None: the tenant's own API-key route; unset: a backfill page or a refetch, read through the
    tenant's current connection). ``imported``: a backfill page's object (its subscriptions enter
    the MRR history at their start). Each record change is published to ``changes``. The record is
    derived as of ``clock``'s now (``_judged_at``).
    ``repair_record``: an observation that changes nothing checks (one read) that the record is not
    behind its state (a redelivery after a failed projection); a catch-up, which mostly finds what
    was applied already, leaves that to the queue's redelivery."""
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        return SyncResult("dropped", "tenant_not_connected")
    if not isinstance(account, Unset) and not _from_current_account(tenant, account):
        # Queued before the tenant moved to another Stripe account: not this tenant's data any more.
        return SyncResult("dropped", "account_mismatch")
    customer_id = customer_id_of(observation["snapshot"])
    refetches = conflicts = 0
    # Everything observed on the way (an event that tied, then the read that settled it) is history.
    seen: list[Observation] = []
    for _ in range(MAX_ATTEMPTS):
        stored = customers.load(tenant_id, customer_id)
        if stored.config_version > tenant.config_version:
            # Our cached tenant is older than the config the state was projected with.
            tenant = tenants.get(tenant_id, min_config_version=stored.config_version) or tenant
        observation = _enriched(observation, stored.objects, tenant, stripe)
        outcome = apply(stored.objects, observation)
        unexpanded = observation["source"] != "fetched" and has_unexpanded_discounts(observation["snapshot"])
        if not unexpanded and observation not in seen:
            # (One whose discounts Stripe sent unexpanded would show a wrong MRR; its read stands in.)
            seen.append(observation)
        if outcome.decision.action == "refetch" or (unexpanded and outcome.changed):
            if refetches >= MAX_REFETCHES:
                raise RetryLater(f"unresolved after {refetches} reads from Stripe: {outcome.decision.reason}")
            refetches += 1
            kind, object_id = fetch_target(observation["snapshot"])
            # Stamped when asked, not when answered: Stripe reads after the request is sent, so any
            # change the answer misses has an event time at or after this second. And never before
            # an event already received for this customer: those happened before the read, whatever
            # the skew between Stripe's clock and ours.
            # An object on a Stripe test clock lives in the clock's frozen time, not the wall clock's
            # (its events' ``created`` are the clock's): its read is stamped with the clock's time,
            # read first for the same reason (a clock gone: by what was received).
            test_clock = clock_of(observation["snapshot"], stored.objects)
            now = int(clock()) if test_clock is None else stripe.test_clock_time(tenant, test_clock) or 0
            requested_at = max(now, observation["observed_at"], stored.objects.newest_observation)
            fetched = stripe.fetch(tenant, kind, object_id)
            if fetched is None:
                return SyncResult("dropped", "object_gone", refetches, conflicts)
            observation = Observation(
                snapshot=fetched, observed_at=requested_at, source="fetched", event_id=None
            )
            continue
        judged_at = _judged_at(int(clock()), stored, outcome.objects)
        derived = _derived(customers, tenant_id, tenant, stored, outcome.objects, seen, imported, judged_at)
        config_moved = stored.config_version != tenant.config_version
        if not outcome.changed and not config_moved and derived.history is None:
            # Nothing new, but the record may lag the state it derives from (a projection that failed
            # after the state write, then a redrive): one read tells, whatever the receive count.
            # (A signal that time alone changed is raised by the review, not by a duplicate.)
            record, wanted = derived.previous or derived.record, stored.record_version
            if (
                not repair_record
                or not wanted
                or (
                    (customers.projected_version(tenant_id, record["external_id"], customer_id) or 0)
                    >= wanted
                )
            ):
                return SyncResult("unchanged", outcome.decision.reason, refetches, conflicts)
            written = customers.project(record, wanted, stored.external_id, repair=True)
            return SyncResult("unchanged", "record_repaired", refetches, conflicts, written)
        try:
            _, written = _save_and_project(
                customers,
                changes,
                tenant_id,
                tenant,
                stored,
                outcome.objects,
                observation if outcome.changed else None,
                derived,
                retried=conflicts > 0,
                observed_at=observation["observed_at"],
            )
        except ConcurrentUpdate:
            conflicts += 1
            continue
        result = "applied" if outcome.changed else "unchanged"
        return SyncResult(result, outcome.decision.reason, refetches, conflicts, written)
    raise RetryLater(f"gave up after {conflicts} concurrent updates")


def rederive(
    tenant_id: str,
    customer_id: str,
    *,
    tenants: Tenants,
    customers: Customers,
    changes: ChangeFeed | None,
    now: int,
) -> SyncResult:
    """Derive one customer's record, MRR history and risk signals again from its stored
    observations, by the tenant's current policy, as of ``now`` (never before it was last judged):
    a policy change's recompute, and the scheduled review of signals that turn by time alone
    (``Customers.due_for_review``). No Stripe call. Saves only when something changed (the state
    write is conditional: a webhook applied meanwhile makes it load again and derive with that
    observation too, never lost), then projects the record and publishes its change."""
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        return SyncResult("dropped", "tenant_not_connected")
    conflicts = 0
    for _ in range(MAX_ATTEMPTS):
        stored = customers.load(tenant_id, customer_id)
        if stored.version is None:
            return SyncResult("unchanged", "not_stored", conflicts=conflicts)
        if stored.config_version > tenant.config_version:
            # A worker saved it by a newer config than the tenant we read: read the tenant again.
            tenant = tenants.get(tenant_id, min_config_version=stored.config_version) or tenant
        judged_at = _judged_at(now, stored, stored.objects)
        derived = _derived(customers, tenant_id, tenant, stored, stored.objects, [], False, judged_at)
        if not derived.differs_from(stored, tenant):
            return SyncResult("unchanged", "current", conflicts=conflicts)
        try:
            _, written = _save_and_project(
                customers,
                changes,
                tenant_id,
                tenant,
                stored,
                stored.objects,
                None,
                derived,
                retried=conflicts > 0,
                observed_at=judged_at,
            )
        except ConcurrentUpdate:
            conflicts += 1
            continue
        return SyncResult("applied", "rederived", conflicts=conflicts, record_written=written)
    raise RetryLater(f"gave up after {conflicts} concurrent updates")
