"""The receiver's one read: route an event to its tenant.

Plain boto3 rather than PynamoDB keeps the receiver's cold start within budget. It reads the items
that ``revsync.store.tenants`` writes through the PynamoDB models in ``revsync.store.models``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from revsync.domain.routing import TenantRoute
from revsync.infra import aws


def _s(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return str(value) if value is not None else None


class DynamoTenantDirectory:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the tenants table

    def by_account(self, account_id: str) -> TenantRoute | None:
        item = (
            aws.dynamodb()
            .get_item(
                TableName=self._table_name,
                Key={"pk": {"S": f"account#{account_id}"}},
                ProjectionExpression="tenant_id, #s, livemode",
                ExpressionAttributeNames={"#s": "status"},
            )
            .get("Item")
        )
        if not item:
            return None
        return TenantRoute(
            tenant_id=_s(item, "tenant_id") or "",
            status=_s(item, "status") or "none",
            livemode=bool(item.get("livemode", {}).get("BOOL", False)),
            mode="oauth",
        )

    def by_tenant(self, tenant_id: str) -> TenantRoute | None:
        item = (
            aws.dynamodb()
            .get_item(
                TableName=self._table_name,
                Key={"pk": {"S": f"tenant#{tenant_id}"}},
                ProjectionExpression="tenant_id, #c",
                ExpressionAttributeNames={"#c": "connection"},
            )
            .get("Item")
        )
        if not item:
            return None
        connection = item.get("connection", {}).get("M", {})
        return TenantRoute(
            tenant_id=tenant_id,
            status=_s(connection, "status") or "none",
            livemode=bool(connection.get("livemode", {}).get("BOOL", False)),
            mode=_s(connection, "mode"),
            secret_name=_s(connection, "secret_name"),
            sealed_webhook_secret=connection.get("sealed_webhook_secret", {}).get("B"),
        )
