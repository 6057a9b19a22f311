"""The backfill's status document on DynamoDB: a resumed run's counts, and an execution that ended
outside the state machine's Catch failing only the backfill it runs."""

from __future__ import annotations

import time

import pytest
from revsync.domain.tenancy import Connection, Tenant
from revsync.store.tenants import BackfillProgress, TenantStore

from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW

pytestmark = pytest.mark.integration


def _backfill(tenant_id: str) -> dict[str, object]:
    tenant = TenantStore().get(tenant_id)
    assert tenant is not None
    assert tenant.backfill is not None
    return dict(tenant.backfill)


def test_an_ended_execution_fails_only_the_backfill_it_runs(stack: InProcessStack) -> None:
    TenantStore().save(Tenant("acme", Connection("connected", "oauth", "acct_st")), int(time.time()))
    progress = BackfillProgress()
    progress.backfill_started("acme", FROZEN_NOW, "importing", {"customers": 300, "invoices": 50})
    assert _backfill("acme")["counts"] == {"customers": 300, "subscriptions": 0, "invoices": 50}
    progress.set_execution("acme", "arn:exec:2")
    assert not progress.fail_if_running("acme", "arn:exec:1", FROZEN_NOW, "ABORTED:")  # an older one
    assert _backfill("acme")["state"] == "running"
    assert progress.fail_if_running("acme", "arn:exec:2", FROZEN_NOW + 60, "TIMED_OUT:")
    status = _backfill("acme")
    assert (status["state"], status["error"], status["finished_at"]) == (
        "failed",
        "TIMED_OUT:",
        FROZEN_NOW + 60,
    )
    assert not progress.fail_if_running("acme", "arn:exec:2", FROZEN_NOW + 90, "FAILED:")  # already ended
    assert _backfill("acme")["error"] == "TIMED_OUT:"
    assert not progress.fail_if_running("nobody", "arn:exec:2", FROZEN_NOW, "FAILED:")
