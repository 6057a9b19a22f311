"""Tenant routes' logic: API-key connection, configuration, status, customer records."""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import replace
from typing import Any, Protocol

from revsync.domain.reconcile import EventsState
from revsync.domain.record import MAX_KEY_BYTES, validate_trait
from revsync.domain.tenancy import (
    BackfillOutcome,
    Connection,
    SealedSecrets,
    Tenant,
    status_document,
    tenant_webhook_url,
    validate_tenant_id,
)
from revsync.domain.traits import candidate_traits
from revsync.errors import Conflict, InvalidInput, NotFound, UpstreamUnavailable
from revsync.services import settings_page as settings_page_view
from revsync.stripe_api.results import KeyCheck

logger = logging.getLogger("revsync.tenants")

_API_KEY = re.compile(r"^(rk|sk)_(test|live)_[A-Za-z0-9_]{8,}$")
_WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9_+/=]{8,}$")


class TenantRepository(Protocol):
    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None: ...

    def save(self, tenant: Tenant, now: int) -> None: ...

    def change_config(self, tenant: Tenant, now: int) -> None: ...


class KeyChecker(Protocol):
    def check_api_key(self, api_key: str) -> KeyCheck: ...


class SecretWriter(Protocol):
    def seal(self, tenant_id: str, api_key: str, webhook_secret: str) -> SealedSecrets: ...

    def retire(self, secret_name: str) -> None: ...


class BackfillClaims(Protocol):
    def claim(self, tenant_id: str, now: int) -> bool: ...

    def set_execution(self, tenant_id: str, execution: str) -> None: ...

    def backfill_finished(self, tenant_id: str, now: int, outcome: BackfillOutcome) -> None: ...


class BackfillStarter(Protocol):
    def start(self, tenant_id: str, now: int) -> str: ...


class RecordReader(Protocol):
    def get_record(self, tenant_id: str, external_id: str) -> dict[str, Any] | None: ...


def json_body(body: str | None, base64_encoded: bool) -> Any:
    """A request's JSON body as API Gateway passes it: invalid when there is none, and when its bytes
    are not base64 (if marked so), not UTF-8 or not JSON."""
    if not body:
        raise InvalidInput("a JSON body is required", "invalid_body")
    try:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raw = base64.b64decode(body, validate=True) if base64_encoded else body.encode()
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        raise InvalidInput("body is not valid JSON (UTF-8)", "invalid_json") from None


def _body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object", "invalid_body")
    return body


def connect_api_key(
    tenant_id: str,
    body: Any,
    *,
    tenants: TenantRepository,
    checker: KeyChecker,
    secrets: SecretWriter,
    now: int,
) -> dict[str, Any]:
    tenant_id = validate_tenant_id(tenant_id)
    payload = _body_object(body)
    api_key, webhook_secret = payload.get("api_key"), payload.get("webhook_secret")
    if not isinstance(api_key, str) or not _API_KEY.match(api_key):
        raise InvalidInput("api_key must be a Stripe secret or restricted key (sk_…/rk_…)", "invalid_api_key")
    if not isinstance(webhook_secret, str) or not _WEBHOOK_SECRET.match(webhook_secret):
        raise InvalidInput(
            "webhook_secret must be the endpoint's signing secret (whsec_…)", "invalid_webhook_secret"
        )
    check = checker.check_api_key(api_key)
    sealed = secrets.seal(tenant_id, api_key, webhook_secret)
    tenant = tenants.get(tenant_id) or Tenant(tenant_id=tenant_id)
    # A connection saved before sealed secrets names its Secrets Manager secret: this rotation moves
    # it. The new values are saved first (readers prefer them), the secret is deleted, then its name
    # dropped: a deletion that fails leaves the name, and the next save deletes it.
    retiring = tenant.connection.secret_name
    tenant = replace(
        tenant,
        connection=Connection(
            status="connected",
            mode="api_key",
            account_id=check.account_id,
            livemode=check.livemode,
            secret_name=retiring,
            connected_at=now,
            sealed=sealed,
        ),
    )
    tenants.save(tenant, now)
    if retiring:
        secrets.retire(retiring)
        tenant = replace(tenant, connection=replace(tenant.connection, secret_name=None))
        tenants.save(tenant, now)
    return status_document(tenant)


def start_backfill(
    tenant_id: str, *, tenants: TenantRepository, claims: BackfillClaims, starter: BackfillStarter, now: int
) -> dict[str, Any]:
    """Start a backfill execution; a ``Conflict`` while one runs (the claim is a conditional write)."""
    tenant_id = validate_tenant_id(tenant_id)
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise Conflict("connect Stripe before importing", "not_connected")
    if not tenant.customer_id_trait:
        raise Conflict("choose the customer-ID trait before importing", "not_configured")
    if not claims.claim(tenant_id, now):
        raise Conflict("a backfill is already running for this tenant", "backfill_running")
    try:
        execution = starter.start(tenant_id, now)
    except Exception as exc:
        claims.backfill_finished(
            tenant_id, now, BackfillOutcome({}, f"could not start: {type(exc).__name__}")
        )
        raise UpstreamUnavailable(
            "the backfill could not be started; try again", "backfill_not_started"
        ) from None
    claims.set_execution(tenant_id, execution)
    return {"execution": execution}


def save_config(
    tenant_id: str,
    body: Any,
    *,
    tenants: TenantRepository,
    claims: BackfillClaims,
    starter: BackfillStarter,
    now: int,
) -> dict[str, Any]:
    """Save the customer-ID trait, switch tracking to Stripe, and start a backfill (which also re-keys
    existing records when the trait changed)."""
    tenant_id = validate_tenant_id(tenant_id)
    payload = _body_object(body)
    trait = payload.get("customer_id_trait")
    if not isinstance(trait, str):
        raise InvalidInput("customer_id_trait is required", "invalid_customer_id_trait")
    validate_trait(trait)
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise Conflict("connect Stripe before configuring the customer-ID trait", "not_connected")
    tenant = tenant.with_config(trait)
    tenants.change_config(tenant, now)
    try:
        started: dict[str, Any] = start_backfill(
            tenant_id, tenants=tenants, claims=claims, starter=starter, now=now
        )
    except Conflict as exc:
        if exc.code != "backfill_running":
            raise
        started = {"execution": None, "note": "a backfill is already running; start another when it ends"}
    document = status_document(tenants.get(tenant_id) or tenant)
    document["backfill"]["execution"] = started["execution"]
    return document


class EventsReader(Protocol):
    def get(self, tenant_id: str) -> EventsState: ...


def tenant_status(
    tenant_id: str, *, tenants: TenantRepository, events: EventsReader, webhook_base_url: str | None = None
) -> dict[str, Any]:
    """The status document, the catch-up's progress, and ``webhook_url`` when the receiver's URL is
    known: an API-key connection needs its endpoint's signing secret, so that endpoint is registered
    in Stripe before the connection is saved."""
    tenant_id = validate_tenant_id(tenant_id)
    tenant = tenants.get(tenant_id) or Tenant(tenant_id=tenant_id)
    progress = events.get(tenant_id)
    return {
        **status_document(tenant),
        "webhook_url": tenant_webhook_url(webhook_base_url, tenant_id) if webhook_base_url else None,
        "events": {
            "last_event_at": progress.last_event_at,
            "last_reconciled_at": progress.last_reconciled_at,
            "recovered": progress.recovered,
            "reconciling": bool(progress.running_since),
            # Part of the last catch-up's gap was older than Stripe's Events API keeps (30 days).
            "backfill_needed": progress.backfill_needed,
            # A window begun and not yet listed to its end (runs go on with it), and how far it got.
            "pending": None
            if progress.pending is None
            else {
                "from": progress.pending.start,
                "through": progress.pending.through,
                "listed": progress.pending.listed,
                "recovered": progress.pending.recovered,
                "continuing": progress.pending.continuation is not None,
            },
        },
    }


def settings_page(
    tenant_id: str,
    *,
    just_connected: bool,
    tenants: TenantRepository,
    events: EventsReader,
    stripe: CustomerSampler,
    revenue: dict[str, Any] | None = None,
    risks: dict[str, Any] | None = None,
) -> str:
    """The settings page (HTML): the status, the trait candidates when Stripe answers, and the last
    twelve months of MRR (``revenue``: the revenue route's document) with the customers at risk beside
    it (``risks``: the risks route's first page)."""
    status = tenant_status(tenant_id, tenants=tenants, events=events)
    candidates, note = None, ""
    if status["connection"]["status"] == "connected":
        try:
            candidates = discover_traits(tenant_id, tenants=tenants, stripe=stripe)["candidates"]
        except Exception as exc:  # any failure to read Stripe: the page still shows, the picker says why
            logger.warning("trait discovery failed: %s", type(exc).__name__)
            note = "Could not read customers from Stripe right now; reload to try again."
    if just_connected:
        note = note or "Stripe is connected. Choose your customer-ID trait to import your data."
    return settings_page_view.render(status, candidates, note, revenue, risks=risks)


def customer_record(tenant_id: str, external_id: str, *, records: RecordReader) -> dict[str, Any]:
    tenant_id = validate_tenant_id(tenant_id)
    if not external_id or len(external_id.encode()) > MAX_KEY_BYTES:
        raise InvalidInput(f"external_id must be 1-{MAX_KEY_BYTES} bytes (UTF-8)", "invalid_external_id")
    record = records.get_record(tenant_id, external_id)
    if record is None:
        raise NotFound("no customer record with that external_id", "customer_not_found")
    return record


class CustomerSampler(Protocol):
    def sample_customers(self, tenant: Tenant, limit: int = 100) -> list[dict[str, Any]]: ...


def discover_traits(tenant_id: str, *, tenants: TenantRepository, stripe: CustomerSampler) -> dict[str, Any]:
    """Candidate customer-ID traits on the newest 100 Stripe customers, with how many carry each."""
    tenant_id = validate_tenant_id(tenant_id)
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise Conflict("connect Stripe before discovering traits", "not_connected")
    sample = stripe.sample_customers(tenant, 100)
    return {
        "sampled": len(sample),
        "candidates": candidate_traits(sample),
        "current": tenant.customer_id_trait,
    }
