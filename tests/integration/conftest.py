"""Integration fixtures: the real handlers on moto, Stripe faked behind the SDK-facing port."""

from __future__ import annotations

import time
from typing import Any

import pytest
from revsync.domain.tenancy import Connection, Tenant
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local.inprocess import InProcessStack
from tests.fakes import FakeStripe

PLATFORM_SECRET = "whsec_local"  # local/aws.py seeds SSM with it


@pytest.fixture
def stripe_fake(stack: InProcessStack) -> FakeStripe:
    fake = FakeStripe()
    for function in ("TenantApiFunction", "WorkerFunction"):
        lambda_runtime.load_module(function).dependencies().stripe = fake
    return fake


@pytest.fixture
def connect_oauth(stack: InProcessStack) -> Any:
    """Connect a tenant the way the OAuth callback will: a Connect account routed to it."""

    def connect(
        tenant_id: str, account_id: str, trait: str | None = "metadata.app_id", livemode: bool = False
    ) -> None:
        tenant = Tenant(tenant_id, Connection("connected", "oauth", account_id, livemode, connected_at=0))
        TenantStore().save(tenant.with_config(trait) if trait else tenant, int(time.time()))

    return connect
