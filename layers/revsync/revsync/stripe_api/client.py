"""StripeClient factory and the few calls the worker and tenant routes make."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import stripe

from revsync.domain.ratelimits import list_endpoint
from revsync.domain.snapshots import (
    Coupon,
    InvoiceLineItems,
    Snapshot,
    SubscriptionItem,
    parse_coupon,
    parse_line_items,
    parse_object,
    parse_subscription_item,
    unresolved_coupon_ids,
    with_all_items,
    with_coupons,
)
from revsync.domain.tenancy import Tenant
from revsync.errors import CursorRejected, Deferred
from revsync.stripe_api.pacing import Pacer, RequestBudget, call_paced, call_within_budget
from revsync.stripe_api.results import KeyCheck, OAuthGrant, StripeAccessError, StripeUnavailable

T = TypeVar("T")

# Retries are the SDK's own (idempotency keys, backoff with jitter: 0.5 s, then 1 s); set explicitly.
MAX_NETWORK_RETRIES = 2
# Per attempt, as requests applies them: connecting, then each read (the SDK's default is 80 s for
# both). (1 + retries) x (connect + read) plus the backoff fits the tenant API's 15 s.
CONNECT_TIMEOUT_SECONDS = 1
READ_TIMEOUT_SECONDS = 3
# Discounts are ids in a subscription unless expanded (4 levels at most, so item discounts' coupons
# stay ids and are read through the coupon cache).
SUBSCRIPTION_EXPANSIONS = ["discounts", "items.data.discounts"]
# What ``fetch`` reads, by kind: the SDK's service, its endpoint (for the budget) and what it expands: a
# customer's default payment method (its card's expiry), a schedule's phases' prices (their MRR).
FETCHED: dict[str, tuple[Callable[[stripe.StripeClient], Any], str, list[str]]] = {
    "customer": (
        lambda c: c.v1.customers,
        "GET /v1/customers/{id}",
        ["invoice_settings.default_payment_method"],
    ),
    "subscription": (lambda c: c.v1.subscriptions, "GET /v1/subscriptions/{id}", SUBSCRIPTION_EXPANSIONS),
    "invoice": (lambda c: c.v1.invoices, "GET /v1/invoices/{id}", []),
    "credit_note": (lambda c: c.v1.credit_notes, "GET /v1/credit_notes/{id}", []),
    "charge": (lambda c: c.v1.charges, "GET /v1/charges/{id}", []),
    "subscription_schedule": (
        lambda c: c.v1.subscription_schedules,
        "GET /v1/subscription_schedules/{id}",
        ["phases.items.price"],
    ),
    "payment_method": (lambda c: c.v1.payment_methods, "GET /v1/payment_methods/{id}", []),
}


def make_client(
    api_key: str, *, api_base: str | None, stripe_account: str | None = None
) -> stripe.StripeClient:
    base_addresses: Any = {"api": api_base, "connect": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        stripe_account=stripe_account,
        base_addresses=base_addresses,
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)),
    )


def authorize_url(client: stripe.StripeClient, client_id: str, state: str, redirect_uri: str) -> str:
    """Stripe Connect's authorize URL for a read-write connection (built by the SDK, no request)."""
    params: Any = {
        "client_id": client_id,
        "response_type": "code",
        "scope": "read_write",
        "state": state,
        "redirect_uri": redirect_uri,
    }
    return str(client.oauth.authorize_url(params=params))


def _as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeAccounts:
    """Stripe as revsync's services use it. Credentials come from the tenant's connection."""

    def __init__(
        self,
        platform_key: Callable[[], str],
        tenant_api_key: Callable[[Tenant], str],
        api_base: str | None,
        budget: Callable[[str, float], RequestBudget] | None = None,
        rate_limits: tuple[float, float] = (25.0, 100.0),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Callables, so secrets are read only when a call needs them.
        self._platform_key = platform_key
        self._tenant_api_key = tenant_api_key
        self._api_base = api_base
        self._coupon_cache: dict[tuple[str, str], Coupon] = {}
        # ``budget(account, rate)``: the account's shared request budget (None: unpaced).
        self._budget = budget
        self._rate_limits = rate_limits
        self._clock, self._sleep = clock, sleep

    def _read(self, tenant: Tenant, endpoint: str, request: Callable[[], T]) -> T:
        """A single read for the write path, within its endpoint's and the account's budgets."""
        if self._budget is None:
            return request()
        budget = self.budget_for(tenant)
        return call_within_budget(budget, endpoint, request, clock=self._clock, sleep=self._sleep)

    def budget_for(self, tenant: Tenant) -> RequestBudget:
        """The account's request budget (the global limit of its mode, live or test)."""
        connection = tenant.connection
        rate = self._rate_limits[1] if connection.livemode else self._rate_limits[0]
        if self._budget is None:
            raise RuntimeError("this StripeAccounts has no request budget")
        return self._budget(connection.account_id or f"tenant-{tenant.tenant_id}", rate)

    def client_for(self, tenant: Tenant) -> stripe.StripeClient:
        connection = tenant.connection
        if connection.mode == "api_key":
            return make_client(self._tenant_api_key(tenant), api_base=self._api_base)
        return make_client(
            self._platform_key(), api_base=self._api_base, stripe_account=connection.account_id
        )

    def check_api_key(self, api_key: str) -> KeyCheck:
        """A cheap read the key needs anyway (list one customer), then the account id if readable."""
        client = make_client(api_key, api_base=self._api_base)
        try:
            client.v1.customers.list(params={"limit": 1})
        except stripe.AuthenticationError:
            raise StripeAccessError("invalid_api_key", "Stripe rejected the API key") from None
        except stripe.PermissionError:
            raise StripeAccessError("insufficient_permissions", "the key cannot read customers") from None
        except stripe.StripeError as exc:
            raise StripeUnavailable(f"Stripe error: {type(exc).__name__}") from None
        account_id: str | None = None
        try:
            account_id = client.v1.accounts.retrieve_current().id
        except stripe.StripeError:
            account_id = None  # restricted keys may not read the account: that is fine
        return KeyCheck(account_id=account_id, livemode="_live_" in api_key)

    def account_created(self, tenant: Tenant) -> int | None:
        """The account's ``created`` (``GET /v1/account``: for Connect the connected account, through
        ``Stripe-Account``), one read within the account's budget. None when Stripe leaves it out
        (the SDK's ``Account.created`` is optional: some account types have none), the key may not
        read the account (a restricted key) or the budget has no slot soon: the backfill then plans
        as if it were unknown (it only saves requests) rather than wait or fail."""
        client = self.client_for(tenant)
        try:
            account = self._read(tenant, "GET /v1/account", client.v1.accounts.retrieve_current)
        except (stripe.PermissionError, stripe.InvalidRequestError, Deferred):
            return None
        created = _as_dict(account).get("created")
        return int(created) if created is not None else None

    def coupons(self, tenant: Tenant, coupon_ids: set[str]) -> dict[str, Coupon]:
        """Coupons by id; a coupon's terms never change, so each is read once per process."""
        found: dict[str, Coupon] = {}
        client: stripe.StripeClient | None = None
        for coupon_id in sorted(coupon_ids):
            key = (tenant.tenant_id, coupon_id)
            if key not in self._coupon_cache:
                client = client or self.client_for(tenant)
                try:
                    retrieved = self._read(
                        tenant,
                        "GET /v1/coupons/{id}",
                        lambda: client.v1.coupons.retrieve(coupon_id),  # noqa: B023
                    )
                    parsed = parse_coupon(_as_dict(retrieved))
                except stripe.InvalidRequestError as exc:
                    if exc.http_status != 404:
                        raise
                    parsed = None  # a deleted coupon: its discounts stay unresolved and count 0
                if parsed is None:
                    continue
                self._coupon_cache[key] = parsed
            found[coupon_id] = self._coupon_cache[key]
        return found

    def _list_all(
        self, tenant: Tenant, path: str, endpoint: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Every page of a list, each page one budgeted read."""
        client = self.client_for(tenant)
        found: list[dict[str, Any]] = []
        query = {**params, "limit": 100}
        while True:
            page: dict[str, Any] = self._read(
                tenant,
                endpoint,
                lambda: client.raw_request("get", path, **query),
            ).data
            found.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                return found
            query["starting_after"] = page["data"][-1]["id"]

    def list_events(
        self, tenant: Tenant, *, created_gte: int, types: tuple[str, ...], starting_after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (newest first, 100) of the account's events, within its request budget."""
        client = self.client_for(tenant)
        params: dict[str, Any] = {"limit": 100, "created": {"gte": created_gte}, "types": list(types)}
        if starting_after:
            params["starting_after"] = starting_after
        try:
            page: dict[str, Any] = self._read(
                tenant, list_endpoint("events"), lambda: client.raw_request("get", "/v1/events", **params)
            ).data
        except stripe.InvalidRequestError as exc:
            if starting_after and exc.param == "starting_after":
                # The event the cursor names is gone (past the 30 days Stripe keeps events).
                raise CursorRejected(str(exc.user_message or "cursor rejected")) from None
            raise
        return list(page["data"]), bool(page["has_more"])

    def subscription_items(self, tenant: Tenant, subscription_id: str) -> list[SubscriptionItem]:
        raw = self._list_all(
            tenant, "/v1/subscription_items", "GET /v1/subscription_items", {"subscription": subscription_id}
        )
        return [parse_subscription_item(item) for item in raw]

    def invoice_lines(self, tenant: Tenant, invoice_id: str) -> InvoiceLineItems:
        lines = self._list_all(tenant, f"/v1/invoices/{invoice_id}/lines", "GET /v1/invoices/{id}/lines", {})
        return parse_line_items(lines)

    def list_page(
        self, tenant: Tenant, kind: str, params: dict[str, Any], pacer: Pacer
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a list (``customers``, ``subscriptions``, ``invoices``) as plain dicts.

        ``raw_request`` keeps the SDK's auth, retries and errors but skips building a StripeObject
        per item, which is most of a page's CPU time and all of it thrown away here.
        """
        client = self.client_for(tenant)
        response = call_paced(
            pacer, list_endpoint(kind), lambda: client.raw_request("get", f"/v1/{kind}", **params)
        )
        page: dict[str, Any] = response.data
        return list(page["data"]), bool(page["has_more"])

    def sample_customers(self, tenant: Tenant, limit: int = 100) -> list[dict[str, Any]]:
        """The newest customers (one list request), as plain dicts."""
        response = self.client_for(tenant).raw_request("get", "/v1/customers", limit=limit)
        return list(response.data["data"])

    # --- Connect (OAuth) -------------------------------------------------------------------------

    def oauth_authorize_url(self, client_id: str, state: str, redirect_uri: str) -> str:
        client = make_client(self._platform_key(), api_base=self._api_base)
        return authorize_url(client, client_id, state, redirect_uri)

    def oauth_exchange(self, code: str) -> OAuthGrant:
        """Exchange an authorization code; only the account id, mode and scope are kept (no token:
        the platform key with ``Stripe-Account`` reaches the account)."""
        client = make_client(self._platform_key(), api_base=self._api_base)
        try:
            token = client.oauth.token(params={"grant_type": "authorization_code", "code": code})
        except stripe.oauth_error.OAuthError as exc:
            raise StripeAccessError("invalid_code", "Stripe did not accept the authorization code") from exc
        except stripe.StripeError as exc:
            raise StripeUnavailable(f"Stripe error: {type(exc).__name__}") from exc
        return OAuthGrant(
            account_id=str(token.stripe_user_id),
            livemode=bool(token.livemode),
            scope=str(getattr(token, "scope", "") or ""),
        )

    def oauth_deauthorize(self, client_id: str, account_id: str) -> None:
        client = make_client(self._platform_key(), api_base=self._api_base)
        # An OAuth error here means it is already disconnected on Stripe's side: nothing to undo.
        with contextlib.suppress(stripe.oauth_error.OAuthError):
            client.oauth.deauthorize(params={"client_id": client_id, "stripe_user_id": account_id})

    def test_clock_time(self, tenant: Tenant, clock_id: str) -> int | None:
        client = self.client_for(tenant)
        try:
            test_clock = self._read(
                tenant,
                "GET /v1/test_helpers/test_clocks/{id}",
                lambda: client.v1.test_helpers.test_clocks.retrieve(clock_id),
            )
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        return int(test_clock.frozen_time)

    def fetch(self, tenant: Tenant, kind: str, object_id: str) -> Snapshot | None:
        if kind not in FETCHED:
            raise ValueError(f"cannot fetch a {kind}")
        service, endpoint, expand = FETCHED[kind]
        client = self.client_for(tenant)
        params: Any = {"expand": expand} if expand else None
        try:
            read = self._read(tenant, endpoint, lambda: service(client).retrieve(object_id, params=params))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        found = parse_object(_as_dict(read))
        if found is None:
            return None  # no customer's any more (a charge, a payment method): nothing of revsync's
        snapshot = found
        if snapshot["object"] == "subscription" and snapshot.get("items_complete") is False:
            snapshot = with_all_items(snapshot, self.subscription_items(tenant, snapshot["id"]))
        missing = unresolved_coupon_ids(snapshot)
        return with_coupons(snapshot, self.coupons(tenant, missing)) if missing else snapshot
