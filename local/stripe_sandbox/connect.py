"""Stripe Connect's OAuth: authorize (a single-use code for a new or hinted account), token (the
code exchanged: the account is connected to the platform), deauthorize."""

from __future__ import annotations

import secrets
import time

from local.stripe_sandbox.core import Account, OAuthError, Obj, Sandbox
from local.stripe_sandbox.events import emit


def authorize(sb: Sandbox, client_id: str, account_hint: str | None) -> str:
    """Approve a Connect authorization: returns a single-use code for a new (or hinted) account."""
    account = sb.accounts.get(account_hint) if account_hint else None
    if account is None:
        account = Account(id=account_hint or "acct_" + secrets.token_hex(8), created=sb.now())
        sb.accounts[account.id] = account
    code = "ac_" + secrets.token_hex(12)
    sb.codes[code] = {"client_id": client_id, "account": account.id, "expires": time.time() + 300}
    return code


def exchange(sb: Sandbox, platform: Account, code: str) -> Obj:
    grant = sb.codes.pop(code, None)
    if grant is None or grant["expires"] < time.time():
        raise OAuthError("invalid_grant", f"Authorization code does not exist: {code}")
    account = sb.accounts[grant["account"]]
    if account.platform not in (None, platform.id):
        raise OAuthError("invalid_grant", "This account is connected to another platform.")
    account.platform = platform.id
    return {
        "access_token": "sk_test_oauth_" + secrets.token_hex(8),
        "livemode": False,
        "refresh_token": "rt_" + secrets.token_hex(8),
        "scope": "read_write",
        "stripe_publishable_key": "pk_test_" + secrets.token_hex(8),
        "stripe_user_id": account.id,
        "token_type": "bearer",
    }


def deauthorize(sb: Sandbox, platform: Account, client_id: str, account_id: str) -> Obj:
    account = sb.accounts.get(account_id)
    if account is None or account.platform != platform.id:
        raise OAuthError("invalid_client", f"No such account connected: {account_id}")
    emit(
        sb,
        account,
        "account.application.deauthorized",
        {"id": client_id, "object": "application", "name": "revsync"},
    )
    account.platform = None
    return {"stripe_user_id": account_id}


def retrieve_account(sb: Sandbox, account: Account, params: Obj) -> Obj:
    """``GET /v1/account``: the account the key (or ``Stripe-Account``) reaches."""
    return {"id": account.id, "object": "account", "created": account.created, "charges_enabled": True}
