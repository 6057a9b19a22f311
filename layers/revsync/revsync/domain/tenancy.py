"""Tenants as the domain sees them: connection, configuration, tracking settings, and their rules."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy

# Re-exported: tenant ids and routes live in revsync.domain.routing (the receiver's light module).
from revsync.domain.routing import SealedSecrets, TenantError, TenantRoute, validate_tenant_id

__all__ = [
    "BackfillOutcome",
    "Connection",
    "Recompute",
    "SealedSecrets",
    "Tenant",
    "TenantError",
    "TenantRoute",
    "Tracking",
    "status_document",
    "validate_tenant_id",
]

ConnectionStatus = Literal["connected", "revoked", "none"]
ConnectionMode = Literal["oauth", "api_key"]

STRIPE = "stripe"


class BackfillOutcome(NamedTuple):
    """How a backfill ended, as its progress keeps it: the counts by kind (none for a run that failed
    before counting), why it failed (None: it succeeded), and the finished run's requests and walks."""

    counts: Mapping[str, int]
    error: str | None = None
    requests: int = 0
    walks: int = 0


class Recompute(NamedTuple):
    """A policy change's recompute of every customer of the tenant from its stored observations, as
    kept with the tenant: started when the policy was saved (``config_version``: the tenant's config
    version it was saved with), advanced a page of customers at a time, ``finished_at`` once every
    customer was re-derived. A newer policy change replaces it (the older one's jobs then stop)."""

    config_version: int
    started_at: int
    cursor: str | None = None  # where the next page of customers starts (None: the first page)
    customers_done: int = 0
    finished_at: int | None = None
    updated_at: int | None = None  # its last progress: a recompute silent for long is taken over

    @property
    def state(self) -> Literal["recomputing", "done"]:
        return "recomputing" if self.finished_at is None else "done"


@dataclass(frozen=True, slots=True)
class Connection:
    status: ConnectionStatus = "none"
    mode: ConnectionMode | None = None
    account_id: str | None = None
    livemode: bool = False
    # An API-key connection's key and webhook secret: ``sealed`` (KMS-encrypted, on the tenant item),
    # or, for a connection saved before those, the Secrets Manager secret ``secret_name`` (read until
    # the next rotation moves them, then deleted).
    secret_name: str | None = None
    connected_at: int | None = None
    scope: str | None = None  # what an OAuth connection was granted (read_write)
    sealed: SealedSecrets | None = field(default=None, repr=False)

    @property
    def is_connected(self) -> bool:
        return self.status == "connected"


@dataclass(frozen=True, slots=True)
class Tracking:
    """Which source the platform uses for each metric; None means not configured."""

    revenue: str | None = None
    churn: str | None = None
    trial: str | None = None

    def override_for_stripe(self) -> Tracking:
        # Revenue and churn always switch to Stripe; trials only when not configured, since many
        # teams track trials in their own product.
        return Tracking(revenue=STRIPE, churn=STRIPE, trial=self.trial or STRIPE)


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    connection: Connection = field(default_factory=Connection)
    customer_id_trait: str | None = None
    config_version: int = 0
    tracking: Tracking = field(default_factory=Tracking)
    backfill: dict[str, Any] | None = None
    policy: RevenuePolicy = DEFAULT_POLICY
    recompute: Recompute | None = None

    def with_policy(self, policy: RevenuePolicy) -> Tenant:
        """A new revenue policy is a new configuration (records derived under an older one are
        re-derived: the write path compares config versions)."""
        return replace(self, policy=policy, config_version=self.config_version + 1)

    def with_config(self, trait: str) -> Tenant:
        return replace(
            self,
            customer_id_trait=trait,
            config_version=self.config_version + 1,
            tracking=self.tracking.override_for_stripe(),
        )


def tenant_webhook_url(webhook_base_url: str, tenant_id: str) -> str:
    """The endpoint an API-key tenant registers in its own Stripe account (the receiver's URL)."""
    return f"{webhook_base_url.rstrip('/')}/webhooks/stripe/{tenant_id}"


def policy_status(tenant: Tenant) -> dict[str, Any]:
    """The policy in force and the progress of the recompute its change started (docs/contracts.md,
    "The status document"): ``GET .../stripe/policy``, and ``policy`` in the status document."""
    recompute = tenant.recompute
    return {
        "document": tenant.policy.to_json(),
        "recompute": {
            "state": "none" if recompute is None else recompute.state,
            "config_version": None if recompute is None else recompute.config_version,
            "customers_done": 0 if recompute is None else recompute.customers_done,
            "started_at": None if recompute is None else recompute.started_at,
            "finished_at": None if recompute is None else recompute.finished_at,
        },
    }


def status_document(tenant: Tenant) -> dict[str, Any]:
    """``GET /tenants/{tenant_id}/stripe`` (docs/contracts.md contract)."""
    connection = tenant.connection
    backfill = tenant.backfill or {}
    return {
        "tenant_id": tenant.tenant_id,
        "connection": {
            "status": connection.status,
            "mode": connection.mode,
            "account_id": connection.account_id,
            "livemode": connection.livemode,
            "connected_at": connection.connected_at,
            "scope": connection.scope,
        },
        "config": {"customer_id_trait": tenant.customer_id_trait, "version": tenant.config_version},
        "tracking": {
            "revenue": tenant.tracking.revenue,
            "churn": tenant.tracking.churn,
            "trial": tenant.tracking.trial,
        },
        "backfill": {
            "state": backfill.get("state", "none"),
            "stage": backfill.get("stage"),
            "counts": backfill.get("counts", {"customers": 0, "subscriptions": 0, "invoices": 0}),
            "started_at": backfill.get("started_at"),
            "finished_at": backfill.get("finished_at"),
            "error": backfill.get("error"),
            # Stripe list requests and cursor walks of the last finished run.
            "requests": backfill.get("requests"),
            "walks": backfill.get("walks"),
        },
        "policy": policy_status(tenant),
    }
