"""docs/openapi.yaml: a valid OpenAPI document of exactly the template's routes (as aws-sam-translator
translates the template), whose statuses and schemas the in-process stack's real answers meet."""

from __future__ import annotations

import calendar
from functools import lru_cache
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from revsync.domain.risk import NO_RISK

from local import stripe_shapes as S
from local.inprocess import HttpResponse, InProcessStack
from local.template import ROOT
from tests.fakes import FakeStripe
from tests.integration.conftest import PLATFORM_SECRET, DynamoCustomers
from tests.integration.test_template import translated_template

pytestmark = pytest.mark.integration

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
ADMIN_SECURITY: list[dict[str, list[str]]] = [
    {"sigv4": []},
    {"jwt": []},
]  # one of them, as the stack's AdminAuth chooses


@lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    return document


def _operations() -> dict[str, dict[str, Any]]:
    """The document's operations by route key (``GET /tenants/{tenant_id}/stripe``)."""
    return {
        f"{method.upper()} {path}": operation
        for path, item in _document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_document_is_valid_openapi() -> None:
    validate(_document())


def test_the_document_has_each_route_of_the_template_with_its_auth_and_no_other() -> None:
    translated = translated_template()
    resources = translated["Resources"]
    public = {
        f"{method.upper()} {path}"
        for path, methods in resources["HttpApi"]["Properties"]["Body"]["paths"].items()
        for method in methods
    }
    admin = {
        resource["Properties"]["RouteKey"]
        for resource in resources.values()
        if resource["Type"] == "AWS::ApiGatewayV2::Route"
    }
    operations = _operations()
    assert set(operations) == public | admin
    for route in public:
        assert operations[route]["security"] == [], route
    for route in admin:
        assert operations[route]["security"] == ADMIN_SECURITY, route
    assert set(_document()["components"]["securitySchemes"]) == {"sigv4", "jwt"}


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    """A response object, its ``$ref`` followed (components/responses)."""
    while "$ref" in node:
        target: Any = _document()
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _answer_meets_the_document(route: str, response: HttpResponse, status: int) -> Any:
    """``response`` has ``status``, which the document gives ``route``, and its media type and schema."""
    assert response.status == status, (route, response.status, response.body)
    responses = _operations()[route]["responses"]
    assert str(status) in responses, (route, status)
    documented = _resolved(responses[str(status)])
    if status == 302:
        assert "Location" in documented["headers"]
        return None
    headers = {name.lower(): value for name, value in response.headers.items()}
    media = headers.get("content-type", "").split(";")[0]
    assert media in documented["content"], (route, status, media)
    if media != "application/json":
        return response.body
    body = response.json()
    schema = {**documented["content"][media]["schema"], "components": _document()["components"]}
    errors = sorted(OAS31Validator(schema).iter_errors(body), key=str)
    assert not errors, (route, status, [f"{list(e.absolute_path)}: {e.message}" for e in errors])
    return body


JAN = calendar.timegm((2026, 1, 1, 0, 0, 0))
ACCOUNT = "acct_doc"
STATUS = "GET /tenants/{tenant_id}/stripe"
CUSTOMER = "GET /tenants/{tenant_id}/customers/{external_id}"
HISTORY = "GET /tenants/{tenant_id}/customers/{external_id}/history"
REVENUE = "GET /tenants/{tenant_id}/revenue"
GET_POLICY = "GET /tenants/{tenant_id}/stripe/policy"
PUT_POLICY = "PUT /tenants/{tenant_id}/stripe/policy"
RISKS = "GET /tenants/{tenant_id}/risks"


def test_real_answers_meet_the_documented_statuses_and_schemas(
    stack: InProcessStack, connect_oauth: Any, stripe_fake: FakeStripe
) -> None:
    """Each route's answers, good and bad, in statuses the document gives it, meeting its schemas."""
    connect_oauth("doc", ACCOUNT, trait="metadata.app_id")

    def webhook(event: dict[str, Any], status: int, secret: str = PLATFORM_SECRET, **kw: Any) -> None:
        route = "POST /webhooks/stripe/{tenant_id}" if "tenant_id" in kw else "POST /webhooks/stripe"
        _answer_meets_the_document(route, stack.post_webhook(event, secret, **kw), status)

    def ask(route: str, path: str, status: int, query: str = "", **kw: Any) -> Any:
        response = stack.request(
            route.partition(" ")[0], path, kw.get("body"), query=query, token=kw.get("token")
        )
        return _answer_meets_the_document(route, response, status)

    ada = S.customer("cus_ada", metadata={"app_id": "u-ada"})
    subscription = S.subscription("cus_ada", [{**S.subscription_item(S.price(5000)), "id": "si_ada"}])
    webhook(S.event("customer.created", ada, created=JAN, account=ACCOUNT), 200)
    webhook(S.event("customer.subscription.created", subscription, created=JAN, account=ACCOUNT), 200)
    webhook(S.event("customer.created", ada, created=JAN, account="acct_other"), 200)  # ignored
    webhook(S.event("customer.created", ada, created=JAN, account=ACCOUNT), 400, "whsec_not_ours")
    webhook(S.event("customer.created", ada, created=JAN), 200, tenant_id="doc")  # not an API-key tenant
    assert stack.drain().failed == 0

    assert ask("GET /health", "/health", 200) == {"status": "ok"}
    assert ask(STATUS, "/tenants/doc/stripe", 200)["connection"]["account_id"] == ACCOUNT
    assert ask(CUSTOMER, "/tenants/doc/customers/u-ada", 200)["mrr"] == 5000
    history = ask(HISTORY, "/tenants/doc/customers/u-ada/history", 200)
    assert [point["movement"] for point in history["points"]] == ["new"]
    revenue = ask(REVENUE, "/tenants/doc/revenue", 200, "from=2026-01&to=2026-02")
    assert revenue["months"][0]["new"] == 5000
    assert isinstance(revenue["as_of"], int)  # counted by the rollup
    # ada's record carrying a scheduled cancellation (the risk map as the write path derives it).
    store = DynamoCustomers()
    record: Any = store.get_record("doc", "u-ada")
    version = store.projected_version("doc", "u-ada", "cus_ada")
    assert version is not None
    risk = {**NO_RISK, "cancel_scheduled_at": JAN + 5, "mrr_at_risk": 5000}
    with_risk: Any = {**record, "risk": risk}
    assert store.project(with_risk, version, None, repair=True)
    assert ask(CUSTOMER, "/tenants/doc/customers/u-ada", 200)["risk"] == risk
    at_risk = ask(RISKS, "/tenants/doc/risks", 200, "kind=cancel_scheduled&limit=1")
    assert [(c["external_id"], c["mrr"], c["since"]) for c in at_risk["customers"]] == [
        ("u-ada", 5000, JAN + 5)
    ]
    assert ask(RISKS, "/tenants/doc/risks", 200, "kind=change_scheduled")["customers"] == []
    ask(RISKS, "/tenants/doc/risks", 400, "kind=nope")
    ask(RISKS, "/tenants/doc/risks", 400, "kind=dunning&cursor=x.y")
    ask(CUSTOMER, "/tenants/doc/customers/nobody", 404)
    ask(HISTORY, "/tenants/doc/customers/nobody/history", 404)
    ask(REVENUE, "/tenants/doc/revenue", 400, "from=2026-13")
    ask(STATUS, "/tenants/-bad-/stripe", 400)
    assert ask(STATUS, "/tenants/doc/stripe", 403, token=stack.token("other"))["error"] == "forbidden_tenant"
    ask(REVENUE, "/tenants/doc/revenue", 401, token="")
    stripe_fake.objects["cus_ada"] = ada  # what the trait discovery samples
    ask("GET /tenants/{tenant_id}/stripe/traits", "/tenants/doc/stripe/traits", 200)
    ask("PUT /tenants/{tenant_id}/stripe/config", "/tenants/doc/stripe/config", 400, body={})
    assert ask(GET_POLICY, "/tenants/doc/stripe/policy", 200)["recompute"]["state"] == "none"
    changed = ask(PUT_POLICY, "/tenants/doc/stripe/policy", 200, body={"churn_at": "scheduled"})
    assert changed["recompute"]["state"] == "recomputing"
    assert ask(STATUS, "/tenants/doc/stripe", 200)["policy"] == changed
    assert ask(PUT_POLICY, "/tenants/doc/stripe/policy", 400, body={"churn_at": "never"})["error"] == (
        "invalid_policy"
    )
    ask("POST /tenants/{tenant_id}/stripe/reconcile", "/tenants/doc/stripe/reconcile", 202)
    ask("POST /tenants/{tenant_id}/stripe/connect", "/tenants/doc/stripe/connect", 200)
    ask("GET /tenants/{tenant_id}/stripe/settings", "/tenants/doc/stripe/settings", 200)
    revoked = ask("DELETE /tenants/{tenant_id}/stripe", "/tenants/doc/stripe", 200)
    assert revoked["connection"]["status"] == "revoked"
    ask("POST /tenants/{tenant_id}/stripe/backfill", "/tenants/doc/stripe/backfill", 409)
    ask(PUT_POLICY, "/tenants/doc/stripe/policy", 409, body={"discounts": "none"})
