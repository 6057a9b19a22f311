"""Secrets read through revsync.infra.secrets on moto (SSM, KMS, Secrets Manager): what the receiver,
the worker and the tenant API see, and how long a value is kept (a fake clock: nothing here waits
for time to pass)."""

from __future__ import annotations

import json

import boto3
import pytest
from revsync.domain.routing import TenantRoute
from revsync.domain.tenancy import Connection, SealedSecrets, Tenant
from revsync.infra import aws, secrets
from revsync.infra.cache import MaxAgeCache
from revsync.store.tenants import TenantStore

from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import legacy_tenant_secret


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(stack: InProcessStack) -> Clock:
    return Clock()


def _tenant_secrets(stack: InProcessStack, clock: Clock) -> secrets.TenantSecrets:
    """As the functions have them (the stack's key), keeping values by ``clock``."""
    return secrets.TenantSecrets(stack.graph("TenantApiFunction").settings.stripe.tenant_secrets_key, clock)


def test_the_platform_webhook_secrets_are_read_once_per_max_age(stack: InProcessStack, clock: Clock) -> None:
    settings = stack.graph("WebhookFunction").settings
    name = settings.webhook_secret_param
    ssm = boto3.client("ssm", region_name=settings.aws.region)
    ssm.put_parameter(Name=name, Value="whsec_a, whsec_b", Type="SecureString", Overwrite=True)
    platform = secrets.PlatformSecrets(webhook_secret=name, clock=clock)
    assert platform.webhook_secrets() == ["whsec_a", "whsec_b"]  # rolled: both sign, blanks dropped

    ssm.put_parameter(Name=name, Value="whsec_c", Type="SecureString", Overwrite=True)
    clock.now += secrets.MAX_AGE_SECONDS - 1
    assert platform.webhook_secrets() == ["whsec_a", "whsec_b"]  # kept: no read per webhook
    clock.now += 1
    assert platform.webhook_secrets() == ["whsec_c"]


def _api_key_tenant(tenant_id: str, sealed: SealedSecrets | None = None, name: str | None = None) -> Tenant:
    return Tenant(tenant_id, Connection("connected", "api_key", secret_name=name, sealed=sealed))


def _route(tenant: Tenant) -> TenantRoute:
    connection = tenant.connection
    webhook_secret = connection.sealed.webhook_secret if connection.sealed else None
    return TenantRoute(
        tenant.tenant_id, "connected", False, "api_key", connection.secret_name, webhook_secret
    )


def test_a_tenant_secret_is_sealed_then_resealed_and_read_back(stack: InProcessStack, clock: Clock) -> None:
    tenants = _tenant_secrets(stack, clock)
    acme = _api_key_tenant("acme", tenants.seal("acme", "rk_test_1", "whsec_1"))
    assert tenants.api_key(acme) == "rk_test_1"
    assert tenants.webhook_secrets(_route(acme)) == ["whsec_1"]
    rotated = _api_key_tenant("acme", tenants.seal("acme", "rk_test_2", "whsec_1,whsec_2"))
    assert tenants.webhook_secrets(_route(rotated)) == ["whsec_1", "whsec_2"]  # at once, not in 5 min
    assert tenants.api_key(rotated) == "rk_test_2"
    TenantStore().save(rotated, FROZEN_NOW)  # the tenant item keeps ciphertexts only
    table = stack.graph("TenantApiFunction").settings.tenants_table
    stored = aws.dynamodb().get_item(TableName=table, Key={"pk": {"S": "tenant#acme"}})
    assert b"rk_test_2" not in json.dumps(stored["Item"], default=repr).encode()
    assert TenantStore().get("acme") == rotated


def test_a_missing_tenant_secret_raises_and_is_not_cached(stack: InProcessStack, clock: Clock) -> None:
    tenants = _tenant_secrets(stack, clock)
    ghost = _api_key_tenant("ghost", name="revsync/local/tenants/ghost")
    with pytest.raises(aws.secretsmanager().exceptions.ResourceNotFoundException):
        tenants.read("revsync/local/tenants/ghost")
    legacy_tenant_secret("ghost", "rk_test_g", "whsec_g")
    assert tenants.webhook_secrets(_route(ghost)) == ["whsec_g"]  # no failure was kept
    with pytest.raises(secrets.SealedSecretError):  # a connection with neither has no key to give
        tenants.api_key(_api_key_tenant("nobody"))


def test_a_sealed_secret_costs_one_kms_call_per_max_age_and_none_while_warm(
    stack: InProcessStack, clock: Clock
) -> None:
    tenants = _tenant_secrets(stack, clock)
    acme = _api_key_tenant("acme", tenants.seal("acme", "rk_test_1", "whsec_1"))
    decrypts: list[str] = []
    aws.kms().meta.events.register("before-call.kms.Decrypt", lambda **_: decrypts.append("decrypt"))
    for _ in range(3):  # a webhook and the worker's Stripe client, three times over
        assert tenants.webhook_secrets(_route(acme)) == ["whsec_1"]
        assert tenants.api_key(acme) == "rk_test_1"
    assert len(decrypts) == 2  # one per kind
    clock.now += secrets.MAX_AGE_SECONDS - 1
    tenants.webhook_secrets(_route(acme))
    assert len(decrypts) == 2
    clock.now += 1
    tenants.webhook_secrets(_route(acme))
    assert len(decrypts) == 3  # read again after its max age


def test_the_cache_keeps_each_name_for_its_max_age() -> None:
    clock = Clock()
    cache: MaxAgeCache[str, str] = MaxAgeCache(10, clock)
    reads: list[str] = []

    def read(value: str) -> str:
        reads.append(value)
        return value

    assert cache.get("a", lambda: read("a1")) == "a1"
    assert cache.get("b", lambda: read("b1")) == "b1"
    clock.now += 9
    assert cache.get("a", lambda: read("a2")) == "a1"
    cache.forget("b")
    assert cache.get("b", lambda: read("b2")) == "b2"
    clock.now += 1
    assert cache.get("a", lambda: read("a3")) == "a3"
    assert reads == ["a1", "b1", "b2", "a3"]
