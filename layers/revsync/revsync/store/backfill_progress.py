"""A backfill's progress, as the tenant's status shows it: the ``backfill`` map of its tenant item
(the tenants table), claimed by one run at a time, counted as pages are imported, finished with a
state. Plain boto3: conditional updates of that one attribute (store.tenants writes the rest)."""

from __future__ import annotations

from typing import Any

from revsync.domain.tenancy import BackfillOutcome
from revsync.infra import aws
from revsync.store import models
from revsync.store.throttling import defers_when_throttled

_ZERO_COUNTS = {
    kind: {"N": "0"} for kind in ("customers", "subscriptions", "invoices", "credit_notes", "refunds")
}


@defers_when_throttled
class BackfillProgress:
    """The tenant item's ``backfill`` map: claimed once, counted atomically, finished with a state."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the tenants table

    def _update(
        self,
        tenant_id: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        condition: str | None = None,
    ) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
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

    def backfill_finished(self, tenant_id: str, now: int, outcome: BackfillOutcome) -> None:
        counts, error = dict(outcome.counts), outcome.error
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
            values[":requests"], values[":walks"] = {"N": str(outcome.requests)}, {"N": str(outcome.walks)}
            expression += (
                ", backfill.counts = :counts, backfill.requests = :requests, backfill.walks = :walks"
            )
        names = {"#s": "state", "#e": "error"}
        if self._update(tenant_id, expression, values, names, "attribute_exists(backfill)"):
            return
        # A run that failed before it started (started from the console for a tenant that is not
        # connected) has no backfill map to update: record the outcome whole, if the tenant exists.
        whole = _backfill(values[":state"]["S"], values[":stage"]["S"], None, now, error, counts)
        self._update(tenant_id, "SET backfill = :b", {":b": whole}, None, "attribute_exists(pk)")


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
