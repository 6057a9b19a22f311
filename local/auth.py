"""The local stack's JWT issuer and authorizer: what Cognito and API Gateway's JWT authorizer do in AWS.

``POST /_local/token {"tenant_id": "acme"}`` (or ``{"scope": "revsync/admin"}``) answers
``{"access_token": ...}``: an RS256 token signed by a key made when the stack starts. An admin route
then checks the bearer token as the HTTP API authorizer does (signature, issuer, audience, expiry)
and hands the handler the claims in ``requestContext.authorizer.jwt``; anything else is a 401.
The tenant check itself is the handler's (revsync.domain.access), exactly as in AWS.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from revsync.domain.access import OPERATOR_SCOPE
from revsync.domain.routing import TenantError, validate_tenant_id
from revsync.errors import InvalidInput

ISSUER = "http://localhost/_local"
AUDIENCE = "revsync-local"
TENANT_CLAIM = "tenant_id"  # the template's JwtTenantClaim default
TOKEN_SECONDS = 3600
LOGIN_PATH = "/_local/login"


class TokenRequestError(InvalidInput):
    """A ``/_local/token`` body that asks for no tenant and no known scope."""


class LocalIssuer:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex})
        self._clock = clock

    def issue(self, body: Any, issued_at: float | None = None) -> str:
        """An access token for ``{"tenant_id": ...}`` and/or ``{"scope": "revsync/admin"}``."""
        if not isinstance(body, dict):
            raise TokenRequestError("body must be a JSON object")
        tenant, scope = body.get("tenant_id"), body.get("scope")
        if tenant is None and scope is None:
            raise TokenRequestError("give tenant_id or scope")
        claims: dict[str, Any] = {}
        if tenant is not None:
            try:
                claims[TENANT_CLAIM] = validate_tenant_id(tenant)
            except TenantError as exc:
                raise TokenRequestError(str(exc)) from None
        if scope is not None:
            if scope != OPERATOR_SCOPE:
                raise TokenRequestError(f"the only scope is {OPERATOR_SCOPE}")
            claims["scope"] = scope
        now = int(self._clock() if issued_at is None else issued_at)
        claims.update(
            iss=ISSUER,
            aud=AUDIENCE,
            sub=claims.get(TENANT_CLAIM) or "operator",
            iat=now,
            exp=now + TOKEN_SECONDS,
            jti=uuid.uuid4().hex,
        )
        return jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key)

    def authorizer_context(self, authorization: str | None) -> dict[str, Any] | None:
        """``requestContext.authorizer`` for a valid bearer token, None when API Gateway would 401."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else authorization.strip()
        try:
            decoded = jwt.decode(token, self._key, algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                now=lambda: int(self._clock()),
                iss={"essential": True, "value": ISSUER},
                aud={"essential": True, "value": AUDIENCE},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError, TypeError):
            return None
        claims = decoded.claims
        scopes = str(claims["scope"]).split() if "scope" in claims else None
        # API Gateway passes every claim as a string.
        return {"jwt": {"claims": {k: str(v) for k, v in claims.items()}, "scopes": scopes}}


def login_page(return_to: str) -> str:
    """The local stand-in for a hosted login: pick a tenant, get a token, go back with it.

    Only a path on this stack is a place to return to (no open redirect).
    """
    if not return_to.startswith("/") or return_to.startswith("//"):
        return_to = "/settings"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Local login</title></head>
<body><main><h1>Local login</h1>
<form id="login"><label for="tenant">Tenant</label> <input id="tenant" name="tenant" required>
<button type="submit">Log in</button></form><p id="message" role="status"></p></main>
<script>
const returnTo = {json.dumps(return_to)};
document.getElementById("login").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const response = await fetch("/_local/token", {{method: "POST",
    headers: {{"content-type": "application/json"}},
    body: JSON.stringify({{tenant_id: document.getElementById("tenant").value}})}});
  const data = await response.json();
  if (!response.ok) {{ document.getElementById("message").textContent = data.message; return; }}
  location.href = returnTo.split("#")[0] + "#access_token=" + encodeURIComponent(data.access_token);
}});
</script></body></html>"""
