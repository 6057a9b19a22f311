"""Who may act on a tenant's admin routes (docs/contracts.md "admin").

IAM mode: API Gateway has checked a SigV4 signature of the platform's own backend, which may act on
any tenant. JWT mode: API Gateway's JWT authorizer has checked the token's signature, issuer,
audience and expiry and passes its claims; what is left is the tenant: the path's tenant must be the
token's tenant claim, unless the token carries the operator scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from revsync.errors import Forbidden, Unauthenticated

OPERATOR_SCOPE = "revsync/admin"
IAM, JWT = "IAM", "JWT"


class Principal(NamedTuple):
    """The caller as the authorizer saw it: its tenant (None for none) and its scopes."""

    tenant_id: str | None
    scopes: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return OPERATOR_SCOPE in self.scopes


def _scopes(value: Any) -> set[str]:
    # A `scope` claim is space-separated (RFC 8693); API Gateway hands list claims over as
    # "[a b]" strings, and its own `scopes` as a list.
    if isinstance(value, list | tuple):
        return {str(item) for item in value}
    if isinstance(value, str):
        return set(value.strip("[]").split())
    return set()


def principal_from_jwt(authorizer: Mapping[str, Any] | None, tenant_claim: str) -> Principal | None:
    """The principal in an HTTP API event's ``requestContext.authorizer`` (None: no JWT there)."""
    jwt = (authorizer or {}).get("jwt")
    if not isinstance(jwt, Mapping):
        return None
    claims = jwt.get("claims")
    claims = claims if isinstance(claims, Mapping) else {}
    tenant = claims.get(tenant_claim)
    scopes = _scopes(claims.get("scope")) | _scopes(jwt.get("scopes"))
    return Principal(tenant if isinstance(tenant, str) and tenant else None, frozenset(scopes))


def authorize(mode: str, tenant_id: str, principal: Principal | None) -> None:
    """Raise unless the caller may act on ``tenant_id``.

    ``Unauthenticated`` when JWT mode finds no token's claims (the authorizer should have refused
    first; this holds if a route is ever left without it); ``Forbidden`` (``forbidden_tenant``) for
    another tenant's token.
    """
    if mode != JWT:
        return
    if principal is None:
        raise Unauthenticated("a bearer token is required", "unauthorized")
    if principal.is_operator or principal.tenant_id == tenant_id:
        return
    raise Forbidden("this token is not for this tenant", "forbidden_tenant")
