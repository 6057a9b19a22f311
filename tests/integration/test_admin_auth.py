"""Admin routes in JWT mode (the local stack's mode; docs/contracts.md "admin"): every route refuses a
missing, forged, tampered or expired token with 401 and another tenant's token with 403
``forbidden_tenant``; the tenant's own token and the operator scope pass. The token checks are the
local authorizer's (API Gateway's in AWS); the tenant check is the handler's own."""

from __future__ import annotations

import base64
import json

import pytest

from local.auth import TOKEN_SECONDS, LocalIssuer
from local.inprocess import InProcessStack
from local.template import http_routes
from tests.conftest import FROZEN_NOW

pytestmark = pytest.mark.integration

ADMIN = [route for route in http_routes() if route.auth != "NONE"]
BODIES = {"PUT": "{}", "POST": "{}"}


def _path(template_path: str, tenant: str) -> str:
    return template_path.replace("{tenant_id}", tenant).replace("{external_id}", "c1")


def _call(stack: InProcessStack, method: str, path: str, token: str) -> tuple[int, dict[str, object]]:
    response = stack.request(method, path, BODIES.get(method), token=token)
    try:
        body = json.loads(response.body)
    except ValueError:
        body = {}
    return response.status, body if isinstance(body, dict) else {}


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tenant_id"] = "victim"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_every_admin_route_is_a_jwt_route_locally() -> None:
    assert len(ADMIN) == 15
    assert {route.auth for route in ADMIN} == {"JWT"}
    assert all("{tenant_id}" in route.path for route in ADMIN)


@pytest.mark.parametrize("route", ADMIN, ids=lambda r: r.route_key)
def test_no_forged_tampered_or_expired_token_passes(stack: InProcessStack, route: object) -> None:
    method, template_path = route.method, route.path  # type: ignore[attr-defined]
    path = _path(template_path, "victim")
    stranger = LocalIssuer(clock=lambda: FROZEN_NOW)  # same issuer name and audience, another key
    expired = stack.issuer.issue({"tenant_id": "victim"}, issued_at=FROZEN_NOW - TOKEN_SECONDS - 1)
    for token in (
        "",
        "not-a-jwt",
        stranger.issue({"tenant_id": "victim"}),
        stranger.issue({"scope": "revsync/admin"}),
        _tampered(stack.token("mallory")),
        expired,
    ):
        status, body = _call(stack, method, path, token)
        assert (status, body.get("error")) == (401, "unauthorized"), (token[:20], status, body)


@pytest.mark.parametrize("route", ADMIN, ids=lambda r: r.route_key)
def test_a_token_acts_only_on_its_own_tenant(stack: InProcessStack, route: object) -> None:
    method, template_path = route.method, route.path  # type: ignore[attr-defined]
    status, body = _call(stack, method, _path(template_path, "victim"), stack.token("mallory"))
    assert (status, body.get("error")) == (403, "forbidden_tenant")
    # A tenant id that differs only by case or a trailing newline is another tenant.
    for lookalike in ("Mallory", "mallory%0A"):
        status, body = _call(stack, method, _path(template_path, lookalike), stack.token("mallory"))
        assert status in (400, 403), (lookalike, status, body)
    for token in (stack.token("mallory"), stack.token()):
        status, body = _call(stack, method, _path(template_path, "mallory"), token)
        assert status not in (401, 403), (status, body)


def test_the_operator_scope_reads_any_tenant(stack: InProcessStack) -> None:
    assert stack.request("GET", "/tenants/a1/stripe", token=stack.token()).status == 200
    assert stack.request("GET", "/tenants/a1/stripe", token=stack.token("a1")).status == 200
    assert stack.request("GET", "/tenants/a1/stripe", token=stack.token("a2")).status == 403


def test_token_requests_are_checked(stack: InProcessStack) -> None:
    for body in ("", "[]", '{"tenant_id": "bad id"}', '{"scope": "revsync/everything"}', "{}"):
        response = stack.request("POST", "/_local/token", body, token="")
        assert response.status == 400, body
    response = stack.request("POST", "/_local/token", '{"tenant_id": "acme"}', token="")
    assert response.status == 200
    token = response.json()["access_token"]
    assert stack.request("GET", "/tenants/acme/stripe", token=token).status == 200


def test_public_routes_need_no_token(stack: InProcessStack) -> None:
    assert stack.request("GET", "/health", token="").status == 200
    shell = stack.request("GET", "/settings", token="")
    assert shell.status == 200
    assert '"/_local/login"' in shell.body  # where a browser without a token goes
    assert "tenant_id" in shell.body
