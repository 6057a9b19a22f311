"""The OAuth ``state``: signed, naming the tenant, expiring in minutes, used once.

``<payload>.<signature>`` in URL-safe base64; the payload holds the tenant, a random nonce and the
expiry. The signature proves we issued it; the nonce, stored with a TTL and consumed by a conditional
delete, makes it single-use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from revsync.errors import InvalidInput

STATE_TTL_SECONDS = 600


class StateError(InvalidInput):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


@dataclass(frozen=True, slots=True)
class OAuthState:
    tenant_id: str
    nonce: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(tenant_id: str, key: str, now: int, nonce: str | None = None) -> tuple[str, OAuthState]:
    state = OAuthState(
        tenant_id=tenant_id, nonce=nonce or secrets.token_urlsafe(16), expires_at=now + STATE_TTL_SECONDS
    )
    payload = _b64(json.dumps({"t": state.tenant_id, "n": state.nonce, "e": state.expires_at}).encode())
    signature = _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}", state


def verify(token: str | None, key: str, now: int) -> OAuthState:
    if not token or token.count(".") != 1 or not token.isascii():
        raise StateError("invalid_state", "the authorization state is missing or malformed")
    payload, signature = token.split(".")
    expected = _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        raise StateError("invalid_state", "the authorization state was not issued by us")
    try:
        data = json.loads(_unb64(payload))
        state = OAuthState(tenant_id=str(data["t"]), nonce=str(data["n"]), expires_at=int(data["e"]))
    except (ValueError, KeyError, TypeError, OverflowError):
        raise StateError("invalid_state", "the authorization state is malformed") from None
    if state.expires_at < now:
        raise StateError("expired_state", "the authorization took too long; start again")
    return state
