"""Connecting Stripe by OAuth against the sandbox, every failure storing nothing, trait discovery,
and deauthorization from either side, over HTTP on the local stack."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from revsync.domain import oauth_state
from revsync.domain.signature import sign_header

from local.http import http
from local.stack import LocalStack
from tests.e2e.conftest import free_ports
from tests.e2e.test_backfill import wait_backfill

pytestmark = pytest.mark.e2e
STATE_KEY = "e2e-state-signing-key"


@pytest.fixture(scope="module")
def stack(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch_module.setenv("REVSYNC_STATE_KEY", STATE_KEY)
    with LocalStack(ports=free_ports()) as running:
        yield running


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def get(url: str) -> tuple[int, str, str]:
    """GET without following redirects: (status, Location, body)."""
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=30) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", ""), error.read().decode()


def authorize(stack: LocalStack, tenant_id: str, **sandbox: str) -> str:
    """Start the flow and go through the sandbox's authorize page; returns the callback URL."""
    status, body = stack.admin("POST", f"/tenants/{tenant_id}/stripe/connect")
    assert status == 200, body
    url = body["authorize_url"]
    assert url.startswith(f"{stack.stripe_url}/oauth/authorize?")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["client_id"] == ["ca_local"]
    assert query["redirect_uri"] == [f"{stack.api_url}/oauth/stripe/callback"]
    status, location, _ = get(url + ("&" + urllib.parse.urlencode(sandbox) if sandbox else ""))
    assert status == 302
    return location


def connection(stack: LocalStack, tenant_id: str) -> dict[str, Any]:
    return stack.admin("GET", f"/tenants/{tenant_id}/stripe")[1]["connection"]  # type: ignore[no-any-return]


def test_oauth_connects_and_syncs_through_the_platform_endpoint(stack: LocalStack) -> None:
    callback = authorize(stack, "oa-ok")
    status, location, _ = get(callback)
    assert status == 302
    # JWT mode (the local stack's): back to the settings page's shell, which holds the browser's token.
    assert location == f"{stack.api_url}/settings?tenant=oa-ok&connected=1"
    connected = connection(stack, "oa-ok")
    assert (connected["status"], connected["mode"], connected["livemode"]) == ("connected", "oauth", False)
    assert connected["scope"] == "read_write"
    account = connected["account_id"]
    assert account.startswith("acct_")

    # The platform key with Stripe-Account reaches the account; its events come to /webhooks/stripe.
    as_platform = stripe.StripeClient(
        "sk_test_platform", stripe_account=account, base_addresses={"api": stack.stripe_url}
    )
    for index in range(3):
        as_platform.v1.customers.create(
            params={"email": f"c{index}@example.com", "metadata": {"app_id": f"a{index}"}}
        )
    http("POST", f"{stack.stripe_url}/_sandbox/config", {"fail_next_requests": 3})
    assert stack.admin("GET", "/tenants/oa-ok/stripe/traits") == (
        502,
        {"error": "stripe_unavailable", "message": "Stripe did not answer as expected; try again."},
    )
    traits = stack.admin("GET", "/tenants/oa-ok/stripe/traits")[1]
    assert traits["sampled"] == 3
    assert {c["trait"]: c["customers"] for c in traits["candidates"]} == {
        "id": 3,
        "email": 3,
        "metadata.app_id": 3,
    }
    assert (
        stack.admin("PUT", "/tenants/oa-ok/stripe/config", {"customer_id_trait": "metadata.app_id"})[0] == 200
    )
    as_platform.v1.customers.create(params={"email": "late@example.com", "metadata": {"app_id": "a-late"}})
    http("POST", f"{stack.api_url}/_local/flush")
    assert wait_backfill(stack, "oa-ok")["state"] == "succeeded"
    for app_id in ("a0", "a1", "a2", "a-late"):
        assert stack.admin("GET", f"/tenants/oa-ok/customers/{app_id}")[0] == 200, app_id


def stack_post_webhook(stack: LocalStack, event: dict[str, Any]) -> tuple[int, Any]:
    """POST an event as Stripe does to the platform's Connect endpoint, signed with its secret."""
    body = json.dumps(event).encode()
    headers = {
        "Stripe-Signature": sign_header(stack.webhook_secret, int(time.time()), body),
        "content-type": "application/json",
    }
    request = urllib.request.Request(
        f"{stack.api_url}/webhooks/stripe", data=body, method="POST", headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def _refused(stack: LocalStack, tenant_id: str, url: str, status: int, text: str) -> None:
    got, _, body = get(url)
    assert got == status, body
    assert text in body
    assert connection(stack, tenant_id)["status"] == "none"  # nothing stored


def test_every_callback_failure_is_a_clear_page_and_stores_nothing(stack: LocalStack) -> None:
    api = stack.api_url
    denied = authorize(stack, "oa-denied", decision="deny")
    assert "error=access_denied" in denied
    _refused(stack, "oa-denied", denied, 400, "not granted")

    callback = authorize(stack, "oa-tampered")
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)["state"][0]
    _refused(stack, "oa-tampered", callback.replace(state, state[:-2] + "xx"), 400, "not issued by us")

    expired, _ = oauth_state.issue("oa-expired", STATE_KEY, int(time.time()) - 3600)
    _refused(
        stack, "oa-expired", f"{api}/oauth/stripe/callback?code=ac_x&state={expired}", 400, "took too long"
    )

    # Signed by us, but never issued for this tenant (no stored nonce for it): refused.
    foreign, _ = oauth_state.issue("oa-foreign", STATE_KEY, int(time.time()))
    _refused(
        stack, "oa-foreign", f"{api}/oauth/stripe/callback?code=ac_x&state={foreign}", 400, "already used"
    )

    callback = authorize(stack, "oa-badcode")
    bad_code = callback.replace("code=ac_", "code=ac_bogus")
    _refused(stack, "oa-badcode", bad_code, 400, "authorization code")
    _refused(stack, "oa-badcode", callback, 400, "already used")  # the state was spent on the bad code

    # Stripe failing during the exchange: a 502 page, nothing stored.
    callback = authorize(stack, "oa-outage")
    http("POST", f"{stack.stripe_url}/_sandbox/config", {"fail_next_requests": 10})
    try:
        _refused(stack, "oa-outage", callback, 502, "Stripe error")
    finally:
        http("POST", f"{stack.stripe_url}/_sandbox/config", {"fail_next_requests": 0})

    # The same account for a second tenant is refused; the first keeps it.
    first = authorize(stack, "oa-owner")
    assert get(first)[0] == 302
    account = connection(stack, "oa-owner")["account_id"]
    second = authorize(stack, "oa-thief", stripe_account=account)
    _refused(stack, "oa-thief", second, 409, "another tenant")
    assert connection(stack, "oa-owner")["account_id"] == account


def test_deauthorization_from_either_side_stops_that_tenant_only(stack: LocalStack) -> None:
    tenants = {}
    for tenant_id in ("oa-leaves", "oa-removed", "oa-stays"):
        assert get(authorize(stack, tenant_id))[0] == 302
        tenants[tenant_id] = connection(stack, tenant_id)["account_id"]

    status, body = stack.admin("DELETE", "/tenants/oa-leaves/stripe")
    assert (status, body["connection"]["status"]) == (200, "revoked")
    # From Stripe's side: the account removes the platform; Stripe sends account.application.deauthorized.
    platform = stripe.StripeClient(
        "sk_test_platform", base_addresses={"api": stack.stripe_url, "connect": stack.stripe_url}
    )
    platform.oauth.deauthorize(params={"client_id": "ca_local", "stripe_user_id": tenants["oa-removed"]})
    http("POST", f"{stack.api_url}/_local/flush")
    assert connection(stack, "oa-removed")["status"] == "revoked"
    assert connection(stack, "oa-stays")["status"] == "connected"

    stays = stripe.StripeClient(
        "sk_test_platform", stripe_account=tenants["oa-stays"], base_addresses={"api": stack.stripe_url}
    )
    stack.admin("PUT", "/tenants/oa-stays/stripe/config", {"customer_id_trait": "id"})
    kept = stays.v1.customers.create(params={"name": "still synced"})
    http("POST", f"{stack.api_url}/_local/flush")
    assert stack.admin("GET", f"/tenants/oa-stays/customers/{kept.id}")[0] == 200
    assert stack.admin("DELETE", "/tenants/oa-leaves/stripe")[1]["error"] == "not_connected"
    # Events still arriving for the accounts that left are acknowledged and dropped.
    for tenant_id in ("oa-leaves", "oa-removed"):
        event = {
            "id": f"evt_after_{tenant_id}",
            "object": "event",
            "type": "customer.created",
            "created": int(time.time()),
            "livemode": False,
            "account": tenants[tenant_id],
            "data": {"object": {"id": "cus_late", "object": "customer", "metadata": {}}},
        }
        response = stack_post_webhook(stack, event)
        assert response == (200, {"received": True, "ignored": "not_connected"}), tenant_id
