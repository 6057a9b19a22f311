"""``GET /tenants/{tenant_id}/risks?kind=…[&cursor=…][&limit=…]``: the tenant's customers at risk of
one kind, newest first, a page at a time (revsync.domain.at_risk says what each kind lists)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from revsync.domain.at_risk import Position, RiskKind, issue_cursor, page_limit, read_cursor, risk_kind
from revsync.domain.tenancy import validate_tenant_id
from revsync.errors import RetryLater


class RiskReader(Protocol):
    def at_risk(
        self, tenant_id: str, kind: RiskKind, after: Position | None, limit: int
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """Up to ``limit`` of the tenant's customers at risk of ``kind``, newest first, after
        ``after``; and where the next page starts (None: no more)."""
        ...


def at_risk(
    tenant_id: str, query: Mapping[str, str], *, reader: RiskReader, cursor_key: Callable[[], str]
) -> dict[str, Any]:
    """``{"kind", "customers": [{"external_id", "stripe_customer_id", "mrr", "currency", "since"}],
    "next"}``; a 400 for a missing or unknown kind (``invalid_kind``), a limit outside 1-100
    (``invalid_limit``) or a cursor not issued for this tenant and kind (``invalid_cursor``).
    ``cursor_key`` gives the key cursors are signed with (read only when a cursor is)."""
    tenant_id = validate_tenant_id(tenant_id)
    kind = risk_kind(query.get("kind"))
    limit = page_limit(query.get("limit"))
    cursor = query.get("cursor")
    after = None if cursor is None else read_cursor(cursor, tenant_id, kind, cursor_key())
    customers, following = reader.at_risk(tenant_id, kind, after, limit)
    return {
        "kind": kind.name,
        "customers": customers,
        "next": None if following is None else issue_cursor(tenant_id, kind, following, cursor_key()),
    }


# The settings page shows the first few customers in dunning; its selector asks this route for others.
PAGE_KIND, PAGE_LIMIT = "dunning", 10


def settings_list(
    tenant_id: str, *, reader: RiskReader, cursor_key: Callable[[], str]
) -> dict[str, Any] | None:
    """The settings page's first list; None when it cannot be read now (the page shows without it)."""
    query = {"kind": PAGE_KIND, "limit": str(PAGE_LIMIT)}
    try:
        return at_risk(tenant_id, query, reader=reader, cursor_key=cursor_key)
    except RetryLater:
        return None
