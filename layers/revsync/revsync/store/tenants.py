"""Tenants: connection, configuration and tracking, through the PynamoDB models (tenant items, and
the account items routing Connect events to them). Other jobs share the tenants table: a backfill's
progress on the tenant item (store.backfill_progress), OAuth states (store.oauth_states), the kept
backfill run (store.backfill_runs), events progress (store.events_progress), request budgets
(store.budget); the receiver reads routes without PynamoDB (store.tenant_lookup)."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.connection import Connection as DynamoConnection
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.tenancy import Connection, Recompute, SealedSecrets, Tenant, Tracking
from revsync.errors import Conflict
from revsync.infra.cache import MaxAgeCache
from revsync.store import models
from revsync.store.throttling import defers_when_throttled

# The typed maps' attributes as paths (what PynamoDB makes of them on the class; its stubs say values).
_CONFIG: Any = models.TenantItem.config
_RECOMPUTE: Any = models.TenantItem.recompute


def _policy_from(stored: models.Policy | None) -> RevenuePolicy:
    if stored is None:  # saved before policies, or never changed
        return DEFAULT_POLICY
    return RevenuePolicy.from_json(
        {
            "past_due": {
                "churn_after_days": None if stored.churn_after_days is None else int(stored.churn_after_days)
            },
            "churn_at": stored.churn_at,
            "discounts": stored.discounts,
            "metered": stored.metered,
        }
    )


def _policy_item(policy: RevenuePolicy) -> models.Policy:
    return models.Policy(
        churn_after_days=policy.churn_after_days,
        churn_at=policy.churn_at,
        discounts=policy.discounts,
        metered=policy.metered,
    )


def _recompute_from(stored: models.Recompute | None) -> Recompute | None:
    if stored is None:
        return None

    def number(value: Any) -> int | None:
        return None if value is None else int(value)

    return Recompute(
        config_version=int(stored.config_version),
        started_at=int(stored.started_at),
        cursor=stored.cursor,
        customers_done=int(stored.customers_done or 0),
        finished_at=number(stored.finished_at),
        updated_at=number(stored.updated_at),
    )


def _recompute_item(recompute: Recompute) -> models.Recompute:
    return models.Recompute(**recompute._asdict())


def _to_domain(item: models.TenantItem) -> Tenant:
    c, cfg, tr = item.connection, item.config, item.tracking
    return Tenant(
        tenant_id=item.tenant_id,
        connection=Connection(
            status=c.status,  # type: ignore[arg-type]
            mode=c.mode,  # type: ignore[arg-type]
            account_id=c.account_id,
            livemode=bool(c.livemode),
            secret_name=c.secret_name,
            connected_at=int(c.connected_at) if c.connected_at is not None else None,
            scope=c.scope,
            sealed=SealedSecrets(c.sealed_api_key, c.sealed_webhook_secret)
            if c.sealed_api_key is not None and c.sealed_webhook_secret is not None
            else None,
        ),
        customer_id_trait=cfg.customer_id_trait,
        config_version=int(cfg.version or 0),
        tracking=Tracking(revenue=tr.revenue, churn=tr.churn, trial=tr.trial),
        backfill=item.backfill.as_dict() if item.backfill is not None else None,
        policy=_policy_from(cfg.policy),
        recompute=_recompute_from(item.recompute),
    )


def _to_item(tenant: Tenant, now: int) -> models.TenantItem:
    c = tenant.connection
    return models.TenantItem(
        models.tenant_key(tenant.tenant_id),
        tenant_id=tenant.tenant_id,
        connection=models.Connection(
            status=c.status,
            mode=c.mode,
            account_id=c.account_id,
            livemode=c.livemode,
            secret_name=c.secret_name,
            connected_at=c.connected_at,
            scope=c.scope,
            sealed_api_key=c.sealed.api_key if c.sealed else None,
            sealed_webhook_secret=c.sealed.webhook_secret if c.sealed else None,
        ),
        config=models.Config(
            customer_id_trait=tenant.customer_id_trait,
            version=tenant.config_version,
            policy=_policy_item(tenant.policy),
        ),
        tracking=models.Tracking(
            revenue=tenant.tracking.revenue, churn=tenant.tracking.churn, trial=tenant.tracking.trial
        ),
        backfill=tenant.backfill,
        recompute=_recompute_item(tenant.recompute) if tenant.recompute is not None else None,
        updated_at=now,
    )


def _config_version_is(version: int) -> Condition:
    """The stored config version is ``version`` (0: also a bare tenant item, without one)."""
    condition: Condition = _CONFIG.version == version
    return condition | _CONFIG.version.does_not_exist() if version == 0 else condition


@defers_when_throttled
class TenantStore:
    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None:
        """The tenant as stored now (always at least as new as any ``min_config_version``)."""
        try:
            item = models.TenantItem.get(models.tenant_key(tenant_id), consistent_read=True)
        except DoesNotExist:
            return None
        return _to_domain(item)

    def save(self, tenant: Tenant, now: int) -> None:
        """Write the tenant and, for a Connect account, the account routing item with it.

        One transaction claims the new account (one tenant per account) and releases the account the
        tenant was routed from before, if it moved (to another account, or to an API key): events of
        the old account then reach no one, and another tenant may connect it. It is conditional on
        the stored connection being the one read here, so two concurrent moves cannot both win, and
        on the stored config version being the tenant's: a config or policy saved since the tenant
        was read is never undone (``ConfigChanged``: read again and retry; a config change itself is
        ``change_config``).
        """
        item = _to_item(tenant, now)
        connection = tenant.connection
        account_id = connection.account_id if connection.mode == "oauth" else None
        unchanged: Condition
        try:
            stored = models.TenantItem.get(models.tenant_key(tenant.tenant_id), consistent_read=True)
            previous = stored.connection.account_id if stored.connection.mode == "oauth" else None
            if stored.connection.account_id is None:
                unchanged = models.TenantItem.connection.account_id.does_not_exist()
            else:
                unchanged = models.TenantItem.connection.account_id == stored.connection.account_id  # type: ignore[assignment]  # PynamoDB overloads ==
            if _to_domain(stored).config_version != tenant.config_version:
                raise ConfigChanged(tenant.tenant_id)
            unchanged &= _config_version_is(tenant.config_version)
        except DoesNotExist:
            previous, unchanged = None, models.TenantItem.pk.does_not_exist()
        if not account_id and not previous:
            try:
                item.save(condition=unchanged)
            except PutError as exc:
                if models.condition_failed(exc):
                    raise ConnectionMoved(tenant.tenant_id) from exc
                raise
            return
        claim_index: int | None = None
        try:
            dynamo = DynamoConnection(
                connect_timeout_seconds=models.CONNECT_TIMEOUT_SECONDS,
                read_timeout_seconds=models.READ_TIMEOUT_SECONDS,
                max_retry_attempts=models.MAX_RETRY_ATTEMPTS,
            )
            with TransactWrite(connection=dynamo) as transaction:
                transaction.save(item, condition=unchanged)
                if account_id:
                    account = models.AccountItem(
                        models.account_key(account_id),
                        tenant_id=tenant.tenant_id,
                        account_id=account_id,
                        status=connection.status,
                        livemode=connection.livemode,
                    )
                    owned = models.AccountItem.pk.does_not_exist() | (
                        models.AccountItem.tenant_id == tenant.tenant_id
                    )
                    transaction.save(account, condition=owned)
                    claim_index = 1
                if previous and previous != account_id:
                    released = models.AccountItem(models.account_key(previous))
                    transaction.delete(released, condition=models.AccountItem.tenant_id == tenant.tenant_id)
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            failed = [
                i for i, r in enumerate(reasons) if r is not None and r.code == "ConditionalCheckFailed"
            ]
            if claim_index is not None and claim_index in failed:
                raise AccountTaken(str(account_id)) from exc
            if failed:
                raise ConnectionMoved(tenant.tenant_id) from exc
            raise

    def change_config(self, tenant: Tenant, now: int) -> None:
        """Write ``tenant``'s customer-ID trait, config version and tracking (``Tenant.with_config``),
        and nothing else of the item, if the stored config version is the one before;
        ``ConfigChanged`` otherwise (another change came first: read again and retry)."""
        tracking = models.Tracking(
            revenue=tenant.tracking.revenue, churn=tenant.tracking.churn, trial=tenant.tracking.trial
        )
        self._change_config(
            tenant,
            now,
            [
                _CONFIG.customer_id_trait.set(tenant.customer_id_trait),
                models.TenantItem.tracking.set(tracking),
            ],
        )

    def change_policy(self, tenant: Tenant, now: int) -> None:
        """Write ``tenant``'s policy, config version and recompute (``Tenant.with_policy``, then the
        recompute it starts), and nothing else of the item, if the stored config version is the one
        before; ``ConfigChanged`` otherwise (another change came first: read again and retry)."""
        actions: list[Any] = [_CONFIG.policy.set(_policy_item(tenant.policy))]
        if tenant.recompute is not None:
            actions.append(models.TenantItem.recompute.set(_recompute_item(tenant.recompute)))
        self._change_config(tenant, now, actions)

    def _change_config(self, tenant: Tenant, now: int, actions: list[Any]) -> None:
        actions = [
            *actions,
            _CONFIG.version.set(tenant.config_version),
            models.TenantItem.updated_at.set(now),
        ]
        try:
            models.TenantItem(models.tenant_key(tenant.tenant_id)).update(
                actions=actions,
                condition=models.TenantItem.pk.exists() & _config_version_is(tenant.config_version - 1),
            )
        except UpdateError as exc:
            if models.condition_failed(exc):
                raise ConfigChanged(tenant.tenant_id) from exc
            raise

    def advance_recompute(self, tenant_id: str, at: Recompute, to: Recompute) -> bool:
        """Replace the tenant's recompute ``at`` (the same policy change, at the same cursor, not
        finished) with ``to``; False when it is no longer ``at`` (a newer change replaced it, or
        another run of it moved on)."""
        same = (_RECOMPUTE.config_version == at.config_version) & _RECOMPUTE.finished_at.does_not_exist()
        same &= _RECOMPUTE.cursor.does_not_exist() if at.cursor is None else _RECOMPUTE.cursor == at.cursor
        try:
            models.TenantItem(models.tenant_key(tenant_id)).update(
                actions=[models.TenantItem.recompute.set(_recompute_item(to))], condition=same
            )
        except UpdateError as exc:
            if models.condition_failed(exc):
                return False
            raise
        return True


class CachedTenantStore:
    """The worker's tenant reads: cached briefly per process, refreshed when a newer config is known."""

    def __init__(self, store: TenantStore, ttl_seconds: float = 30.0, clock: Any = time.monotonic) -> None:
        self._store = store
        self._cache: MaxAgeCache[str, Tenant | None] = MaxAgeCache(ttl_seconds, clock)

    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None:
        return self._cache.get(
            tenant_id,
            lambda: self._store.get(tenant_id),
            # An unknown tenant, or one cached before a newer config: read again.
            usable=lambda tenant: tenant is not None and tenant.config_version >= min_config_version,
        )


class AccountTaken(Conflict):
    """The Stripe account is connected to another tenant."""

    code = "account_taken"


class ConfigChanged(Conflict):
    """The tenant's configuration changed while it was being saved: read it again and retry."""

    code = "config_changed"

    def __init__(self, tenant_id: str) -> None:
        super().__init__("the configuration changed meanwhile; retry")
        self.tenant_id = tenant_id


class ConnectionMoved(Conflict):
    """The tenant's connection changed while it was being saved: read it again and retry."""

    code = "connection_changed"

    def __init__(self, tenant_id: str) -> None:
        super().__init__("the Stripe connection changed meanwhile; retry")
        self.tenant_id = tenant_id
