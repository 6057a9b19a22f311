"""Stripe's rate limits, as its rate-limit page states them (https://docs.stripe.com/rate-limits).

Per account: 100 requests/s live and 25 in test (the global limit); inside it, every endpoint (each
named operation: ``GET /v1/invoices`` and ``GET /v1/invoices/{id}`` are two) 25/s unless Stripe
raised it for the account; a concurrency limiter too. A 429's ``Stripe-Rate-Limited-Reason`` names
the limiter: ``global-rate``, ``global-concurrency``, ``endpoint-rate``, ``endpoint-concurrency`` or
``resource-specific``.
"""

from __future__ import annotations

DEFAULT_ENDPOINT_RATE = 25.0
GLOBAL_REASONS = ("global-rate", "global-concurrency")


def list_endpoint(kind: str) -> str:
    """The endpoint a list of ``kind`` (customers, subscriptions, invoices, events) counts against."""
    return f"GET /v1/{kind}"
