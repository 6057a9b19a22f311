"""What the Stripe adapter answers the tenant routes with, without the SDK: the tenant API builds its
Stripe at the first call (``revsync.bootstrap.tenant_api``), so its cold start does not load it."""

from __future__ import annotations

from dataclasses import dataclass

from revsync.errors import InvalidInput, UpstreamUnavailable


@dataclass(frozen=True, slots=True)
class KeyCheck:
    account_id: str | None
    livemode: bool


@dataclass(frozen=True, slots=True)
class OAuthGrant:
    account_id: str
    livemode: bool
    scope: str


class StripeAccessError(InvalidInput):
    """Stripe refused what the caller gave (an API key, an authorization code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


class StripeUnavailable(UpstreamUnavailable):
    """Stripe failed or answered unexpectedly: not the caller's fault; they may try again."""

    code = "stripe_unavailable"
