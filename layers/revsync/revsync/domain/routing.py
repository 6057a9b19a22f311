"""What the webhook receiver knows of tenants: valid ids and the small route read for each event.

Apart from ``revsync.domain.tenancy`` (connections, config, tracking) because the receiver's cold
start is measured: this module defines no dataclass.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TenantError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def validate_tenant_id(tenant_id: str | None) -> str:
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        raise TenantError("invalid_tenant_id", "tenant_id must be 1-64 letters, digits, '_', '.' or '-'")
    return tenant_id


class TenantRoute(NamedTuple):
    """What the receiver needs to accept an event for a tenant (one small read)."""

    tenant_id: str
    status: str
    livemode: bool
    mode: str | None = None
    secret_name: str | None = None
