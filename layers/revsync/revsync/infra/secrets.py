"""Platform and tenant secrets, cached in the process for five minutes (a webhook costs no secret read).

An API-key tenant's restricted key and webhook secret are sealed: each encrypted with the stack's
customer-managed KMS key (``kms:Encrypt`` itself: the values are far under its 4 KB limit, so no data
key and no crypto library on the receiver's cold-start path), the tenant and the secret's kind as
encryption context, and kept on the tenant item, where the receiver reads its route anyway. One key
($1 a month) for all tenants instead of a Secrets Manager secret each ($0.40 a month): see
``bench/tenant_secrets_cost.py``. A connection saved before that names its Secrets Manager secret:
read as before until the next rotation (``PUT .../connection``) seals the new values and deletes it.

Read with boto3's SSM and Secrets Manager clients (``revsync.infra.aws``: revsync's timeouts) rather
than Powertools Parameters, which did the same: importing that package loads all its providers
(AppConfig's and DynamoDB's included) and cost the receiver 4 ms of cold start, measured on the
built artifact (1.26x → 1.23x ``import boto3`` in one run, budget 1.25x). revsync needs three calls
and a max-age cache (``revsync.infra.cache``, which the worker's tenant reads use too).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from revsync.domain.routing import SealedSecrets, TenantRoute
from revsync.errors import RevsyncError, SettingsError
from revsync.infra import aws
from revsync.infra.cache import MaxAgeCache

if TYPE_CHECKING:  # the receiver does not import it (it defines dataclasses: cold start)
    from revsync.domain.tenancy import Tenant

MAX_AGE_SECONDS = 300


def _split(value: str) -> list[str]:
    # A comma-separated value holds several secrets while one is rolled.
    return [part.strip() for part in value.split(",") if part.strip()]


class PlatformSecrets:
    """Secrets of the platform (its Stripe key, its Connect webhook endpoint, its OAuth client id and
    state key), from the SSM parameters named (a function is given only those it reads)."""

    def __init__(
        self,
        *,
        webhook_secret: str | None = None,
        stripe_secret_key: str | None = None,
        connect_client_id: str | None = None,
        state_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._names = {
            "webhook_secret": webhook_secret,
            "stripe_secret_key": stripe_secret_key,
            "connect_client_id": connect_client_id,
            "state_key": state_key,
        }
        self._cache: MaxAgeCache[str, str] = MaxAgeCache(MAX_AGE_SECONDS, clock)

    def _parameter(self, secret: str) -> str:
        """An SSM SecureString (or String) parameter's value, decrypted."""
        name = self._names[secret]
        if name is None:
            raise SettingsError(f"this function's settings name no {secret} parameter")

        def read() -> str:
            return aws.ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]

        return self._cache.get(name, read)

    def webhook_secrets(self) -> list[str]:
        return _split(self._parameter("webhook_secret"))

    def connect_client_id(self) -> str:
        """The platform's Connect client id (``ca_…``), for OAuth."""
        return self._parameter("connect_client_id")

    def state_signing_key(self) -> str:
        return self._parameter("state_key")

    def stripe_secret_key(self) -> str:
        return self._parameter("stripe_secret_key")


class SealedSecretError(RevsyncError):
    """KMS refused a tenant's sealed secret (sealed for another tenant or kind, or with another key),
    or the connection (or the function) has none."""


API_KEY, WEBHOOK_SECRET = "api_key", "webhook_secret"


def _context(tenant_id: str, kind: str) -> dict[str, str]:
    # KMS binds a ciphertext to its encryption context: it decrypts only for the same tenant and
    # kind. The template's grants are conditioned on ``secret`` (the receiver opens webhook secrets).
    return {"tenant_id": tenant_id, "secret": kind}


class TenantSecrets:
    """An API-key tenant's restricted key and webhook secret: sealed with the stack's KMS key
    (``key``: its ARN) on the tenant item, or, for a connection saved before that, in the Secrets
    Manager secret it names. Values read are kept for five minutes."""

    def __init__(self, key: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = key
        self._cache: MaxAgeCache[str, str] = MaxAgeCache(MAX_AGE_SECONDS, clock)

    def _unseal(self, tenant_id: str, kind: str, sealed: bytes) -> str:
        """A sealed secret, decrypted at most once per max-age. The cache key holds the ciphertext's
        digest, so a rotated secret (a new ciphertext) is read at once, and its tenant and kind, so a
        ciphertext copied to another tenant's item is still put to KMS, which refuses it."""

        def read() -> str:
            client = aws.kms()
            try:
                opened = client.decrypt(
                    CiphertextBlob=sealed, KeyId=self._key, EncryptionContext=_context(tenant_id, kind)
                )
            except (client.exceptions.InvalidCiphertextException, client.exceptions.IncorrectKeyException):
                raise SealedSecretError(f"the {kind} sealed for tenant {tenant_id} does not open") from None
            return opened["Plaintext"].decode()

        return self._cache.get(f"kms:{tenant_id}:{kind}:{hashlib.sha256(sealed).hexdigest()}", read)

    def seal(self, tenant_id: str, api_key: str, webhook_secret: str) -> SealedSecrets:
        client, key = aws.kms(), self._key

        def encrypt(kind: str, value: str) -> bytes:
            encrypted = client.encrypt(
                KeyId=key, Plaintext=value.encode(), EncryptionContext=_context(tenant_id, kind)
            )
            return encrypted["CiphertextBlob"]

        return SealedSecrets(encrypt(API_KEY, api_key), encrypt(WEBHOOK_SECRET, webhook_secret))

    def api_key(self, tenant: Tenant) -> str:
        connection = tenant.connection
        if connection.sealed is not None:
            return self._unseal(tenant.tenant_id, API_KEY, connection.sealed.api_key)
        if connection.secret_name:
            return str(self.read(connection.secret_name)["api_key"])
        raise SealedSecretError(f"tenant {tenant.tenant_id} has no API key stored")

    def webhook_secrets(self, route: TenantRoute) -> list[str]:
        if route.sealed_webhook_secret is not None:
            return _split(self._unseal(route.tenant_id, WEBHOOK_SECRET, route.sealed_webhook_secret))
        if route.secret_name:
            return _split(str(self.read(route.secret_name).get("webhook_secret", "")))
        return []

    def read(self, secret_name: str) -> dict[str, Any]:
        """A Secrets Manager secret of a connection saved before sealed secrets."""

        def read() -> str:
            return aws.secretsmanager().get_secret_value(SecretId=secret_name)["SecretString"]

        value = json.loads(self._cache.get(f"secret:{secret_name}", read))
        return value if isinstance(value, dict) else {}

    def retire(self, secret_name: str) -> None:
        """Delete a Secrets Manager secret whose connection was sealed since. At once, without a
        recovery window: its values were replaced by the rotation (a rotated key is often one that
        leaked), so nothing should read them again, and a retired key kept restorable for 7 to 30 days
        helps no one. Deleting a secret that is already gone succeeds (AWS and moto alike)."""
        aws.secretsmanager().delete_secret(SecretId=secret_name, ForceDeleteWithoutRecovery=True)
        self._cache.forget(f"secret:{secret_name}")


class WebhookSecretSource:
    """The receiver's view: which secrets may sign a webhook for a route."""

    def __init__(self, platform: PlatformSecrets, tenants: TenantSecrets) -> None:
        self._platform, self._tenants = platform, tenants

    def platform(self) -> list[str]:
        return self._platform.webhook_secrets()

    def tenant(self, route: TenantRoute) -> list[str]:
        return self._tenants.webhook_secrets(route)
