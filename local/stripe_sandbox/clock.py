"""The sandbox's own clock (``/_sandbox/clock/advance``): moving it forward runs what falls due."""

from __future__ import annotations

from local.stripe_sandbox import discounts, subscriptions
from local.stripe_sandbox.core import Sandbox


def advance(sb: Sandbox, seconds: int) -> int:
    """Move time forward: trials end, periods renew (and bill), scheduled cancellations happen,
    repeating discounts expire. Each account is processed in order of due time."""
    sb.clock_offset += seconds
    now = sb.now()
    for account in list(sb.accounts.values()):
        for subscription in list(account.table("subscription").values()):
            subscriptions.renew(sb, account, subscription, now)
        for discount in list(account.table("discount").values()):
            if discount["end"] is not None and discount["end"] <= now and not discount.get("expired"):
                discounts.expire(sb, account, discount)
    return now
