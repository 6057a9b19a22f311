"""StripeClient factory and the few calls the worker and tenant routes make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from revsync.domain.snapshots import Snapshot, parse_customer, parse_invoice, parse_subscription
from revsync.domain.tenancy import Tenant

# Retries are the SDK's own (idempotency keys, Retry-After, backoff with jitter); set explicitly.
MAX_NETWORK_RETRIES = 2


class StripeAccessError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def make_client(
    api_key: str, *, api_base: str | None, stripe_account: str | None = None
) -> stripe.StripeClient:
    base_addresses: Any = {"api": api_base, "connect": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        stripe_account=stripe_account,
        base_addresses=base_addresses,
        max_network_retries=MAX_NETWORK_RETRIES,
    )


@dataclass(frozen=True, slots=True)
class KeyCheck:
    account_id: str | None
    livemode: bool


def _as_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeAccounts:
    """Stripe as revsync's services use it. Credentials come from the tenant's connection."""

    def __init__(self, platform_key: Any, tenant_api_key: Any, api_base: str | None) -> None:
        # Callables, so secrets are read only when a call needs them.
        self._platform_key = platform_key
        self._tenant_api_key = tenant_api_key
        self._api_base = api_base

    def client_for(self, tenant: Tenant) -> stripe.StripeClient:
        connection = tenant.connection
        if connection.mode == "api_key" and connection.secret_name:
            return make_client(self._tenant_api_key(connection.secret_name), api_base=self._api_base)
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
            raise StripeAccessError("stripe_unavailable", f"Stripe error: {type(exc).__name__}") from None
        account_id: str | None = None
        try:
            account_id = client.v1.accounts.retrieve_current().id
        except stripe.StripeError:
            account_id = None  # restricted keys may not read the account: that is fine
        return KeyCheck(account_id=account_id, livemode="_live_" in api_key)

    def fetch(self, tenant: Tenant, snapshot: Snapshot) -> Snapshot:
        client = self.client_for(tenant)
        if snapshot["object"] == "customer":
            return parse_customer(_as_dict(client.v1.customers.retrieve(snapshot["id"])))
        if snapshot["object"] == "subscription":
            return parse_subscription(_as_dict(client.v1.subscriptions.retrieve(snapshot["id"])))
        return parse_invoice(_as_dict(client.v1.invoices.retrieve(snapshot["id"])))
