"""In-memory fakes of revsync's ports, for unit tests and for Stripe in integration tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import stripe
from revsync.domain import at_risk
from revsync.domain.backfill import Run, Segment
from revsync.domain.changes import RECORD_CHANGED, RISK_CHANGED
from revsync.domain.events import Envelope, ParkedEvent, message_group
from revsync.domain.history import Contribution, Timeline, TimelineStart, revenue_totals
from revsync.domain.history_archive import HistoryChunk, whole_timeline
from revsync.domain.reconcile import EventsState, PendingWindow, QueuedJob, RunEnd
from revsync.domain.record import CustomerRecord
from revsync.domain.rollup import Group, Piece, PieceChange, Position, RevenuePeriods
from revsync.domain.snapshots import (
    Coupon,
    InvoiceLineItems,
    Snapshot,
    SubscriptionItem,
    parse_coupon,
    parse_line_items,
    parse_object,
    parse_subscription_item,
    unresolved_coupon_ids,
    with_all_items,
    with_coupons,
)
from revsync.domain.state import CustomerObjects
from revsync.domain.stored_state import ConcurrentUpdate, StateWrite, StoredCustomer
from revsync.domain.tenancy import Recompute, SealedSecrets, Tenant, TenantRoute
from revsync.errors import CursorRejected
from revsync.infra.queue import QueueError
from revsync.infra.secrets import API_KEY, WEBHOOK_SECRET, SealedSecretError
from revsync.store.customer_state import kept_invoice
from revsync.store.tenants import ConfigChanged
from revsync.stripe_api.client import authorize_url
from revsync.stripe_api.results import KeyCheck, OAuthGrant, StripeAccessError

from tests.conftest import FROZEN_NOW


@dataclass
class FakeStripe:
    """Stripe's current state of objects (raw API dicts), and the keys it accepts."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    valid_keys: dict[str, str | None] = field(default_factory=dict)  # key -> account id
    fetches: list[str] = field(default_factory=list)
    coupon_reads: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # the account's events, oldest first
    event_pages: int = 0
    grants: dict[str, str] = field(default_factory=dict)  # OAuth code -> account id
    deauthorized: list[str] = field(default_factory=list)
    account_opened: int | None = None  # the account's ``created`` (None: Stripe leaves it out)
    account_reads: int = 0

    def account_created(self, tenant: Tenant) -> int | None:
        self.account_reads += 1
        return self.account_opened

    def check_api_key(self, api_key: str) -> KeyCheck:
        if api_key not in self.valid_keys:
            raise StripeAccessError("invalid_api_key", "Stripe rejected the API key")
        return KeyCheck(account_id=self.valid_keys[api_key], livemode="_live_" in api_key)

    def fetch(self, tenant: Tenant, kind: str, object_id: str) -> Snapshot | None:
        self.fetches.append(object_id)
        raw = self.objects.get(object_id)
        if raw is None:
            return None
        assert raw["object"] == kind
        found = parse_object(self._expanded(raw))
        if found is None:
            return None
        parsed: Snapshot = found
        if parsed["object"] == "subscription" and parsed.get("items_complete") is False:
            parsed = with_all_items(parsed, self.subscription_items(tenant, object_id))
        missing = unresolved_coupon_ids(parsed)
        return with_coupons(parsed, self.coupons(tenant, missing)) if missing else parsed

    def _expanded(self, raw: dict[str, Any]) -> dict[str, Any]:
        """What the adapter's read expands (stripe_api.client.FETCHED): a customer's default payment
        method, a schedule's phases' prices."""
        if raw["object"] == "customer":
            settings = raw.get("invoice_settings") or {}
            default = self.objects.get(settings.get("default_payment_method") or "")
            if default is not None:
                return {**raw, "invoice_settings": {**settings, "default_payment_method": default}}
        if raw["object"] == "subscription_schedule":
            phases = [
                {**p, "items": [{**i, "price": self._object(i["price"])} for i in p["items"]]}
                for p in raw["phases"]
            ]
            return {**raw, "phases": phases}
        return raw

    def _object(self, value: Any) -> Any:
        """An expandable field read expanded: the object an id names (else the value as it is)."""
        return self.objects.get(value, value) if isinstance(value, str) else value

    def list_events(
        self, tenant: Tenant, *, created_gte: int, types: tuple[str, ...], starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        self.event_pages += 1
        newest_first = [
            e for e in reversed(self.events) if e["created"] >= created_gte and e["type"] in types
        ]
        if starting_after is not None:
            ids = [e["id"] for e in newest_first]
            if starting_after not in ids:  # Stripe no longer has it (older than the 30 days it keeps)
                raise CursorRejected(f"No such event: '{starting_after}'")
            newest_first = newest_first[ids.index(starting_after) + 1 :]
        return newest_first[:100], len(newest_first) > 100

    def subscription_items(self, tenant: Tenant, subscription_id: str) -> list[SubscriptionItem]:
        self.fetches.append(f"items:{subscription_id}")
        raw = self.objects[subscription_id]
        return [parse_subscription_item(item) for item in raw["items"]["data"]]

    def invoice_lines(self, tenant: Tenant, invoice_id: str) -> InvoiceLineItems:
        self.fetches.append(f"lines:{invoice_id}")
        return parse_line_items(self.objects[invoice_id]["lines"]["data"])

    def test_clock_time(self, tenant: Tenant, clock_id: str) -> int | None:
        self.fetches.append(clock_id)
        raw = self.objects.get(clock_id)
        return None if raw is None else int(raw["frozen_time"])

    def coupons(self, tenant: Tenant, coupon_ids: set[str]) -> dict[str, Coupon]:
        self.coupon_reads += len(coupon_ids)
        return {
            c: parsed for c in coupon_ids if c in self.objects and (parsed := parse_coupon(self.objects[c]))
        }

    def sample_customers(self, tenant: Tenant, limit: int = 100) -> list[dict[str, Any]]:
        """The newest customers, as Stripe lists them (deleted ones are not listed)."""
        customers = [o for o in self.objects.values() if o["object"] == "customer" and not o.get("deleted")]
        return sorted(customers, key=lambda c: (c["created"], c["id"]), reverse=True)[:limit]

    # --- Connect (OAuth) -------------------------------------------------------------------------

    def oauth_authorize_url(self, client_id: str, state: str, redirect_uri: str) -> str:
        """As StripeAccounts builds it (no request is made)."""
        return authorize_url(stripe.StripeClient("sk_test_fake"), client_id, state, redirect_uri)

    def oauth_exchange(self, code: str) -> OAuthGrant:
        """A code from ``grants`` (code -> account id), once."""
        account_id = self.grants.pop(code, None)
        if account_id is None:
            raise StripeAccessError("invalid_code", "Stripe did not accept the authorization code")
        return OAuthGrant(account_id=account_id, livemode=False, scope="read_write")

    def oauth_deauthorize(self, client_id: str, account_id: str) -> None:
        self.deauthorized.append(account_id)  # already disconnected on Stripe's side: nothing to undo


@dataclass
class FakeTenants:
    tenants: dict[str, Tenant] = field(default_factory=dict)

    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None:
        return self.tenants.get(tenant_id)

    def save(self, tenant: Tenant, now: int) -> None:
        stored = self.tenants.get(tenant.tenant_id)
        if stored is not None and stored.config_version != tenant.config_version:
            raise ConfigChanged(tenant.tenant_id)
        self.tenants[tenant.tenant_id] = tenant

    def change_config(self, tenant: Tenant, now: int) -> None:
        stored = self.tenants.get(tenant.tenant_id)
        if stored is None or stored.config_version != tenant.config_version - 1:
            raise ConfigChanged(tenant.tenant_id)
        self.tenants[tenant.tenant_id] = replace(
            stored,
            customer_id_trait=tenant.customer_id_trait,
            config_version=tenant.config_version,
            tracking=tenant.tracking,
        )

    def change_policy(self, tenant: Tenant, now: int) -> None:
        stored = self.tenants.get(tenant.tenant_id)
        if stored is None or stored.config_version != tenant.config_version - 1:
            raise ConfigChanged(tenant.tenant_id)
        recompute = tenant.recompute or stored.recompute
        self.tenants[tenant.tenant_id] = replace(
            stored, policy=tenant.policy, config_version=tenant.config_version, recompute=recompute
        )

    def advance_recompute(self, tenant_id: str, at: Recompute, to: Recompute) -> bool:
        stored = self.tenants.get(tenant_id)
        kept = stored.recompute if stored is not None else None
        if stored is None or kept is None or kept.finished_at is not None:
            return False
        if (kept.config_version, kept.cursor) != (at.config_version, at.cursor):
            return False
        self.tenants[tenant_id] = replace(stored, recompute=to)
        return True


@dataclass
class FakeFeed:
    """The change feed: what was published (detail-type, detail), in order."""

    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.published.append((detail_type, detail))

    @property
    def details(self) -> list[dict[str, Any]]:
        """The ``Customer Record Changed`` events' details."""
        return [detail for kind, detail in self.published if kind == RECORD_CHANGED]

    @property
    def risk_changes(self) -> list[dict[str, Any]]:
        """The ``Customer Risk Changed`` events' details."""
        return [detail for kind, detail in self.published if kind == RISK_CHANGED]


@dataclass
class FakeCustomers:
    """The customer store's semantics (optimistic versions, conditional projection) in memory."""

    states: dict[tuple[str, str], StoredCustomer] = field(default_factory=dict)
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # The history archives of each customer, by number (written with the state, in one transaction).
    archives: dict[tuple[str, str], dict[int, HistoryChunk]] = field(default_factory=dict)
    writes: int = 0
    reads: int = 0
    # The sync table's stream as the rollup reads it: one record per state write.
    stream: list[PieceChange] = field(default_factory=list)
    # Each record's sparse risk attributes (store.records), and the clock dating an undated dunning.
    risk_keys: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    clock: Callable[[], float] = lambda: FROZEN_NOW

    def load(self, tenant_id: str, customer_id: str) -> StoredCustomer:
        self.reads += 1
        return self.states.get((tenant_id, customer_id)) or StoredCustomer(
            CustomerObjects(customer_id=customer_id), None, None, 0
        )

    def save(self, write: StateWrite) -> int:
        tenant_id, customer_id = write.tenant_id, write.objects.customer_id
        current = self.states.get((tenant_id, customer_id))
        if (current.version if current else None) != write.stored.version:
            raise ConcurrentUpdate(customer_id)
        self.writes += 1  # paid invoices are kept in the state (archived in one write every few)
        if write.history_chunks:
            archive = self.archives.setdefault((tenant_id, customer_id), {})
            for chunk in write.history_chunks:
                # The sync table's stream has a record for each piece item written (old, new image).
                old = archive.get(chunk.number)
                self._stream_piece(
                    tenant_id,
                    None if old is None else (old.timeline, old.start),
                    (chunk.timeline, chunk.start),
                )
                archive[chunk.number] = chunk
            self.writes += len(write.history_chunks)
        saved = write.saved()
        # Paid invoices come back as the store keeps them (tests/integration/test_fake_contracts.py).
        kept = {i: kept_invoice(o) for i, o in saved.objects.invoices.items()}
        self.states[(tenant_id, customer_id)] = replace(saved, objects=replace(saved.objects, invoices=kept))
        before, after = (
            None
            if s is None or s.history.timeline is None
            else (s.history.timeline, s.history.checkpoint.start)
            for s in (current, saved)
        )
        self._stream_piece(tenant_id, before, after)
        return write.version

    def _stream_piece(
        self,
        tenant_id: str,
        before: tuple[Timeline, TimelineStart] | None,
        after: tuple[Timeline, TimelineStart] | None,
    ) -> None:
        sequence = len(self.stream) + 1
        self.stream.append(
            PieceChange(
                f"event-{sequence}",
                sequence,
                sequence,
                None if before is None else Piece(tenant_id, *before),
                None if after is None else Piece(tenant_id, *after),
            )
        )

    def history_archive(self, tenant_id: str, customer_id: str) -> list[HistoryChunk]:
        self.reads += 1
        return list(self.archives.get((tenant_id, customer_id), {}).values())

    def due_for_review(self, tenant_id: str, now: int, limit: int) -> list[str]:
        self.reads += 1
        due = sorted(
            (stored.review_at, customer_id)
            for (tenant, customer_id), stored in self.states.items()
            if tenant == tenant_id and stored.review_at is not None and stored.review_at <= now
        )
        return [customer_id for _, customer_id in due[:limit]]

    def customer_ids(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """By the records, in their key order (as the records table's Query)."""
        self.reads += 1
        keys = sorted(
            key for (tenant, key) in self.records if tenant == tenant_id and (after is None or key > after)
        )
        page = keys[:limit]
        ids = [self.records[(tenant_id, key)]["stripe_customer_id"] for key in page]
        return ids, page[-1] if len(page) == limit else None

    def history_chunk(self, tenant_id: str, customer_id: str, at: int) -> HistoryChunk | None:
        self.reads += 1
        later = [c for c in self.archives.get((tenant_id, customer_id), {}).values() if c.until > at]
        return min(later, key=lambda chunk: chunk.until, default=None)

    def revenue_totals(self, tenant_id: str) -> dict[str, dict[str, Contribution]]:
        self.reads += 1
        # As the revenue index holds them: states written before timelines were kept are not in it.
        kept = (
            whole_timeline(stored.history, list(self.archives.get(key, {}).values()))
            for key, stored in self.states.items()
            if key[0] == tenant_id and stored.history.timeline is not None
        )
        return revenue_totals(timeline for timeline in kept if timeline)

    def timeline(self, tenant_id: str, customer_id: str) -> Timeline | None:
        self.reads += 1
        stored = self.states.get((tenant_id, customer_id))
        if stored is None:
            return None
        return whole_timeline(stored.history, list(self.archives.get((tenant_id, customer_id), {}).values()))

    def get_record(self, tenant_id: str, external_id: str) -> dict[str, Any] | None:
        self.reads += 1
        record = self.records.get((tenant_id, external_id))
        if record is None:
            return None
        # A record derived without risk signals reads as the store keeps it: ``risk`` null.
        return {"risk": None, **{k: v for k, v in record.items() if k != "revsync_version"}}

    def at_risk(
        self, tenant_id: str, kind: at_risk.RiskKind, after: at_risk.Position | None, limit: int
    ) -> tuple[list[dict[str, Any]], at_risk.Position | None]:
        self.reads += 1
        listed = sorted(
            (
                at_risk.at_risk_entry(kind, {**self.records[key], **keys})
                for key, keys in self.risk_keys.items()
                if key[0] == tenant_id and kind.since in keys
            ),
            key=lambda entry: (entry["since"], entry["external_id"]),
            reverse=True,
        )
        if after is not None:
            listed = [e for e in listed if (e["since"], e["external_id"]) < tuple(after)]
        if len(listed) <= limit:
            return listed, None
        last = listed[limit - 1]
        return listed[:limit], at_risk.Position(last["since"], last["external_id"])

    def _list_risks(self, key: tuple[str, str], risk: Any) -> None:
        """The sparse attributes as store.records writes them (an undated dunning keeps its date)."""
        before = self.risk_keys.pop(key, {})
        keys: dict[str, int] = {}
        for name, value in at_risk.risk_attributes(risk).items():
            if isinstance(value, at_risk.Undated):
                fallback = int(self.clock()) if value.fallback is None else value.fallback
                keys[name] = before.get(name, fallback)
            elif value is not None:
                keys[name] = value
        if keys:
            self.risk_keys[key] = keys

    def project(
        self, record: CustomerRecord, version: int, previous_external_id: str | None, *, repair: bool
    ) -> bool:
        key = (record["tenant_id"], record["external_id"])
        existing = self.records.get(key)
        if existing is not None and existing["stripe_customer_id"] == record["stripe_customer_id"]:
            newer_stored = existing["revsync_version"] > version
            if newer_stored or (existing["revsync_version"] == version and not repair):
                return False
        self.writes += 1
        self.records[key] = {**record, "revsync_version": version}
        self._list_risks(key, cast(dict[str, Any], record).get("risk"))
        if previous_external_id and previous_external_id != record["external_id"]:
            old = self.records.get((record["tenant_id"], previous_external_id))
            if old and old["stripe_customer_id"] == record["stripe_customer_id"]:
                del self.records[(record["tenant_id"], previous_external_id)]
                self.risk_keys.pop((record["tenant_id"], previous_external_id), None)
                self.writes += 1
        return True

    def projected_version(self, tenant_id: str, external_id: str, customer_id: str) -> int | None:
        self.reads += 1
        record = self.records.get((tenant_id, external_id))
        if record is None or record["stripe_customer_id"] != customer_id:
            return None
        return int(record["revsync_version"])


@dataclass
class FakeRollup:
    """The revenue table's semantics (store.rollup) in memory: a group's changes and its shard's
    position written together or not at all, a group applied already answered with the position."""

    periods_kept: dict[tuple[str, str, str], Contribution] = field(default_factory=dict)
    as_of: dict[tuple[str, str, str], int] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)  # shard id -> how far applied
    writes: int = 0

    def apply(self, shard_id: str, group: Group, expires_at: int) -> Position | None:
        position = self.positions.get(shard_id)
        if position is not None and position.key() >= group.start.key():
            return position
        self.writes += 1
        self.positions[shard_id] = group.through
        for key, change in group.changes.items():
            self.periods_kept[key] = self.periods_kept.get(key, Contribution()) + change
            self.as_of[key] = group.as_of
        return None

    def periods(self, tenant_id: str, first: str, last: str) -> RevenuePeriods:
        totals: dict[str, dict[str, Contribution]] = {}
        as_of: int | None = None
        year = first[:4]
        for (tenant, currency, period), total in sorted(self.periods_kept.items()):
            wanted = period < year if len(period) == 4 else f"{year}-01" <= period <= last
            if tenant == tenant_id and wanted:
                totals.setdefault(currency, {})[period] = total
                as_of = max(as_of or 0, self.as_of[(tenant, currency, period)])
        return RevenuePeriods(totals, as_of)


@dataclass
class FakeDirectory:
    by_accounts: dict[str, TenantRoute] = field(default_factory=dict)
    by_tenants: dict[str, TenantRoute] = field(default_factory=dict)
    lookups: int = 0

    def by_account(self, account_id: str) -> TenantRoute | None:
        self.lookups += 1
        return self.by_accounts.get(account_id)

    def by_tenant(self, tenant_id: str) -> TenantRoute | None:
        self.lookups += 1
        return self.by_tenants.get(tenant_id)

    def save(self, tenant: Tenant) -> None:
        """The routes saving ``tenant`` gives (TenantStore.save): by tenant, and by its Connect
        account, which it releases when it moves to another account or to an API key."""
        connection = tenant.connection
        route = TenantRoute(
            tenant.tenant_id,
            connection.status,
            connection.livemode,
            connection.mode,
            connection.secret_name,
            connection.sealed.webhook_secret if connection.sealed else None,
        )
        self.by_tenants[tenant.tenant_id] = route
        for account_id, routed in list(self.by_accounts.items()):
            if routed.tenant_id == tenant.tenant_id:
                del self.by_accounts[account_id]
        if connection.mode == "oauth" and connection.account_id:
            self.by_accounts[connection.account_id] = route._replace(
                secret_name=None, sealed_webhook_secret=None
            )


_SEALED = b"fake-kms:"


@dataclass
class FakeSecrets:
    """The receiver's signing secrets (WebhookSecretSource) and the tenant API's sealing (TenantSecrets).
    A sealed value opens only for the tenant and kind it was sealed for, as KMS's encryption context
    makes it; ``tenant_secrets`` are Secrets Manager secrets saved before sealing, by name."""

    platform_secrets: list[str] = field(default_factory=lambda: ["whsec_platform"])
    tenant_secrets: dict[str, list[str]] = field(default_factory=dict)  # by secret name

    def platform(self) -> list[str]:
        return self.platform_secrets

    def tenant(self, route: TenantRoute) -> list[str]:
        if route.sealed_webhook_secret is not None:
            value = self._open(route.tenant_id, WEBHOOK_SECRET, route.sealed_webhook_secret)
            return [part.strip() for part in value.split(",") if part.strip()]
        if route.secret_name is None:
            return []
        if route.secret_name not in self.tenant_secrets:  # Secrets Manager: ResourceNotFoundException
            raise LookupError(f"no secret {route.secret_name}")
        return self.tenant_secrets[route.secret_name]

    def seal(self, tenant_id: str, api_key: str, webhook_secret: str) -> SealedSecrets:
        def sealed(kind: str, value: str) -> bytes:
            return _SEALED + json.dumps([tenant_id, kind, value]).encode()

        return SealedSecrets(sealed(API_KEY, api_key), sealed(WEBHOOK_SECRET, webhook_secret))

    def retire(self, secret_name: str) -> None:
        self.tenant_secrets.pop(secret_name, None)

    @staticmethod
    def _open(tenant_id: str, kind: str, sealed: bytes) -> str:
        if sealed.startswith(_SEALED):
            sealed_for, sealed_kind, value = json.loads(sealed[len(_SEALED) :])
            if (sealed_for, sealed_kind) == (tenant_id, kind):
                return str(value)
        raise SealedSecretError(f"the {kind} sealed for tenant {tenant_id} does not open")


@dataclass
class FakeQueue:
    """The events queue and its dead-letter queue, FIFO: a message sent again with the same
    deduplication id (the event id; a parked delivery's bytes) is received once, within its message
    group (the events queue's DeduplicationScope: another tenant's event with that id is its own)."""

    sent: list[Envelope] = field(default_factory=list)
    parked: list[ParkedEvent] = field(default_factory=list)
    fail: bool = False
    groups_per_tenant: int = 8

    def send(self, envelope: Envelope) -> None:
        if self.fail:
            raise QueueError("queue unavailable")
        group = message_group(envelope, self.groups_per_tenant)
        key = (group, envelope["event_id"])
        if all((message_group(sent, self.groups_per_tenant), sent["event_id"]) != key for sent in self.sent):
            self.sent.append(envelope)

    def park(self, parked: ParkedEvent) -> None:
        if self.fail:
            raise QueueError("queue unavailable")
        if all(kept["body"] != parked["body"] for kept in self.parked):
            self.parked.append(parked)


@dataclass
class FakeEventsProgress:
    """The event progress store's semantics (watermark, one claim at a time, the pending window)
    in memory."""

    states: dict[str, EventsState] = field(default_factory=dict)

    def get(self, tenant_id: str) -> EventsState:
        return self.states.get(tenant_id, EventsState())

    def advance_watermark(self, tenant_id: str, event_created: int) -> None:
        state = self.get(tenant_id)
        if state.last_event_at is None or state.last_event_at < event_created:
            self.states[tenant_id] = state._replace(last_event_at=event_created)

    def claim(self, tenant_id: str, now: int, stale_after: int) -> EventsState | None:
        state = self.get(tenant_id)
        if state.running_since and state.running_since >= now - stale_after:
            return None
        self.states[tenant_id] = state._replace(running_since=now)
        return self.states[tenant_id]

    def checkpoint(self, tenant_id: str, pending: PendingWindow) -> None:
        self.states[tenant_id] = self.get(tenant_id)._replace(pending=pending)

    def release(self, tenant_id: str) -> None:
        self.states[tenant_id] = self.get(tenant_id)._replace(running_since=0)

    def finish(self, tenant_id: str, end: RunEnd) -> None:
        state = self.get(tenant_id)
        self.states[tenant_id] = state._replace(
            running_since=0,
            last_reconciled_at=end.now,
            recovered=state.recovered + end.recovered,
            backfill_needed=end.backfill_needed,
            reconciled_through=end.reconciled_through
            if end.reconciled_through is not None
            else state.reconciled_through,
            pending=end.pending,
        )


@dataclass
class FakeCatchUpQueue:
    """The catch-up queue: FIFO per tenant (its message group), deduplicated by each job's
    deduplication id within the group, as SQS does for a queue scoped ``messageGroup``."""

    period_seconds: int = 900
    jobs: list[QueuedJob] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def send(self, jobs: Sequence[QueuedJob]) -> None:
        for job in jobs:
            key = (job.tenant_id, job.deduplication_id(self.period_seconds))
            if key not in self._seen:
                self._seen.add(key)
                self.jobs.append(job)

    def take(self) -> QueuedJob | None:
        return self.jobs.pop(0) if self.jobs else None


@dataclass
class FakeBackfillRuns:
    """The kept backfill run (``revsync.store.backfill_runs``) in memory, stored as JSON as it is."""

    kept: dict[str, str] = field(default_factory=dict)

    def load(self, tenant_id: str) -> tuple[Run, list[Segment]] | None:
        if tenant_id not in self.kept:
            return None
        run, segments = json.loads(self.kept[tenant_id])
        return run, segments

    def save(self, tenant_id: str, run: Run, segments: list[Segment]) -> None:
        self.kept[tenant_id] = json.dumps([run, segments])

    def clear(self, tenant_id: str) -> None:
        self.kept.pop(tenant_id, None)
