"""Secrets read through revsync.infra.secrets on moto: what the receiver and the tenant API see, and
how long a value is kept (a fake clock: nothing here waits for time to pass)."""

from __future__ import annotations

import json

import boto3
import pytest
from revsync.infra import aws, secrets
from revsync.infra.cache import MaxAgeCache
from revsync.settings import get_settings

from local.inprocess import InProcessStack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(secrets, "CACHE", MaxAgeCache(secrets.MAX_AGE_SECONDS, fake))
    return fake


def test_the_platform_webhook_secrets_are_read_once_per_max_age(clock: Clock) -> None:
    name = get_settings().webhook_secret_param
    ssm = boto3.client("ssm", region_name=get_settings().region)
    ssm.put_parameter(Name=name, Value="whsec_a, whsec_b", Type="SecureString", Overwrite=True)
    platform = secrets.PlatformSecrets()
    assert platform.webhook_secrets() == ["whsec_a", "whsec_b"]  # rolled: both sign, blanks dropped

    ssm.put_parameter(Name=name, Value="whsec_c", Type="SecureString", Overwrite=True)
    clock.now += secrets.MAX_AGE_SECONDS - 1
    assert platform.webhook_secrets() == ["whsec_a", "whsec_b"]  # kept: no read per webhook
    clock.now += 1
    assert platform.webhook_secrets() == ["whsec_c"]


def test_a_tenant_secret_is_created_then_updated_and_read_back(clock: Clock) -> None:
    tenants = secrets.TenantSecrets()
    name = tenants.write("acme", "rk_test_1", "whsec_1")
    assert name == f"{get_settings().tenant_secret_prefix}acme"
    assert tenants.read(name) == {"api_key": "rk_test_1", "webhook_secret": "whsec_1"}
    assert tenants.write("acme", "rk_test_2", "whsec_1,whsec_2") == name  # updated, not created again
    assert tenants.webhook_secrets(name) == ["whsec_1", "whsec_2"]
    stored = aws.secretsmanager().get_secret_value(SecretId=name)["SecretString"]
    assert json.loads(stored)["api_key"] == "rk_test_2"


def test_a_missing_tenant_secret_raises_and_is_not_cached(clock: Clock) -> None:
    tenants = secrets.TenantSecrets()
    name = tenants.name("ghost")
    with pytest.raises(aws.secretsmanager().exceptions.ResourceNotFoundException):
        tenants.read(name)
    tenants.write("ghost", "rk_test_g", "whsec_g")
    assert tenants.webhook_secrets(name) == ["whsec_g"]  # no failure was kept


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
