"""In-memory fakes of revsync's ports, for unit tests and for Stripe in integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import stripe
from revsync.domain.events import Envelope, Observation, ParkedEvent
from revsync.domain.history import Contribution, Timeline, revenue_totals
from revsync.domain.history_archive import HistoryChunk, HistoryUpdate, whole_timeline
from revsync.domain.reconcile import EventsState
from revsync.domain.record import CustomerRecord
from revsync.domain.snapshots import (
    Coupon,
    InvoiceLine,
    Snapshot,
    SubscriptionItem,
    parse_coupon,
    parse_customer,
    parse_invoice,
    parse_invoice_lines,
    parse_subscription,
    parse_subscription_item,
    unresolved_coupon_ids,
    with_all_items,
    with_coupons,
)
from revsync.domain.state import CustomerObjects
from revsync.domain.tenancy import Tenant, TenantRoute
from revsync.infra.queue import QueueError
from revsync.store.customers import ConcurrentUpdate, StoredCustomer, kept_invoice
from revsync.stripe_api.client import KeyCheck, OAuthGrant, StripeAccessError, authorize_url


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
        parsed: Snapshot
        if kind == "customer":
            parsed = parse_customer(raw)
        elif kind == "subscription":
            parsed = parse_subscription(raw)
        else:
            parsed = parse_invoice(raw)
        if parsed["object"] == "subscription" and parsed.get("items_complete") is False:
            parsed = with_all_items(parsed, self.subscription_items(tenant, object_id))
        missing = unresolved_coupon_ids(parsed)
        return with_coupons(parsed, self.coupons(tenant, missing)) if missing else parsed

    def list_events(
        self, tenant: Tenant, *, created_gte: int, types: tuple[str, ...], starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        self.event_pages += 1
        newest_first = [
            e for e in reversed(self.events) if e["created"] >= created_gte and e["type"] in types
        ]
        if starting_after is not None:
            ids = [e["id"] for e in newest_first]
            newest_first = newest_first[ids.index(starting_after) + 1 :]
        return newest_first[:100], len(newest_first) > 100

    def subscription_items(self, tenant: Tenant, subscription_id: str) -> list[SubscriptionItem]:
        self.fetches.append(f"items:{subscription_id}")
        raw = self.objects[subscription_id]
        return [parse_subscription_item(item) for item in raw["items"]["data"]]

    def invoice_lines(self, tenant: Tenant, invoice_id: str) -> list[InvoiceLine]:
        self.fetches.append(f"lines:{invoice_id}")
        return parse_invoice_lines(self.objects[invoice_id]["lines"]["data"])

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
        self.tenants[tenant.tenant_id] = tenant


@dataclass
class FakeFeed:
    """The change feed: what was published, in order."""

    details: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, detail: dict[str, Any]) -> None:
        self.details.append(detail)


@dataclass
class FakeCustomers:
    """The customer store's semantics (optimistic versions, conditional projection) in memory."""

    states: dict[tuple[str, str], StoredCustomer] = field(default_factory=dict)
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # The history archives of each customer, by number (written with the state, in one transaction).
    archives: dict[tuple[str, str], dict[int, HistoryChunk]] = field(default_factory=dict)
    writes: int = 0
    reads: int = 0

    def load(self, tenant_id: str, customer_id: str) -> StoredCustomer:
        self.reads += 1
        return self.states.get((tenant_id, customer_id)) or StoredCustomer(
            CustomerObjects(customer_id=customer_id), None, None, 0
        )

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
        current = self.states.get((tenant_id, objects.customer_id))
        if (current.version if current else None) != stored.version:
            raise ConcurrentUpdate(objects.customer_id)
        self.writes += 1  # paid invoices are kept in the state (archived in one write every few)
        if history is not None and history.chunks:
            archive = self.archives.setdefault((tenant_id, objects.customer_id), {})
            archive.update({chunk.number: chunk for chunk in history.chunks})
            self.writes += len(history.chunks)
        version = (stored.version or 0) + 1
        carried = stored.record_version if not record_changed and stored.record_version else version
        record_version = 0 if record_waits else carried
        # Paid invoices come back as the store keeps them (tests/integration/test_fake_contracts.py).
        kept = replace(objects, invoices={i: kept_invoice(o) for i, o in objects.invoices.items()})
        self.states[(tenant_id, objects.customer_id)] = StoredCustomer(
            kept,
            version,
            external_id,
            config_version,
            record_version,
            history.kept if history is not None else stored.history,
        )
        return version

    def history_archive(self, tenant_id: str, customer_id: str) -> list[HistoryChunk]:
        self.reads += 1
        return list(self.archives.get((tenant_id, customer_id), {}).values())

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
        return {k: v for k, v in record.items() if k != "revsync_version"}

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
        if previous_external_id and previous_external_id != record["external_id"]:
            old = self.records.get((record["tenant_id"], previous_external_id))
            if old and old["stripe_customer_id"] == record["stripe_customer_id"]:
                del self.records[(record["tenant_id"], previous_external_id)]
                self.writes += 1
        return True

    def projected_version(self, tenant_id: str, external_id: str, customer_id: str) -> int | None:
        self.reads += 1
        record = self.records.get((tenant_id, external_id))
        if record is None or record["stripe_customer_id"] != customer_id:
            return None
        return int(record["revsync_version"])


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
            tenant.tenant_id, connection.status, connection.livemode, connection.mode, connection.secret_name
        )
        self.by_tenants[tenant.tenant_id] = route
        for account_id, routed in list(self.by_accounts.items()):
            if routed.tenant_id == tenant.tenant_id:
                del self.by_accounts[account_id]
        if connection.mode == "oauth" and connection.account_id:
            self.by_accounts[connection.account_id] = route._replace(secret_name=None)


@dataclass
class FakeSecrets:
    platform_secrets: list[str] = field(default_factory=lambda: ["whsec_platform"])
    tenant_secrets: dict[str, list[str]] = field(default_factory=dict)  # by secret name

    def platform(self) -> list[str]:
        return self.platform_secrets

    def tenant(self, route: TenantRoute) -> list[str]:
        return self.tenant_secrets.get(route.secret_name, []) if route.secret_name else []


@dataclass
class FakeQueue:
    """The events queue and its dead-letter queue, FIFO: a message sent again with the same
    deduplication id (the event id; a parked delivery's bytes) is received once."""

    sent: list[Envelope] = field(default_factory=list)
    parked: list[ParkedEvent] = field(default_factory=list)
    fail: bool = False

    def send(self, envelope: Envelope) -> None:
        if self.fail:
            raise QueueError("queue unavailable")
        if all(sent["event_id"] != envelope["event_id"] for sent in self.sent):
            self.sent.append(envelope)

    def park(self, parked: ParkedEvent) -> None:
        if self.fail:
            raise QueueError("queue unavailable")
        if all(kept["body"] != parked["body"] for kept in self.parked):
            self.parked.append(parked)


@dataclass
class FakeEventsProgress:
    """The event progress store's semantics (watermark, one claim at a time) in memory."""

    states: dict[str, EventsState] = field(default_factory=dict)

    def get(self, tenant_id: str) -> EventsState:
        return self.states.get(tenant_id, EventsState())

    def advance_watermark(self, tenant_id: str, event_created: int) -> None:
        state = self.get(tenant_id)
        if state.last_event_at is None or state.last_event_at < event_created:
            self.states[tenant_id] = state._replace(last_event_at=event_created)

    def claim(self, tenant_id: str, now: int, stale_after: int = 900) -> bool:
        state = self.get(tenant_id)
        if state.running_since and state.running_since >= now - stale_after:
            return False
        self.states[tenant_id] = state._replace(running_since=now)
        return True

    def finish(
        self, tenant_id: str, now: int, recovered: int, reconciled_through: int | None, backfill_needed: bool
    ) -> None:
        state = self.get(tenant_id)
        self.states[tenant_id] = state._replace(
            running_since=0,
            last_reconciled_at=now,
            recovered=state.recovered + recovered,
            backfill_needed=backfill_needed,
            reconciled_through=reconciled_through
            if reconciled_through is not None
            else state.reconciled_through,
        )
