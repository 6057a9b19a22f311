"""Secrets through Powertools Parameters (cached in the process, so a webhook costs no secret read)."""

from __future__ import annotations

import json
import threading
from typing import Any

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from revsync.domain.routing import TenantRoute
from revsync.infra import aws
from revsync.settings import get_settings

_MAX_AGE_SECONDS = 300


_PROVIDERS_LOCK = threading.Lock()


def use_timeouts() -> None:
    """Powertools' default SSM and Secrets Manager providers, with revsync's client timeouts (theirs
    are botocore's: 60 s reads, retried), created on first use as Powertools would. Once per process
    even when several threads ask at once (the local stack runs handlers side by side): each one
    builds a boto3 client, which is the slow part."""
    if "ssm" in DEFAULT_PROVIDERS and "secrets" in DEFAULT_PROVIDERS:
        return
    with _PROVIDERS_LOCK:
        if "ssm" not in DEFAULT_PROVIDERS:
            DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider(boto_config=aws.CONFIG)
        if "secrets" not in DEFAULT_PROVIDERS:
            DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(boto_config=aws.CONFIG)


def _split(value: str) -> list[str]:
    # A comma-separated value holds several secrets while one is rolled.
    return [part.strip() for part in value.split(",") if part.strip()]


class PlatformSecrets:
    """Secrets of the platform (its Stripe key, its Connect webhook endpoint), from SSM."""

    def webhook_secrets(self) -> list[str]:
        use_timeouts()
        value = parameters.get_parameter(
            get_settings().webhook_secret_param, decrypt=True, max_age=_MAX_AGE_SECONDS
        )
        return _split(str(value))

    def connect_client_id(self) -> str:
        """The platform's Connect client id (``ca_…``), for OAuth."""
        use_timeouts()
        value = parameters.get_parameter(
            get_settings().connect_client_id_param, decrypt=True, max_age=_MAX_AGE_SECONDS
        )
        return str(value)

    def state_signing_key(self) -> str:
        use_timeouts()
        value = parameters.get_parameter(
            get_settings().state_key_param, decrypt=True, max_age=_MAX_AGE_SECONDS
        )
        return str(value)

    def stripe_secret_key(self) -> str:
        use_timeouts()
        value = parameters.get_parameter(
            get_settings().stripe_secret_key_param, decrypt=True, max_age=_MAX_AGE_SECONDS
        )
        return str(value)


class TenantSecrets:
    """An API-key tenant's restricted key and webhook secret, one Secrets Manager secret per tenant."""

    def name(self, tenant_id: str) -> str:
        return f"{get_settings().tenant_secret_prefix}{tenant_id}"

    def read(self, secret_name: str) -> dict[str, Any]:
        use_timeouts()
        value = parameters.get_secret(secret_name, transform="json", max_age=_MAX_AGE_SECONDS)
        return value if isinstance(value, dict) else {}

    def webhook_secrets(self, secret_name: str) -> list[str]:
        return _split(str(self.read(secret_name).get("webhook_secret", "")))

    def write(self, tenant_id: str, api_key: str, webhook_secret: str) -> str:
        """Create or update the tenant's secret; returns its name."""
        name = self.name(tenant_id)
        use_timeouts()
        parameters.set_secret(name, json.dumps({"api_key": api_key, "webhook_secret": webhook_secret}))
        # The next read must see the new value, not the cached old one. (Powertools' clear_caches()
        # would drop the providers, and with them their clients, to be built again.)
        DEFAULT_PROVIDERS["secrets"].clear_cache()
        return name


class WebhookSecretSource:
    """The receiver's view: which secrets may sign a webhook for a route."""

    def __init__(self) -> None:
        self._platform, self._tenants = PlatformSecrets(), TenantSecrets()

    def platform(self) -> list[str]:
        return self._platform.webhook_secrets()

    def tenant(self, route: TenantRoute) -> list[str]:
        return self._tenants.webhook_secrets(route.secret_name) if route.secret_name else []
