"""Tenants: connection, configuration and tracking, through the PynamoDB models."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.connection import Connection as DynamoConnection
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from revsync.domain.tenancy import Connection, SealedSecrets, Tenant, Tracking
from revsync.errors import Conflict
from revsync.infra import aws
from revsync.infra.cache import MaxAgeCache
from revsync.store import models
from revsync.store.throttling import defers_when_throttled


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
        config=models.Config(customer_id_trait=tenant.customer_id_trait, version=tenant.config_version),
        tracking=models.Tracking(
            revenue=tenant.tracking.revenue, churn=tenant.tracking.churn, trial=tenant.tracking.trial
        ),
        backfill=tenant.backfill,
        updated_at=now,
    )


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
        the stored connection being the one read here, so two concurrent moves cannot both win.
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
        except DoesNotExist:
            previous, unchanged = None, models.TenantItem.pk.does_not_exist()
        if not account_id and not previous:
            try:
                item.save(condition=unchanged)
            except PutError as exc:
                if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
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


_ZERO_COUNTS = {"customers": {"N": "0"}, "subscriptions": {"N": "0"}, "invoices": {"N": "0"}}


@defers_when_throttled
class BackfillProgress:
    """The tenant item's ``backfill`` map: claimed once, counted atomically, finished with a state
    (``table``: the tenants table's name)."""

    def __init__(self, table: str) -> None:
        self._table = table

    def _update(
        self,
        tenant_id: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        condition: str | None = None,
    ) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": models.tenant_key(tenant_id)}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            aws.dynamodb().update_item(**kwargs)
        except aws.dynamodb().exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim(self, tenant_id: str, now: int, stale_after: int = 6 * 3600) -> bool:
        """Mark a backfill running unless one is (a run older than ``stale_after`` counts as dead)."""
        return self._update(
            tenant_id,
            "SET backfill = :b",
            {
                ":b": _running(now, "starting"),
                ":running": {"S": "running"},
                ":stale": {"N": str(now - stale_after)},
            },
            {"#s": "state"},
            "attribute_exists(pk) AND (attribute_not_exists(backfill) OR backfill.#s <> :running "
            "OR backfill.started_at < :stale)",
        )

    def set_execution(self, tenant_id: str, execution: str) -> None:
        self._update(tenant_id, "SET backfill.execution = :e", {":e": {"S": execution}})

    def fail_if_running(self, tenant_id: str, execution: str, now: int, error: str) -> bool:
        """The backfill failed, if it is still running in ``execution``."""
        return self._update(
            tenant_id,
            "SET backfill.#s = :failed, backfill.stage = :failed, backfill.finished_at = :now, "
            "backfill.#e = :error",
            {
                ":failed": {"S": "failed"},
                ":now": {"N": str(now)},
                ":error": {"S": error},
                ":running": {"S": "running"},
                ":execution": {"S": execution},
            },
            {"#s": "state", "#e": "error"},
            "backfill.#s = :running AND backfill.execution = :execution",
        )

    def backfill_started(
        self, tenant_id: str, now: int, stage: str, counts: dict[str, int] | None = None
    ) -> None:
        """``counts``: what a resumed run had imported already (zero for a new one)."""
        # Started from the console or CLI, nothing claimed it: claim it now (keeping a route's claim).
        if not self._update(
            tenant_id,
            "SET backfill.stage = :stage, backfill.counts = :zero, backfill.started_at = :now",
            {
                ":stage": {"S": stage},
                ":zero": {"M": {**_ZERO_COUNTS, **{k: {"N": str(v)} for k, v in (counts or {}).items()}}},
                ":now": {"N": str(now)},
                ":running": {"S": "running"},
            },
            {"#s": "state"},
            "backfill.#s = :running",
        ):
            started = _backfill("running", stage, now, None, None, counts or {})
            self._update(tenant_id, "SET backfill = :b", {":b": started})

    def backfill_progress(self, tenant_id: str, kind: str, imported: int) -> None:
        self._update(tenant_id, "ADD backfill.counts.#k :n", {":n": {"N": str(imported)}}, {"#k": kind})

    def backfill_finished(
        self,
        tenant_id: str,
        now: int,
        counts: dict[str, int],
        error: str | None,
        requests: int = 0,
        walks: int = 0,
    ) -> None:
        values: dict[str, Any] = {
            ":state": {"S": "failed" if error else "succeeded"},
            ":stage": {"S": "failed" if error else "done"},
            ":now": {"N": str(now)},
            ":error": {"S": error} if error else {"NULL": True},
        }
        expression = "SET backfill.#s = :state, backfill.stage = :stage, backfill.finished_at = :now"
        expression += ", backfill.#e = :error"
        if counts:
            values[":counts"] = {"M": {k: {"N": str(v)} for k, v in counts.items()}}
            values[":requests"], values[":walks"] = {"N": str(requests)}, {"N": str(walks)}
            expression += (
                ", backfill.counts = :counts, backfill.requests = :requests, backfill.walks = :walks"
            )
        names = {"#s": "state", "#e": "error"}
        if self._update(tenant_id, expression, values, names, "attribute_exists(backfill)"):
            return
        # A run that failed before it started (started from the console for a tenant that is not
        # connected) has no backfill map to update: record the outcome whole, if the tenant exists.
        outcome = _backfill(values[":state"]["S"], values[":stage"]["S"], None, now, error, counts)
        self._update(tenant_id, "SET backfill = :b", {":b": outcome}, None, "attribute_exists(pk)")


def _backfill(
    state: str,
    stage: str,
    started_at: int | None,
    finished_at: int | None,
    error: str | None,
    counts: dict[str, int],
) -> dict[str, Any]:
    """A whole ``backfill`` map (the status document's ``backfill``), as a DynamoDB attribute value."""

    def number(value: int | None) -> dict[str, Any]:
        return {"N": str(value)} if value is not None else {"NULL": True}

    return {
        "M": {
            "state": {"S": state},
            "stage": {"S": stage},
            "counts": {"M": {**_ZERO_COUNTS, **{k: {"N": str(v)} for k, v in counts.items()}}},
            "started_at": number(started_at),
            "finished_at": number(finished_at),
            "error": {"S": error} if error else {"NULL": True},
        }
    }


def _running(now: int, stage: str) -> dict[str, Any]:
    return _backfill("running", stage, now, None, None, {})


class AccountTaken(Conflict):
    """The Stripe account is connected to another tenant."""

    code = "account_taken"


class ConnectionMoved(Conflict):
    """The tenant's connection changed while it was being saved: read it again and retry."""

    code = "connection_changed"

    def __init__(self, tenant_id: str) -> None:
        super().__init__("the Stripe connection changed meanwhile; retry")
        self.tenant_id = tenant_id


@defers_when_throttled
class OAuthStates:
    """Issued OAuth states (``state#<nonce>`` in the tenants table, ``table``), expiring by TTL and
    consumed at most once."""

    def __init__(self, table: str) -> None:
        self._table = table

    def save(self, tenant_id: str, nonce: str, expires_at: int) -> None:
        aws.dynamodb().put_item(
            TableName=self._table,
            Item={
                "pk": {"S": f"state#{nonce}"},
                "tenant_id": {"S": tenant_id},
                "expires_at": {"N": str(expires_at)},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )

    def consume(self, tenant_id: str, nonce: str, now: int) -> bool:
        """True the first time a live state of this tenant is used; False for a reused or foreign one."""
        client = aws.dynamodb()
        try:
            client.delete_item(
                TableName=self._table,
                Key={"pk": {"S": f"state#{nonce}"}},
                ConditionExpression="tenant_id = :t AND expires_at >= :now",
                ExpressionAttributeValues={":t": {"S": tenant_id}, ":now": {"N": str(now)}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True
