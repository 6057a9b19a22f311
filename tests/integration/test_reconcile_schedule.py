"""The scheduled catch-up: the importer's ``reconcile_all`` action, as EventBridge Scheduler sends it."""

from __future__ import annotations

from typing import Any

import pytest
from revsync.domain.tenancy import Connection, ConnectionStatus, Tenant
from revsync.store.events_progress import EventsProgressStore
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe

pytestmark = pytest.mark.integration


def test_the_schedule_catches_up_every_connected_tenant_and_only_those(stack: InProcessStack) -> None:
    statuses: list[tuple[str, ConnectionStatus]] = [
        ("alpha", "connected"),
        ("beta", "connected"),
        ("gamma", "revoked"),
    ]
    for tenant_id, status in statuses:
        tenant = Tenant(
            tenant_id, Connection(status, "oauth", f"acct_{tenant_id}", connected_at=FROZEN_NOW - 3600)
        )
        TenantStore().save(tenant.with_config("metadata.app_id"), FROZEN_NOW)
    fake = FakeStripe()
    customer = S.customer("cus_1", metadata={"app_id": "u-1"})
    fake.events = [S.event("customer.created", customer, created=FROZEN_NOW - 60, account="acct_x")]
    lambda_runtime.load_module("ImporterFunction").dependencies().stripe = fake

    result: Any = lambda_runtime.invoke("ImporterFunction", {"action": "reconcile_all"})

    assert result["tenants"] == 2
    assert set(result["reconciled"]) == {"alpha", "beta"}
    assert all(r["state"] == "done" and r["recovered"] == 1 for r in result["reconciled"].values())
    for tenant_id in ("alpha", "beta"):
        assert EventsProgressStore().get(tenant_id).recovered == 1
        record = stack.request("GET", f"/tenants/{tenant_id}/customers/u-1")
        assert record.status == 200
    assert stack.request("GET", "/tenants/gamma/customers/u-1").status == 404
