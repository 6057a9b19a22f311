"""Webhook signatures, checked against the stripe SDK's own implementation as the oracle."""

from __future__ import annotations

import time

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st
from revsync.domain import signature

SECRET = "whsec_test_secret"
NOW = 1_750_000_000


def _stripe_accepts(payload: bytes, header: str, secret: str, now: int) -> bool:
    """stripe.WebhookSignature checks against the real clock; shift our header's timestamp to it."""
    try:
        stripe.WebhookSignature.verify_header(payload.decode(), header, secret, tolerance=300)
    except stripe.SignatureVerificationError:
        return False
    return True


@given(payload=st.binary(min_size=0, max_size=512).map(lambda b: b.hex().encode()))
def test_our_signature_is_the_one_stripe_verifies(payload: bytes) -> None:
    now = int(time.time())
    header = signature.sign_header(SECRET, now, payload)
    assert _stripe_accepts(payload, header, SECRET, now)
    assert signature.verify(payload, header, [SECRET], now) == now


def test_stripe_generated_signature_is_accepted() -> None:
    now = int(time.time())
    payload = b'{"id": "evt_1", "object": "event"}'
    expected = stripe.WebhookSignature._compute_signature(f"{now}.{payload.decode()}", SECRET)
    assert signature.verify(payload, f"t={now},v1={expected}", [SECRET], now) == now


def test_several_v1_signatures_and_several_secrets() -> None:
    payload = b"{}"
    header = f"t={NOW},v1={'0' * 64},v1={signature.compute_signature('whsec_new', NOW, payload)},v0=ignored"
    assert signature.verify(payload, header, ["whsec_old", "whsec_new"], NOW) == NOW


@pytest.mark.parametrize(
    ("header", "now", "code"),
    [
        (None, NOW, "missing_signature"),
        ("", NOW, "missing_signature"),
        ("v1=abc", NOW, "bad_signature_header"),
        ("t=abc,v1=abc", NOW, "bad_signature_header"),
        (f"t={NOW}", NOW, "bad_signature_header"),
        (f"t={NOW},v1=deadbeef", NOW, "bad_signature"),
        (f"t={NOW - 301},v1=x", NOW, "signature_expired"),
        (f"t={NOW + 301},v1=x", NOW, "signature_in_future"),
    ],
)
def test_rejections(header: str | None, now: int, code: str) -> None:
    with pytest.raises(signature.SignatureError) as caught:
        signature.verify(b"{}", header, [SECRET], now)
    assert caught.value.code == code


def test_tolerance_edges_are_inclusive() -> None:
    for stamp in (NOW - 300, NOW + 300):
        assert signature.verify(b"{}", signature.sign_header(SECRET, stamp, b"{}"), [SECRET], NOW) == stamp


def test_tampered_payload_fails() -> None:
    header = signature.sign_header(SECRET, NOW, b'{"amount": 100}')
    with pytest.raises(signature.SignatureError):
        signature.verify(b'{"amount": 900}', header, [SECRET], NOW)


def test_empty_secret_never_matches() -> None:
    header = signature.sign_header("", NOW, b"{}")
    with pytest.raises(signature.SignatureError):
        signature.verify(b"{}", header, [""], NOW)
