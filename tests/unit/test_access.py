"""Who may act on a tenant (revsync.domain.access) and where the OAuth callback sends the browser."""

from __future__ import annotations

import pytest
from revsync.domain.access import IAM, JWT, Principal, authorize, principal_from_jwt
from revsync.errors import RevsyncError
from revsync.http_errors import status_of
from revsync.services.connect import settings_location


def _jwt(claims: dict[str, str], scopes: list[str] | None = None) -> dict[str, object]:
    return {"jwt": {"claims": claims, "scopes": scopes}}


def test_claims_as_api_gateway_hands_them_over() -> None:
    assert principal_from_jwt(None, "tenant_id") is None
    assert principal_from_jwt({"iam": {"accessKey": "AKIA"}}, "tenant_id") is None
    assert principal_from_jwt(_jwt({"tenant_id": "acme"}), "tenant_id") == Principal("acme", frozenset())
    # A Cognito ID token's custom attribute, and list claims stringified by API Gateway.
    cognito = principal_from_jwt(
        _jwt({"custom:tenant_id": "acme", "scope": "[openid revsync/admin]"}), "custom:tenant_id"
    )
    assert cognito == Principal("acme", frozenset({"openid", "revsync/admin"}))
    assert principal_from_jwt(_jwt({"sub": "x"}, ["revsync/admin"]), "tenant_id") == Principal(
        None, frozenset({"revsync/admin"})
    )
    assert principal_from_jwt(_jwt({"tenant_id": ""}), "tenant_id") == Principal(None, frozenset())


def _refused(mode: str, tenant: str, principal: Principal | None) -> tuple[int | None, str] | None:
    try:
        authorize(mode, tenant, principal)
    except RevsyncError as exc:
        return status_of(exc), exc.code
    return None


@pytest.mark.parametrize(
    ("mode", "tenant", "principal", "expected"),
    [
        (IAM, "acme", None, None),  # SigV4 was checked by API Gateway: the platform's backend
        (JWT, "acme", None, (401, "unauthorized")),
        (JWT, "acme", Principal("acme", frozenset()), None),
        (JWT, "acme", Principal("other", frozenset()), (403, "forbidden_tenant")),
        (JWT, "acme", Principal("ACME", frozenset()), (403, "forbidden_tenant")),
        (JWT, "acme", Principal(None, frozenset()), (403, "forbidden_tenant")),
        (JWT, "acme", Principal(None, frozenset({"revsync/admin"})), None),
        (JWT, "acme", Principal("other", frozenset({"revsync/admin"})), None),
        (
            JWT,
            "acme",
            Principal("other", frozenset({"revsync/admin:read", "admin"})),
            (403, "forbidden_tenant"),
        ),
    ],
)
def test_a_token_acts_on_its_tenant_unless_it_is_the_operator(
    mode: str, tenant: str, principal: Principal | None, expected: tuple[int, str] | None
) -> None:
    assert _refused(mode, tenant, principal) == expected


def test_the_callback_returns_the_browser_where_the_stack_says() -> None:
    base = "https://api.example.com"
    assert (
        settings_location(base, "acme", return_url=None, app_shell=False)
        == f"{base}/tenants/acme/stripe/settings?connected=1"
    )
    assert (
        settings_location(base, "acme", return_url=None, app_shell=True)
        == f"{base}/settings?tenant=acme&connected=1"
    )
    assert (
        settings_location(
            base, "a b", return_url="https://app.example.com/t/{tenant_id}/billing", app_shell=True
        )
        == "https://app.example.com/t/a%20b/billing?connected=1"
    )
    assert (
        settings_location(base, "acme", return_url="https://app.example.com/stripe?tab=1", app_shell=False)
        == "https://app.example.com/stripe?tab=1&connected=1"
    )
