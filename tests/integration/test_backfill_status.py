"""The backfill's status document on DynamoDB: a resumed run's counts, and an execution that ended
outside the state machine's Catch failing only the backfill it runs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from revsync.domain.backfill import KINDS
from revsync.domain.tenancy import Connection, Tenant
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local.inprocess import InProcessStack
from local.template import ROOT
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe

pytestmark = pytest.mark.integration


def _backfill(tenant_id: str) -> dict[str, object]:
    tenant = TenantStore().get(tenant_id)
    assert tenant is not None
    assert tenant.backfill is not None
    return dict(tenant.backfill)


def test_an_ended_execution_fails_only_the_backfill_it_runs(stack: InProcessStack) -> None:
    TenantStore().save(Tenant("acme", Connection("connected", "oauth", "acct_st")), int(time.time()))
    progress = stack.graph("ImporterFunction").progress
    progress.backfill_started("acme", FROZEN_NOW, "importing", {"customers": 300, "invoices": 50})
    assert _backfill("acme")["counts"] == {
        "customers": 300,
        "subscriptions": 0,
        "invoices": 50,
        "credit_notes": 0,
        "refunds": 0,
    }
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


def test_a_console_started_run_names_its_execution_and_its_failed_end_is_recorded(
    stack: InProcessStack, stripe_fake: FakeStripe
) -> None:
    """No route claimed it (no backfill map yet): the Start step claims it and names its execution;
    Step Functions' status change event for that execution then records the failure."""
    connected = Tenant("console", Connection("connected", "oauth", "acct_console")).with_config("id")
    TenantStore().save(connected, int(time.time()))
    arn = "arn:aws:states:eu-west-1:123456789012:execution:revsync-local-backfill:console-1"
    state = lambda_runtime.invoke(
        "ImporterFunction", {"action": "start", "tenant_id": "console", "execution": arn}
    )
    assert state["active"] == len(KINDS)  # one walk per list
    assert stripe_fake.account_reads == 1  # the account's start, for the walks' lower bound
    assert (_backfill("console")["state"], _backfill("console")["execution"]) == ("running", arn)
    ended = {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": arn, "status": "ABORTED", "input": '{"tenant_id": "console"}'},
    }
    assert lambda_runtime.invoke("ImporterFunction", ended) == {"tenant_id": "console"}
    assert (_backfill("console")["state"], _backfill("console")["error"]) == ("failed", "ABORTED:")


def _actions_sent(node: Any) -> set[str]:
    """Every ``action`` the state machine's Lambda tasks send."""
    if isinstance(node, dict):
        found = {str(node["Payload"]["action"])} if "action" in node.get("Payload", {}) else set()
        return found.union(*(_actions_sent(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_actions_sent(value) for value in node))
    return set()


def test_the_importer_has_a_step_for_each_action_the_state_machine_sends_and_refuses_others(
    stack: InProcessStack,
) -> None:
    definition = json.loads((ROOT / "statemachines/backfill.asl.json").read_text())
    importer = lambda_runtime.load_module("ImporterFunction")
    assert set(importer.ACTIONS) == _actions_sent(definition) | {importer.STATUS_CHANGE}
    for unknown in ({"action": "rewind", "tenant_id": "acme"}, {"tenant_id": "acme"}):
        with pytest.raises(ValueError, match="unknown backfill action"):
            lambda_runtime.invoke("ImporterFunction", unknown)
