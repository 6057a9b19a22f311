"""Connecting a tenant's Stripe account by OAuth (Stripe Connect), and disconnecting it.

Every failure of the callback stores nothing and says why: the user denied access, a bad, reused or
expired state, an invalid code, a Stripe error, or an account that belongs to another tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import quote

from revsync.domain import oauth_state
from revsync.domain.tenancy import Connection, Tenant, status_document, validate_tenant_id
from revsync.errors import Conflict, InvalidInput
from revsync.services.sync import SyncResult
from revsync.services.tenants import TenantRepository
from revsync.store.tenants import AccountTaken
from revsync.stripe_api.results import OAuthGrant


class States(Protocol):
    def save(self, tenant_id: str, nonce: str, expires_at: int) -> None: ...

    def consume(self, tenant_id: str, nonce: str, now: int) -> bool: ...


class StripeConnect(Protocol):
    def oauth_authorize_url(self, client_id: str, state: str, redirect_uri: str) -> str: ...

    def oauth_exchange(self, code: str) -> OAuthGrant: ...

    def oauth_deauthorize(self, client_id: str, account_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectSecrets:
    client_id: str
    state_key: str


def public_base_url(configured: str | None, request_domain: str) -> str:
    """Where browsers reach the API: the configured URL, else the host the request came to."""
    return configured.rstrip("/") if configured else f"https://{request_domain}"


def settings_location(base_url: str, tenant_id: str, *, return_url: str | None, app_shell: bool) -> str:
    """Where the OAuth callback sends the browser once Stripe is connected: the operator's return URL
    (``{tenant_id}`` replaced), else the app shell (JWT mode: the browser holds a token), else the
    settings page itself (IAM mode, behind the platform's backend)."""
    if return_url:
        location = return_url.replace("{tenant_id}", quote(tenant_id, safe=""))
    elif app_shell:
        location = f"{base_url}/settings?tenant={quote(tenant_id, safe='')}"
    else:
        location = f"{base_url}/tenants/{quote(tenant_id)}/stripe/settings"
    return location + ("&" if "?" in location else "?") + "connected=1"


def authorize_url(
    tenant_id: str,
    *,
    states: States,
    stripe: StripeConnect,
    secrets: ConnectSecrets,
    redirect_uri: str,
    now: int,
) -> dict[str, Any]:
    validate_tenant_id(tenant_id)
    token, state = oauth_state.issue(tenant_id, secrets.state_key, now)
    states.save(tenant_id, state.nonce, state.expires_at)
    return {"authorize_url": stripe.oauth_authorize_url(secrets.client_id, token, redirect_uri)}


def complete(
    query: dict[str, str],
    *,
    tenants: TenantRepository,
    states: States,
    stripe: StripeConnect,
    secrets: ConnectSecrets,
    now: int,
) -> str:
    """Finish the OAuth callback; returns the connected tenant's id, or raises (a bad state or code is
    ``InvalidInput``, Stripe's failure ``UpstreamUnavailable``, another tenant's account ``Conflict``)."""
    if query.get("error"):
        if query["error"] == "access_denied":
            raise InvalidInput(
                "Access to the Stripe account was not granted; nothing was changed.", "access_denied"
            )
        raise InvalidInput(f"Stripe reported {query['error']!r}; nothing was changed.", "stripe_oauth_error")
    state = oauth_state.verify(query.get("state"), secrets.state_key, now)
    if not states.consume(state.tenant_id, state.nonce, now):
        raise InvalidInput(
            "This authorization link was already used or has expired; start again.", "reused_state"
        )
    code = query.get("code")
    if not code:
        raise InvalidInput("Stripe sent no authorization code.", "missing_code")
    grant = stripe.oauth_exchange(code)
    tenant = tenants.get(state.tenant_id) or Tenant(tenant_id=state.tenant_id)
    connected = replace(
        tenant,
        connection=Connection(
            status="connected",
            mode="oauth",
            account_id=grant.account_id,
            livemode=grant.livemode,
            connected_at=now,
            scope=grant.scope or None,
        ),
    )
    try:
        tenants.save(connected, now)
    except AccountTaken:
        raise Conflict(
            "This Stripe account is already connected to another tenant; nothing was changed.",
            "account_taken",
        ) from None
    return state.tenant_id


def disconnect(
    tenant_id: str, *, tenants: TenantRepository, stripe: StripeConnect, secrets: ConnectSecrets, now: int
) -> dict[str, Any]:
    """Deauthorize with Stripe (OAuth) and mark the connection revoked; records stay, syncing stops."""
    validate_tenant_id(tenant_id)
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        raise Conflict("this tenant has no Stripe connection", "not_connected")
    if tenant.connection.mode == "oauth" and tenant.connection.account_id:
        stripe.oauth_deauthorize(secrets.client_id, tenant.connection.account_id)
    revoked = revoke(tenant)
    tenants.save(revoked, now)
    return status_document(revoked)


def revoke(tenant: Tenant) -> Tenant:
    return replace(tenant, connection=replace(tenant.connection, status="revoked"))


def connection_revoked(
    tenant_id: str, *, account: str | None, tenants: TenantRepository, now: int
) -> SyncResult:
    """``account.application.deauthorized``: the account removed us; stop syncing, keep the records.

    Only the account the tenant is connected to now can disconnect it: after a move to another
    account, the old one's deauthorization changes nothing (``account`` None: an older message that
    did not record its account)."""
    tenant = tenants.get(tenant_id)
    if tenant is None or not tenant.connection.is_connected:
        return SyncResult("unchanged", "not_connected")
    if account is not None and account != tenant.connection.account_id:
        return SyncResult("dropped", "account_mismatch")
    tenants.save(revoke(tenant), now)
    return SyncResult("applied", "deauthorized")
