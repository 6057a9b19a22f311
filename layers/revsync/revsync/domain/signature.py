"""Stripe webhook signature verification, sans I/O.

Implemented with ``hmac`` rather than ``stripe.WebhookSignature`` because importing the stripe SDK
on the receiver's cold-start path costs more than the receiver's whole import budget. The scheme is
Stripe's documented one: ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]`` where each ``v1`` is
HMAC-SHA256 over ``"<ts>." + raw body``. Tests check it against the stripe SDK.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from revsync.errors import InvalidInput

DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(InvalidInput):
    """The request is not provably from Stripe. ``code`` is safe to return to the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


def compute_signature(secret: str, timestamp: int, payload: bytes) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign_header(secret: str, timestamp: int, payload: bytes) -> str:
    """The header Stripe would send; used by the local sandbox and tests."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, payload)}"


def _parse_header(header: str) -> tuple[int, list[bytes]]:
    timestamp: int | None = None
    signatures: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not (value.isascii() and value.isdigit()):  # int() also takes "٣" and "1_0"
                raise SignatureError("bad_signature_header", "timestamp is not an integer")
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("bad_signature_header", "timestamp is not an integer") from None
        elif key == "v1":
            signatures.append(value.encode("utf-8", "surrogatepass"))
    if timestamp is None:
        raise SignatureError("bad_signature_header", "no timestamp in Stripe-Signature")
    if not signatures:
        raise SignatureError("bad_signature_header", "no v1 signature in Stripe-Signature")
    return timestamp, signatures


def verify(
    payload: bytes,
    header: str | None,
    secrets: Iterable[str],
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check ``header`` signs ``payload`` with one of ``secrets``; return the signed timestamp.

    Several ``v1`` values (Stripe sends one per active secret while a secret is rolled) and several
    of our secrets (while we roll ours) are both accepted. Timestamps outside ``now ± tolerance``
    are rejected: too old is a replay, far in the future is a forgery or a broken clock.
    """
    if not header:
        raise SignatureError("missing_signature", "Stripe-Signature header is missing")
    timestamp, candidates = _parse_header(header)
    if timestamp < now - tolerance:
        raise SignatureError("signature_expired", "signature timestamp is outside the tolerance")
    if timestamp > now + tolerance:
        raise SignatureError("signature_in_future", "signature timestamp is in the future")
    for secret in secrets:
        if not secret:
            continue
        expected = compute_signature(secret, timestamp, payload).encode()
        # Bytes, not str: compare_digest raises on non-ASCII str, and the header is attacker-chosen.
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return timestamp
    raise SignatureError("bad_signature", "no signature matches the payload")
