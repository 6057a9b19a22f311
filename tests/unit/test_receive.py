"""The receiver's decisions, with in-memory tenants, secrets and queue."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model, LambdaFunctionUrlModel
from revsync.domain.events import parked_body
from revsync.domain.signature import sign_header
from revsync.domain.tenancy import Connection, Tenant, TenantRoute
from revsync.errors import RevsyncError
from revsync.http_errors import status_of
from revsync.services.receive import WebhookRequest, receive

from local import apigw
from local import stripe_shapes as S
from local.template import HttpRoute, http_routes
from tests.fakes import FakeDirectory, FakeQueue, FakeSecrets

NOW = 1_750_000_000


def _request(
    event: dict[str, object], secret: str = "whsec_platform", tenant_id: str | None = None
) -> WebhookRequest:
    body = json.dumps(event).encode()
    return WebhookRequest(body=body, signature=sign_header(secret, NOW, body), tenant_id=tenant_id)


def _deps() -> tuple[FakeDirectory, FakeSecrets, FakeQueue]:
    directory = FakeDirectory(
        by_accounts={"acct_1": TenantRoute("acme", "connected", False, "oauth")},
        by_tenants={"direct": TenantRoute("direct", "connected", False, "api_key", "revsync/t/direct")},
    )
    return directory, FakeSecrets(tenant_secrets={"revsync/t/direct": ["whsec_direct"]}), FakeQueue()


def test_connect_event_is_queued_with_tenant_and_group() -> None:
    directory, secrets, queue = _deps()
    event = S.event("customer.updated", S.customer("cus_1"), created=NOW, account="acct_1")
    response = receive(
        _request(event), tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW
    )
    assert (response.status, response.outcome) == (200, "queued")
    [envelope] = queue.sent
    assert (envelope["tenant_id"], envelope["event_id"]) == ("acme", event["id"])
    assert envelope["observation"] is not None
    assert envelope["observation"]["snapshot"]["id"] == "cus_1"


def test_direct_route_uses_the_tenants_own_secret() -> None:
    directory, secrets, queue = _deps()
    event = S.event("customer.updated", S.customer("cus_1"), created=NOW)
    ok = receive(
        _request(event, "whsec_direct", "direct"),
        tenants=directory,
        secrets=secrets,
        queue=queue,
        parked=queue,
        now=NOW,
    )
    platform_signed = receive(
        _request(event, "whsec_platform", "direct"),
        tenants=directory,
        secrets=secrets,
        queue=queue,
        parked=queue,
        now=NOW,
    )
    assert ok.status == 200
    assert (platform_signed.status, platform_signed.body["error"]) == (400, "bad_signature")
    assert len(queue.sent) == 1
    assert queue.sent[0]["tenant_id"] == "direct"


def test_a_direct_tenant_with_sealed_secrets_is_verified_with_them_and_only_its_own() -> None:
    directory, secrets, queue = _deps()
    sealed = secrets.seal("sealed", "rk_test_sealed", "whsec_old, whsec_new")  # a roll: both sign
    directory.save(Tenant("sealed", Connection("connected", "api_key", sealed=sealed)))
    directory.save(Tenant("other", Connection("connected", "api_key", sealed=sealed)))  # copied over
    event = S.event("customer.updated", S.customer("cus_1"), created=NOW)
    statuses = [
        receive(
            _request(event, secret, tenant),
            tenants=directory,
            secrets=secrets,
            queue=queue,
            parked=queue,
            now=NOW,
        ).status
        for secret, tenant in (
            ("whsec_old", "sealed"),
            ("whsec_new", "sealed"),
            ("whsec_direct", "sealed"),
            ("whsec_old", "other"),
        )
    ]
    assert statuses == [200, 200, 400, 503]  # another tenant's ciphertext does not open: a retry, not a 2xx
    assert [envelope["tenant_id"] for envelope in queue.sent] == ["sealed"]  # one event id, deduplicated


def test_unhandled_type_is_dropped_before_any_lookup() -> None:
    directory, secrets, queue = _deps()
    event = S.event("payment_intent.created", {"id": "pi_1"}, created=NOW, account="acct_1")
    response = receive(
        _request(event), tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW
    )
    assert response.body == {"received": True, "ignored": "unhandled_type"}
    assert directory.lookups == 0
    assert queue.sent == []


@pytest.mark.parametrize("tenant_id", ["../etc", "a" * 65, "with space"])
def test_invalid_path_tenant_is_400(tenant_id: str) -> None:
    directory, secrets, queue = _deps()
    response = receive(
        _request(S.event("customer.updated", S.customer(), created=NOW), tenant_id=tenant_id),
        tenants=directory,
        secrets=secrets,
        queue=queue,
        parked=queue,
        now=NOW,
    )
    assert (response.status, response.body["error"]) == (400, "invalid_tenant_id")


def test_unknown_direct_tenant_is_acknowledged() -> None:
    directory, secrets, queue = _deps()
    response = receive(
        _request(S.event("customer.updated", S.customer(), created=NOW), tenant_id="nobody"),
        tenants=directory,
        secrets=secrets,
        queue=queue,
        parked=queue,
        now=NOW,
    )
    assert (response.status, response.body["ignored"]) == (200, "unknown_tenant")
    assert queue.sent == []


def test_enqueue_failure_is_503() -> None:
    directory, secrets, _ = _deps()
    queue = FakeQueue(fail=True)
    event = S.event("customer.updated", S.customer("cus_1"), created=NOW, account="acct_1")
    response = receive(
        _request(event), tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW
    )
    assert (response.status, response.body["error"]) == (503, "enqueue_failed")


def test_signed_event_with_an_unreadable_object_is_parked_and_acknowledged() -> None:
    directory, secrets, queue = _deps()
    sub = S.subscription("cus_1")
    del sub["status"]
    request = _request(S.event("customer.subscription.updated", sub, created=NOW, account="acct_1"))
    response = receive(request, tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW)
    assert (response.status, response.outcome) == (200, "parked:invalid_object")
    assert queue.sent == []
    [parked] = queue.parked
    assert parked["reason"].startswith("invalid_object: customer.subscription.updated")
    assert parked_body(parked) == request.body  # kept whole, to be read again after a fix
    assert parked["tenant_id"] is None  # routed again by the event's account on redrive


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("items", "data", 0, "price", "tiers"), 5),  # the 500 that was found: tiers is a number
        (("items", "data", 0, "price", "unit_amount_decimal"), "NaN"),
        (("items", "data", 0, "quantity"), "2"),
        (("items", "data"), {"not": "a list"}),
        (("currency",), ["usd"]),
        (("cancel_at_period_end",), "yes"),
        (("discounts",), 7),
    ],
)
def test_wrongly_typed_nested_fields_are_parked_never_an_exception(
    path: tuple[str | int, ...], value: object
) -> None:
    directory, secrets, queue = _deps()
    sub = S.subscription("cus_1", [S.subscription_item(S.price(1000, tiers=None))], status="active")
    target: Any = sub
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    request = _request(S.event("customer.subscription.updated", sub, created=NOW, account="acct_1"))
    response = receive(request, tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW)
    assert (response.status, response.outcome) == (200, "parked:invalid_object")
    assert len(queue.parked) == 1
    assert queue.sent == []


def test_signed_body_that_is_not_an_event_is_parked() -> None:
    directory, secrets, queue = _deps()
    body = b'{"id": "evt_1", "object": "event",'
    request = WebhookRequest(body=body, signature=sign_header("whsec_platform", NOW, body), tenant_id=None)
    response = receive(request, tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW)
    assert (response.status, response.outcome) == (200, "parked:malformed_json")
    assert parked_body(queue.parked[0]) == body


def test_events_of_unknown_accounts_are_dropped_not_parked_even_if_unreadable() -> None:
    directory, secrets, queue = _deps()
    sub = S.subscription("cus_1")
    del sub["status"]
    request = _request(S.event("customer.subscription.updated", sub, created=NOW, account="acct_other"))
    response = receive(request, tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW)
    assert (response.status, response.outcome) == (200, "dropped:unknown_account")
    assert queue.parked == []


@pytest.mark.parametrize(
    "header",
    [
        f"t={NOW},v1=\u00e9",
        f"t={NOW},v1=\ud800",
        "t=\u0663,v1=abc",
        f"t={NOW},v1=" + "\u00fc" * 64,
        "t=1_750_000_000,v1=00",
        f"t={'9' * 5000},v1=00",
        f"t={NOW},v1=\x00",
    ],
)
def test_non_ascii_or_odd_signature_headers_are_400(header: str) -> None:
    """Regression: hmac.compare_digest raised TypeError on a non-ASCII str (a 500)."""
    directory, secrets, queue = _deps()
    event = S.event("customer.updated", S.customer("cus_1"), created=NOW, account="acct_1")
    request = WebhookRequest(body=json.dumps(event).encode(), signature=header, tenant_id=None)
    response = receive(request, tenants=directory, secrets=secrets, queue=queue, parked=queue, now=NOW)
    assert response.status == 400
    assert (queue.sent, queue.parked) == ([], [])


def _route(path: str) -> HttpRoute:
    [route] = [r for r in http_routes() if r.function == "WebhookFunction" and r.path == path]
    return route


def _entrances(
    path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> dict[str, dict[str, Any]]:
    """The same request as the HTTP API's route and as the receiver's function URL deliver it,
    each checked against Powertools' parser model of that event source (not our builders' idea)."""
    template_path = "/webhooks/stripe/{tenant_id}" if path.count("/") > 2 else "/webhooks/stripe"
    # An HTTP API hands over the path percent-decoded; a function URL as it was sent.
    decoded = unquote(path)
    params = apigw.match(_route(template_path), "POST", decoded) or {}
    http_api = apigw.http_event(_route(template_path), decoded, params, body, headers)
    function_url = apigw.function_url_event(method, path, body, headers)
    APIGatewayProxyEventV2Model.model_validate(http_api)
    LambdaFunctionUrlModel.model_validate(function_url)
    return {"http_api": http_api, "function_url": function_url}


@pytest.mark.parametrize(
    ("path", "tenant_id"),
    [
        ("/webhooks/stripe", None),
        ("/webhooks/stripe/direct", "direct"),
        ("/webhooks/stripe/dir%65ct", "direct"),  # percent-encoded: a function URL passes it so
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_both_entrances_read_the_same_request(path: str, tenant_id: str | None, content_type: str) -> None:
    body = b'{"a": 1}'
    headers = {"Stripe-Signature": "t=1,v1=x", "content-type": content_type}
    for name, event in _entrances(path, body, headers).items():
        request = WebhookRequest.from_http_event(event, 1024)
        assert (request.body, request.signature, request.tenant_id) == (body, "t=1,v1=x", tenant_id), name
        if name == "http_api" and tenant_id is not None:
            assert event["pathParameters"] == {"tenant_id": tenant_id}


def test_a_custom_domains_mapping_key_before_the_path_is_allowed() -> None:
    event = apigw.function_url_event("POST", "/revsync/webhooks/stripe/direct", b"{}", {})
    assert WebhookRequest.from_http_event(event, 1024).tenant_id == "direct"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/", 404, "not_found"),
        ("POST", "/webhooks", 404, "not_found"),
        ("POST", "/webhooks/stripe/direct/extra", 404, "not_found"),
        ("POST", "/webhooks/stripes", 404, "not_found"),
        ("GET", "/webhooks/stripe", 405, "method_not_allowed"),
        ("PUT", "/webhooks/stripe/direct", 405, "method_not_allowed"),
        ("GET", "/favicon.ico", 404, "not_found"),
    ],
)
def test_the_function_url_answers_only_the_webhook_routes(
    method: str, path: str, status: int, code: str
) -> None:
    """A function URL has no router: whatever reaches it that is not a webhook POST is a 4xx."""
    event = apigw.function_url_event(method, path, b"{}", {"content-type": "application/json"})
    LambdaFunctionUrlModel.model_validate(event)
    with pytest.raises(RevsyncError) as rejected:
        WebhookRequest.from_http_event(event, 1024)
    assert (status_of(rejected.value), rejected.value.code) == (status, code)


def test_oversized_or_badly_encoded_bodies_are_4xx_at_either_entrance() -> None:
    for event in _entrances("/webhooks/stripe", b"x" * 2000, {"content-type": "text/plain"}).values():
        with pytest.raises(RevsyncError) as too_big:
            WebhookRequest.from_http_event(event, 1024)
        assert status_of(too_big.value) == 413
    for event in _entrances("/webhooks/stripe", b"\xff\x00", {}).values():
        event["body"] = "not base64!"
        with pytest.raises(RevsyncError) as bad:
            WebhookRequest.from_http_event(event, 1024)
        assert (status_of(bad.value), bad.value.code) == (400, "bad_encoding")
