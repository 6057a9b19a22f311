"""``GET /tenants/{tenant_id}/risks?kind=…`` through the real handler on moto: the record projection's
risk attributes read back from the customers table's risk indexes, newest first, a page at a time;
bad kinds, limits and cursors refused; one tenant never sees another's customers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from revsync.domain.events import observation_of, parse_event
from revsync.domain.record import derive_record
from revsync.domain.risk import NO_RISK
from revsync.domain.state import CustomerObjects

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import DynamoCustomers

pytestmark = pytest.mark.integration

T0 = FROZEN_NOW - 10 * 86_400


def _record(tenant_id: str, n: int, mrr: int = 4900, **signals: Any) -> Any:
    """Customer ``n`` of ``tenant_id`` (``u-<n>``, ``cus_<n>``) with an MRR and risk signals, as the write
    path derives it (the risk map set by hand: the write path derives it)."""
    customer = S.customer(f"cus_{n}", metadata={"app_id": f"u-{n}"})
    objects = CustomerObjects(customer_id=f"cus_{n}").with_observation(_observed(customer))
    record = derive_record(tenant_id, objects, "metadata.app_id")
    return {**record, "mrr": mrr, "currency": "usd", "risk": {**NO_RISK, **signals}}


def _observed(customer: dict[str, Any]) -> Any:
    event = S.event("customer.updated", customer, created=T0, account="acct_risks")
    return observation_of(parse_event(json.dumps(event).encode()))


def _project(*records: Any) -> None:
    store = DynamoCustomers(clock=lambda: FROZEN_NOW)
    for record in records:
        assert store.project(record, 1, None, repair=False)


def _get(stack: InProcessStack, tenant_id: str, query: str, token: str | None = None) -> tuple[int, Any]:
    response = stack.request("GET", f"/tenants/{tenant_id}/risks", query=query, token=token)
    return response.status, response.json()


def test_the_list_is_newest_first_a_page_at_a_time(stack: InProcessStack) -> None:
    times = [T0 + 5, T0 + 1, T0 + 4, T0 + 2, T0 + 3]
    _project(
        *(_record("acme", n, mrr=1000 * n, in_dunning=True, dunning_since=at) for n, at in enumerate(times))
    )
    _project(_record("acme", 9, cancel_scheduled_at=T0, mrr_at_risk=700))  # another kind

    listed, query, pages = [], "kind=dunning&limit=2", 0
    while True:
        status, page = _get(stack, "acme", query)
        assert status == 200, page
        assert page["kind"] == "dunning"
        listed += page["customers"]
        pages += 1
        if page["next"] is None:
            break
        query = f"kind=dunning&limit=2&cursor={page['next']}"
    assert pages == 3
    assert [c["since"] for c in listed] == sorted(times, reverse=True)
    assert listed[0] == {
        "external_id": "u-0",
        "stripe_customer_id": "cus_0",
        "mrr": 0,
        "currency": "usd",
        "since": T0 + 5,
    }
    status, cancels = _get(stack, "acme", "kind=cancel_scheduled")
    assert (status, cancels["customers"], cancels["next"]) == (
        200,
        [{"external_id": "u-9", "stripe_customer_id": "cus_9", "mrr": 700, "currency": "usd", "since": T0}],
        None,
    )
    assert _get(stack, "acme", "kind=trial_ending") == (
        200,
        {"kind": "trial_ending", "customers": [], "next": None},
    )


def _altered(cursor: str) -> str:
    """The cursor with its position moved and its signature kept."""
    payload, signature = cursor.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    moved = base64.urlsafe_b64encode(json.dumps({**body, "s": body["s"] + 1}).encode()).rstrip(b"=")
    return f"{moved.decode()}.{signature}"


def test_bad_kinds_limits_and_cursors_are_400s_and_no_tenant_sees_anothers(stack: InProcessStack) -> None:
    _project(*(_record("acme", n, in_dunning=True, dunning_since=T0 + n) for n in range(3)))
    _project(*(_record("globex", n, in_dunning=True, dunning_since=T0 + n) for n in range(3)))
    acme = _get(stack, "acme", "kind=dunning&limit=1")[1]["next"]
    globex = _get(stack, "globex", "kind=dunning&limit=1")[1]["next"]
    assert acme is not None
    assert globex not in (None, acme)

    for query, error in [
        ("", "invalid_kind"),
        ("kind=churn", "invalid_kind"),
        ("kind=dunning,trial_ending", "invalid_kind"),
        ("kind=dunning&limit=0", "invalid_limit"),
        ("kind=dunning&limit=101", "invalid_limit"),
        ("kind=dunning&limit=ten", "invalid_limit"),
        ("kind=dunning&cursor=", "invalid_cursor"),
        ("kind=dunning&cursor=not-a-cursor", "invalid_cursor"),
        (f"kind=dunning&cursor={_altered(acme)}", "invalid_cursor"),  # tampered
        (f"kind=trial_ending&cursor={acme}", "invalid_cursor"),  # another kind's
        (f"kind=dunning&cursor={globex}", "invalid_cursor"),  # another tenant's
    ]:
        status, body = _get(stack, "acme", query)
        assert (status, body["error"]) == (400, error), query

    # Each tenant's list holds its own customers only; another tenant's token is refused.
    for tenant in ("acme", "globex"):
        status, page = _get(stack, tenant, "kind=dunning", token=stack.token(tenant))
        assert status == 200
        assert [c["stripe_customer_id"] for c in page["customers"]] == ["cus_2", "cus_1", "cus_0"]
    assert _get(stack, "globex", "kind=dunning", token=stack.token("acme"))[0] == 403
    status, rest = _get(stack, "acme", f"kind=dunning&cursor={acme}", token=stack.token("acme"))
    assert (status, [c["since"] for c in rest["customers"]]) == (200, [T0 + 1, T0])


def test_a_kind_whose_index_is_not_built_yet_answers_503_and_the_page_still_shows(
    stack: InProcessStack,
) -> None:
    """A stack adding its risk indexes one deploy at a time (RiskIndexes): the others answer."""
    _project(_record("acme", 1, in_dunning=True, dunning_since=T0, trial_ends_at=T0 + 7))
    assert stack.names is not None
    table = stack.names.physical_name("CustomersTable")
    stack.client("dynamodb").update_table(
        TableName=table, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "risk_dunning"}}]
    )

    status, body = _get(stack, "acme", "kind=dunning")
    assert (status, body["error"]) == (503, "risk_index_unavailable")
    assert [c["since"] for c in _get(stack, "acme", "kind=trial_ending")[1]["customers"]] == [T0 + 7]
    page = stack.request("GET", "/tenants/acme/stripe/settings")
    assert page.status == 200
    assert "The list could not be read now" in page.body


def test_the_settings_page_lists_the_customers_in_dunning_beside_the_chart(stack: InProcessStack) -> None:
    _project(
        _record("acme", 1, mrr=4900, in_dunning=True, dunning_since=T0),
        _record("acme", 2, mrr=1250, in_dunning=True, dunning_since=T0 + 86_400),
    )
    page = stack.request("GET", "/tenants/acme/stripe/settings").body
    revenue, risks = page.index('id="h-revenue"'), page.index('id="h-risks"')
    assert revenue < risks
    rows = page[page.index('<tbody id="risk-rows">') : page.index("</tbody>", risks)]
    assert rows.index("u-2") < rows.index("u-1")  # newest first
    assert "12.50 USD" in rows
    assert "49.00 USD" in rows
    assert 'data-api="/tenants/acme/risks"' in page
    assert '<option value="dunning" selected>' in page
