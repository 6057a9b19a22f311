"""OAuth states issued for a tenant's Stripe Connect authorization (revsync.domain.oauth_state):
``state#<nonce>`` items of the tenants table, expiring by TTL, each consumed at most once."""

from __future__ import annotations

from revsync.infra import aws
from revsync.store.throttling import defers_when_throttled


@defers_when_throttled
class OAuthStates:
    """Issued OAuth states (``state#<nonce>``), expiring by TTL and consumed at most once."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the tenants table

    def save(self, tenant_id: str, nonce: str, expires_at: int) -> None:
        aws.dynamodb().put_item(
            TableName=self._table_name,
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
                TableName=self._table_name,
                Key={"pk": {"S": f"state#{nonce}"}},
                ConditionExpression="tenant_id = :t AND expires_at >= :now",
                ExpressionAttributeValues={":t": {"S": tenant_id}, ":now": {"N": str(now)}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False
        return True
