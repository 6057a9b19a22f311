"""PUT .../connection seals an API-key tenant's key and webhook secret, and moves a tenant saved
before sealed secrets off its Secrets Manager secret (services.tenants.connect_api_key, on fakes)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.tenants import connect_api_key

from tests.fakes import FakeSecrets, FakeStripe, FakeTenants

NOW = 1_800_000_000
LEGACY = "revsync/test/tenants/acme"
BODY = {"api_key": "rk_test_51Rotatedkey", "webhook_secret": "whsec_rotated_secret"}


@dataclass
class FailingOnce(FakeSecrets):
    """Secrets Manager failing the first deletion (a timeout, a throttle)."""

    failures: int = 1

    def retire(self, secret_name: str) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("Secrets Manager did not answer")
        super().retire(secret_name)


def _legacy_tenant() -> FakeTenants:
    tenant = Tenant("acme", Connection("connected", "api_key", "acct_1", secret_name=LEGACY))
    return FakeTenants({"acme": tenant.with_config("id")})


def _connect(tenants: FakeTenants, secrets: FakeSecrets) -> None:
    stripe = FakeStripe(valid_keys={BODY["api_key"]: "acct_1"})
    connect_api_key("acme", BODY, tenants=tenants, checker=stripe, secrets=secrets, now=NOW)


def test_a_rotation_seals_the_new_values_and_deletes_the_old_secret() -> None:
    tenants, secrets = _legacy_tenant(), FakeSecrets(tenant_secrets={LEGACY: ["whsec_old_secret"]})
    _connect(tenants, secrets)
    connection = tenants.tenants["acme"].connection
    assert (connection.secret_name, connection.sealed) == (None, secrets.seal("acme", *BODY.values()))
    assert secrets.tenant_secrets == {}
    assert tenants.tenants["acme"].customer_id_trait == "id"  # the rest of the tenant is kept


def test_a_deletion_that_fails_is_done_by_the_next_rotation() -> None:
    tenants, secrets = _legacy_tenant(), FailingOnce(tenant_secrets={LEGACY: ["whsec_old_secret"]})
    with pytest.raises(TimeoutError):
        _connect(tenants, secrets)
    # The new values are saved and read first; the secret is still named, so it is not forgotten.
    connection = tenants.tenants["acme"].connection
    assert (connection.secret_name, connection.sealed) == (LEGACY, secrets.seal("acme", *BODY.values()))
    _connect(tenants, secrets)  # the caller retries
    assert tenants.tenants["acme"].connection.secret_name is None
    assert secrets.tenant_secrets == {}
