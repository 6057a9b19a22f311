"""Integration fixtures: the real handlers on moto, Stripe faked behind the SDK-facing port."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import pytest
from revsync.domain.tenancy import Connection, Tenant
from revsync.infra import aws
from revsync.store.customers import CustomerStore
from revsync.store.read_models import CustomerRecords, MrrHistories, RevenueRecomputation
from revsync.store.tenants import TenantStore

from local.inprocess import InProcessStack
from local.template import LOCAL_STAGE
from tests.fakes import FakeStripe

PLATFORM_SECRET = "whsec_local"  # local/aws.py seeds SSM with it


class DynamoCustomers(CustomerStore, CustomerRecords, MrrHistories, RevenueRecomputation):
    """The write path's store and the reads of what it wrote, together, as FakeCustomers stands for
    them all (its states and records are the ones it reads)."""


def legacy_tenant_secret(tenant_id: str, api_key: str, webhook_secret: str) -> str:
    """A tenant's Secrets Manager secret as revsync saved it before sealed secrets (one JSON secret a
    tenant, named ``revsync/<stage>/tenants/<tenant_id>``); its name, which the connection names."""
    name = f"revsync/{LOCAL_STAGE}/tenants/{tenant_id}"
    value = json.dumps({"api_key": api_key, "webhook_secret": webhook_secret})
    aws.secretsmanager().create_secret(Name=name, SecretString=value)
    return name


def sam_cli() -> str:
    """The AWS SAM CLI's path: `make test` installs it (`.sam-venv`) and puts it on PATH. Elsewhere,
    without it, the calling module is skipped; CI=true makes a missing SAM CLI an error."""
    sam = shutil.which("sam")
    if sam is None:
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the SAM CLI's tests: `make sam-cli` installs it")
        pytest.skip("the SAM CLI is not installed (make sam-cli)", allow_module_level=True)
    return sam


@pytest.fixture
def stripe_fake(stack: InProcessStack) -> FakeStripe:
    fake = FakeStripe()
    for function in ("TenantApiFunction", "WorkerFunction", "ImporterFunction"):
        stack.wire(function, stripe=fake)
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
