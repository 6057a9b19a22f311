"""The sandbox's core: errors, accounts (one per API key), object tables, ids and the sandbox's time.

Every resource module works on the state kept here, always under ``Sandbox.lock``; objects are plain
dicts in Stripe's shapes, kept in their account's table by their ``object`` value.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]  # a Stripe object, or a request's decoded parameters


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        rate_limited_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.rate_limited_reason = rate_limited_reason  # a 429's Stripe-Rate-Limited-Reason

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


def not_found(kind: str, object_id: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param="id")


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass
class Account:
    id: str
    created: int  # when it was opened: nothing in it is older (``history.seed`` backdates it)
    key: str | None = None  # the secret key that owns it; None for accounts created by OAuth
    objects: dict[str, dict[str, Obj]] = field(default_factory=dict)  # kind -> id -> object
    events: list[Obj] = field(default_factory=list)
    endpoints: dict[str, Obj] = field(default_factory=dict)
    platform: str | None = None  # the platform account it is connected to (OAuth)
    failing_customers: set[str] = field(default_factory=set)

    def table(self, kind: str) -> dict[str, Obj]:
        return self.objects.setdefault(kind, {})

    def find(self, object_id: str) -> Obj | None:
        for table in self.objects.values():
            if object_id in table:
                return table[object_id]
        return None


@dataclass
class Delivery:
    due: float
    endpoint: Obj
    event: Obj
    attempt: int = 0


class Sandbox:
    """All accounts and their state; every public function of the resource modules runs under one
    lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.by_key: dict[str, Account] = {}
        self.clock_offset = 0
        self.codes: dict[str, Obj] = {}  # OAuth authorization codes
        self.settings: dict[str, Any] = {
            "rate_limit_per_second": None,  # the account's global limit (Stripe: 100 live, 25 test)
            "endpoint_rate_limit_per_second": None,  # each endpoint's (Stripe's default: 25)
            "endpoint_rate_limits": {},  # per endpoint, e.g. {"GET /v1/invoices": 50}
            "concurrency_limit": None,  # requests in flight per account
            "latency_ms": 0,
            "delivery_delay_ms": 0,
            "delivery_duplicate_ratio": 0.0,
            "delivery_reorder": False,
            "oauth_auto_approve": True,
            "fail_next_requests": 0,  # answer this many API requests with a 500 (an outage)
            # Share of webhook deliveries lost (the event stays listable at /v1/events).
            "delivery_drop_ratio": 0.0,
            # Dunning, as an account's "retry schedule" in Stripe's Billing settings: a failed
            # subscription payment is retried this many days after the previous attempt, and after
            # the last retry fails the subscription is canceled, marked unpaid, or left past_due.
            "payment_retry_days": [3, 5, 7],
            "after_failed_retries": "cancel",
        }
        self.outbox: list[Delivery] = []
        self.delivery_listeners: list[Callable[[], None]] = []
        self.stats: dict[str, int] = {}
        self._seq = itertools.count(1)
        self._pinned = threading.local()  # ``at``'s moment, per thread (a request pins only its own)

    # --- time -----------------------------------------------------------------------------------

    def now(self) -> int:
        """The sandbox's time (the wall clock plus ``/_sandbox/clock/advance``), or the moment pinned
        by ``at``: a test clock's frozen time, or a time falling due while a clock advances."""
        pinned: int | None = getattr(self._pinned, "moment", None)
        return pinned if pinned is not None else int(time.time()) + self.clock_offset

    @contextmanager
    def at(self, moment: int | None) -> Iterator[None]:
        """Everything inside happens at ``moment`` (None: the sandbox's own time)."""
        previous = getattr(self._pinned, "moment", None)
        self._pinned.moment = moment
        try:
            yield
        finally:
            self._pinned.moment = previous

    # --- identity -------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._seq):06d}{secrets.token_hex(5)}"

    def account_for_key(self, key: str) -> Account:
        if not key.startswith(("sk_test_", "rk_test_", "sk_live_", "rk_live_")):
            raise StripeError(
                401, "Invalid API Key provided", type_="invalid_request_error", code="api_key_invalid"
            )
        account = self.by_key.get(key)
        if account is None:
            account = Account(
                id="acct_" + hashlib.sha256(key.encode()).hexdigest()[:16], created=self.now(), key=key
            )
            self.by_key[key] = account
            self.accounts[account.id] = account
        return account

    def resolve(self, key: str, stripe_account: str | None) -> Account:
        caller = self.account_for_key(key)
        if not stripe_account:
            return caller
        connected = self.accounts.get(stripe_account)
        if connected is None or connected.platform != caller.id:
            raise StripeError(
                403,
                "The provided key does not have access to account "
                f"'{stripe_account}' (or that account does not exist).",
                type_="invalid_request_error",
                code="account_invalid",
            )
        return connected

    # --- objects --------------------------------------------------------------------------------

    def get(self, account: Account, kind: str, object_id: str) -> Obj:
        obj = account.table(kind).get(object_id)
        if obj is None:
            raise not_found(kind, object_id)
        return obj

    def put(self, account: Account, obj: Obj) -> Obj:
        account.table(obj["object"])[obj["id"]] = obj
        return obj

    # --- bulk history (benchmarks, large tests) -------------------------------------------------

    def seed(
        self, account: Account, count: int, start: int, end: int, unit_amount: int = 1000
    ) -> dict[str, int]:
        """``count`` customers with a year of history: see ``history.seed``."""
        # history builds on the resource modules, which build on this core.
        from local.stripe_sandbox import history  # noqa: PLC0415

        return history.seed(self, account, count, start, end, unit_amount)
