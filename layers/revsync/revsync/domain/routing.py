"""What the webhook receiver knows of tenants: valid ids and the small route read for each event.

Apart from ``revsync.domain.tenancy`` (connections, config, tracking) because the receiver's cold
start is measured: this module defines no dataclass.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from revsync.errors import InvalidInput

_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TenantError(InvalidInput):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


def validate_tenant_id(tenant_id: str | None) -> str:
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        raise TenantError("invalid_tenant_id", "tenant_id must be 1-64 letters, digits, '_', '.' or '-'")
    return tenant_id


class SealedSecrets(NamedTuple):
    """An API-key tenant's restricted key and webhook secret, each encrypted by KMS with the tenant
    and the secret's kind in its encryption context: bytes that only KMS can open, for that tenant."""

    api_key: bytes
    webhook_secret: bytes


class TenantRoute(NamedTuple):
    """What the receiver needs to accept an event for a tenant (one small read)."""

    tenant_id: str
    status: str
    livemode: bool
    mode: str | None = None
    # Where an API-key tenant's webhook secret is: a Secrets Manager secret (a connection saved before
    # sealed secrets, until its next rotation), else sealed on the tenant item itself.
    secret_name: str | None = None
    sealed_webhook_secret: bytes | None = None
