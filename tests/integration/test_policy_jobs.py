"""The revenue policy as deployed: the route on the tenant API, the tenant item on moto, the
recompute and the schedule's review run by the reconciler from the catch-up queue (drained as
Lambda's event source mapping would). The write path's re-derivation and the customer store's
listing are injected (recorded), as in tests/unit/test_policy_jobs.py."""

from __future__ import annotations

import bisect
from typing import Any

import pytest
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.tenancy import Connection, Tenant
from revsync.infra import aws
from revsync.services import policy
from revsync.services.sync import Customers, Tenants
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe
from tests.integration.conftest import DynamoCustomers

pytestmark = pytest.mark.integration

CUSTOMERS = 2 * policy.PAGE + 5  # three pages


class _StoredCustomers(DynamoCustomers):
    """The customer store, with its listing of customers and of those due for review in memory."""

    def __init__(self, ids: list[str], review_at: dict[str, int]) -> None:
        self.ids, self.review_at = sorted(ids), review_at

    def customer_ids(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        start = 0 if after is None else bisect.bisect_right(self.ids, after)
        page = self.ids[start : start + limit]
        return page, page[-1] if start + limit < len(self.ids) else None

    def due_for_review(self, tenant_id: str, now: int, limit: int) -> list[str]:
        return sorted((c for c, at in self.review_at.items() if at <= now), key=self.review_at.__getitem__)[
            :limit
        ]


class _Rederive:
    def __init__(self, customers: _StoredCustomers) -> None:
        self.customers = customers
        self.calls: list[tuple[str, str, int, RevenuePolicy]] = []

    def __call__(
        self,
        tenant_id: str,
        customer_id: str,
        *,
        tenants: Tenants,
        customers: Customers,
        changes: Any,
        now: int,
    ) -> object:
        tenant = tenants.get(tenant_id)
        assert tenant is not None
        self.calls.append((tenant_id, customer_id, now, tenant.policy))
        self.customers.review_at.pop(customer_id, None)
        return None


def _wire(stack: InProcessStack, recorder: _Rederive, *, one_page_a_run: bool = False) -> None:
    """The reconciler with the recorder; ``one_page_a_run``: each run ends after one page (a
    monotonic clock that moves a minute at each look: the 105 s budget lasts one)."""
    looks = [0.0]

    def monotonic() -> float:
        looks[0] += 60.0 if one_page_a_run else 0.0
        return looks[0]

    stack.wire(
        "ReconcilerFunction",
        customers=recorder.customers,
        rederive=recorder,
        monotonic=monotonic,
        stripe=FakeStripe(),
    )


@pytest.fixture
def rederive(stack: InProcessStack) -> _Rederive:
    customers = _StoredCustomers(
        [f"cus_{n:04d}" for n in range(CUSTOMERS)],
        {"cus_0003": FROZEN_NOW - 600, "cus_0007": FROZEN_NOW, "cus_0011": FROZEN_NOW + 1},
    )
    recorder = _Rederive(customers)
    _wire(stack, recorder)
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_acme", connected_at=FROZEN_NOW - 60))
    TenantStore().save(tenant.with_config("metadata.app_id"), FROZEN_NOW)
    return recorder


def test_a_policy_put_is_recomputed_by_the_reconciler_through_the_catch_up_queue(
    stack: InProcessStack, rederive: _Rederive
) -> None:
    _wire(stack, rederive, one_page_a_run=True)
    put = stack.request("PUT", "/tenants/acme/stripe/policy", {"past_due": {"churn_after_days": 30}})
    assert put.status == 200
    assert put.json()["recompute"]["state"] == "recomputing"
    assert stack.queue_depth("ReconcileQueue") == 1

    stats = stack.drain(queue="ReconcileQueue", rollup=False)

    assert (stats.received, stats.failed) == (3, 0)  # a run a page: two continuations
    policy_30 = RevenuePolicy(churn_after_days=30)
    assert [c for _, c, _, _ in rederive.calls] == rederive.customers.ids
    assert {(t, p) for t, _, _, p in rederive.calls} == {("acme", policy_30)}
    answer = stack.request("GET", "/tenants/acme/stripe/policy").json()
    assert answer == stack.request("GET", "/tenants/acme/stripe").json()["policy"]
    assert answer["document"] == policy_30.to_json()
    recompute = answer["recompute"]
    assert (recompute["state"], recompute["customers_done"], recompute["config_version"]) == (
        "done",
        CUSTOMERS,
        2,
    )
    assert (recompute["started_at"], recompute["finished_at"]) == (FROZEN_NOW, FROZEN_NOW)

    # The policy in force again: nothing changes, nothing is queued.
    again = stack.request("PUT", "/tenants/acme/stripe/policy", {"past_due": {"churn_after_days": 30}})
    assert (again.status, again.json()) == (200, answer)
    assert stack.queue_depth("ReconcileQueue") == 0
    assert TenantStore().get("acme").config_version == 2  # type: ignore[union-attr]

    # An operator's recompute under the policy in force (docs/operations.md).
    rederive.calls.clear()
    lambda_runtime.invoke("ReconcilerFunction", {"action": "recompute", "tenant_id": "acme"})
    assert stack.drain(queue="ReconcileQueue", rollup=False).failed == 0
    assert [c for _, c, _, _ in rederive.calls] == rederive.customers.ids
    redone = stack.request("GET", "/tenants/acme/stripe/policy").json()
    assert (redone["document"], redone["recompute"]["config_version"]) == (answer["document"], 3)
    assert redone["recompute"]["state"] == "done"


def test_the_scheduled_run_re_derives_the_customers_due_as_of_its_time(
    stack: InProcessStack, rederive: _Rederive
) -> None:
    lambda_runtime.invoke("ReconcilerFunction", {"action": "queue_catch_ups"})

    stats = stack.drain(queue="ReconcileQueue", rollup=False)

    assert (stats.received, stats.failed) == (1, 0)
    assert rederive.calls == [
        ("acme", "cus_0003", FROZEN_NOW, DEFAULT_POLICY),
        ("acme", "cus_0007", FROZEN_NOW, DEFAULT_POLICY),
    ]
    assert rederive.customers.review_at == {"cus_0011": FROZEN_NOW + 1}  # not due yet


def test_a_bad_policy_is_a_400_that_saves_and_queues_nothing(
    stack: InProcessStack, rederive: _Rederive
) -> None:
    before = stack.request("GET", "/tenants/acme/stripe").json()
    bad: list[tuple[str | bytes, str]] = [
        ("", "invalid_body"),
        ("{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        ("[]", "invalid_policy"),
        ('"scheduled"', "invalid_policy"),
        ('{"churn_at": "never"}', "invalid_policy"),
        ('{"past_due": {"churn_after_days": 0}}', "invalid_policy"),
        ('{"past_due": {"churn_after_days": 91}}', "invalid_policy"),
        ('{"past_due": {"churn_after_days": true}}', "invalid_policy"),
        ('{"past_due": {"churn_after_days": 7.5}}', "invalid_policy"),
        ('{"discounts": "some"}', "invalid_policy"),
        ('{"metered": "all"}', "invalid_policy"),
        ('{"churn_at": "scheduled", "extra": 1}', "invalid_policy"),
    ]
    for body, code in bad:
        response = stack.request(
            "PUT", "/tenants/acme/stripe/policy", body, {"content-type": "application/json"}
        )
        assert (response.status, response.json()["error"]) == (400, code), body
        assert response.json()["message"]

    assert stack.request("GET", "/tenants/acme/stripe").json() == before
    assert stack.queue_depth("ReconcileQueue") == 0
    bad_tenant = stack.request("PUT", "/tenants/-bad-/stripe/policy", {})
    nobody = stack.request("PUT", "/tenants/nobody/stripe/policy", {"churn_at": "scheduled"})
    assert [(r.status, r.json()["error"]) for r in (bad_tenant, nobody)] == [
        (400, "invalid_tenant_id"),
        (409, "not_connected"),
    ]
    assert TenantStore().get("nobody") is None


def test_a_tenant_item_saved_before_policies_reads_the_default(stack: InProcessStack) -> None:
    assert stack.names is not None
    aws.dynamodb().put_item(
        TableName=stack.names.physical_name("TenantsTable"),
        Item={
            "pk": {"S": "tenant#old"},
            "kind": {"S": "tenant"},
            "tenant_id": {"S": "old"},
            "connection": {"M": {"status": {"S": "connected"}, "mode": {"S": "oauth"}}},
            "config": {"M": {"customer_id_trait": {"S": "id"}, "version": {"N": "3"}}},
        },
    )

    tenant = TenantStore().get("old")

    assert tenant is not None
    assert (tenant.policy, tenant.recompute, tenant.config_version) == (DEFAULT_POLICY, None, 3)
    answer = stack.request("GET", "/tenants/old/stripe/policy").json()
    assert answer == {
        "document": DEFAULT_POLICY.to_json(),
        "recompute": {
            "state": "none",
            "config_version": None,
            "customers_done": 0,
            "started_at": None,
            "finished_at": None,
        },
    }
    # Its first change writes the policy over the config it was read with.
    changed = stack.request("PUT", "/tenants/old/stripe/policy", {"discounts": "none"}).json()
    assert (changed["recompute"]["config_version"], TenantStore().get("old").config_version) == (4, 4)  # type: ignore[union-attr]
    assert TenantStore().get("old").customer_id_trait == "id"  # type: ignore[union-attr]
