"""Webhook → SQS → worker → DynamoDB → read route, through the real handlers on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from revsync.store.models import CustomerRecordItem

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration

NOW = FROZEN_NOW


def _record(stack: InProcessStack, tenant: str, external_id: str) -> dict[str, Any] | None:
    response = stack.request("GET", f"/tenants/{tenant}/customers/{external_id}")
    if response.status == 404:
        return None
    assert response.status == 200, response.body
    return response.json()  # type: ignore[no-any-return]


def _post(stack: InProcessStack, event: dict[str, Any], **kwargs: Any) -> None:
    response = stack.post_webhook(event, PLATFORM_SECRET, **kwargs)
    assert response.status == 200, response.body


@pytest.mark.parametrize("via", ["api", "url"])  # the HTTP API's route, the receiver's function URL
def test_event_is_applied_and_readable(stack: InProcessStack, connect_oauth: Any, via: str) -> None:
    connect_oauth("acme", "acct_acme")
    customer = S.customer("cus_1", email="ada@example.com", metadata={"app_id": "u-1"})
    sub = S.subscription("cus_1", [S.subscription_item(S.price(2500), quantity=2)], status="active")
    _post(stack, S.event("customer.created", customer, created=NOW - 30, account="acct_acme"), via=via)
    _post(
        stack, S.event("customer.subscription.created", sub, created=NOW - 20, account="acct_acme"), via=via
    )

    stats = stack.drain()

    assert (stats.received, stats.failed) == (2, 0)
    record = _record(stack, "acme", "u-1")
    assert record is not None
    assert record["stripe_customer_id"] == "cus_1"
    assert record["matched"] is True
    assert record["mrr"] == 5000
    assert record["traits"]["stripe.email"] == "ada@example.com"
    assert record["subscriptions"][sub["id"]]["status"] == "active"


def test_same_event_twice_has_one_effect(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    sub = S.subscription("cus_1", status="active")
    invoice = S.invoice("cus_1", sub["id"], amount_paid=1200)
    paid = S.event("invoice.paid", invoice, created=NOW - 10, account="acct_acme")
    _post(
        stack,
        S.event(
            "customer.created",
            S.customer("cus_1", metadata={"app_id": "u-1"}),
            created=NOW - 30,
            account="acct_acme",
        ),
    )
    _post(stack, paid)
    # Stripe's retry of the same delivery, even to the other entrance: FIFO dedupes it by event id.
    _post(stack, paid, via="url")
    assert stack.queue_depth("EventsQueue") == 2
    stack.drain()
    first = _record(stack, "acme", "u-1")

    # The same event again after the dedupe window, and the same invoice as payment_succeeded.
    _post(stack, {**paid, "id": "evt_replayed_later"})
    _post(stack, S.event("invoice.payment_succeeded", invoice, created=NOW - 10, account="acct_acme"))
    stack.drain()

    assert first is not None
    assert first["total_paid"] == 1200
    assert _record(stack, "acme", "u-1") == first


def test_older_snapshot_after_newer_is_ignored(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    newer = S.customer("cus_1", name="New name", metadata={"app_id": "u-1"})
    older = S.customer("cus_1", name="Old name", metadata={"app_id": "u-1"})
    _post(stack, S.event("customer.updated", newer, created=NOW - 10, account="acct_acme"))
    stack.drain()
    _post(stack, S.event("customer.updated", older, created=NOW - 60, account="acct_acme"))
    stack.drain()

    record = _record(stack, "acme", "u-1")
    assert record is not None
    assert record["traits"]["stripe.name"] == "New name"


def test_deleted_customer_stays_deleted_when_an_older_update_arrives(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("acme", "acct_acme")
    customer = S.customer("cus_1", metadata={"app_id": "u-1"})
    sub = S.subscription("cus_1", status="active")
    _post(stack, S.event("customer.subscription.created", sub, created=NOW - 50, account="acct_acme"))
    _post(stack, S.event("customer.deleted", customer, created=NOW - 10, account="acct_acme"))
    stack.drain()
    _post(
        stack,
        S.event("customer.updated", {**customer, "name": "late"}, created=NOW - 40, account="acct_acme"),
    )
    stack.drain()

    record = _record(stack, "acme", "u-1")
    assert record is not None
    assert record["deleted_in_stripe"] is True
    assert record["churned"] is True
    assert record["churned_at"] == NOW - 10
    assert record["mrr"] == 0
    assert record["next_renewal_at"] is None
    assert record["traits"]["stripe.name"] is None


def _signed(event: dict[str, Any], secret: str, timestamp: int) -> tuple[bytes, str]:
    from revsync.domain.signature import sign_header

    body = json.dumps(event).encode()
    return body, sign_header(secret, timestamp, body)


@pytest.mark.parametrize(
    ("case", "expected_error"),
    [
        ("tampered_body", "bad_signature"),
        ("wrong_secret", "bad_signature"),
        ("expired_timestamp", "signature_expired"),
        ("future_timestamp", "signature_in_future"),
        ("missing_header", "missing_signature"),
        ("garbage_header", "bad_signature_header"),
        ("non_ascii_signature", "bad_signature"),
        ("bad_base64", "bad_encoding"),
    ],
)
def test_bad_requests_are_4xx_and_queue_nothing(
    stack: InProcessStack, connect_oauth: Any, case: str, expected_error: str
) -> None:
    connect_oauth("acme", "acct_acme")
    event = S.event("customer.created", S.customer("cus_1"), created=NOW, account="acct_acme")
    body, header = _signed(event, PLATFORM_SECRET, NOW)
    if case == "tampered_body":
        body = body.replace(b"cus_1", b"cus_2")
    elif case == "wrong_secret":
        body, header = _signed(event, "whsec_someone_else", NOW)
    elif case == "expired_timestamp":
        body, header = _signed(event, PLATFORM_SECRET, NOW - 301)
    elif case == "future_timestamp":
        body, header = _signed(event, PLATFORM_SECRET, NOW + 3600)
    elif case == "missing_header":
        header = ""
    elif case == "garbage_header":
        header = "v0=abc"
    elif case == "non_ascii_signature":
        header = f"t={NOW},v1=\u00e9"

    if case == "bad_base64":
        route = next(
            r
            for r in __import__("local.template", fromlist=["http_routes"]).http_routes()
            if r.path == "/webhooks/stripe"
        )
        from local.apigw import http_event

        api_event = http_event(
            route,
            "/webhooks/stripe",
            {},
            b"\x00\x01",
            {"content-type": "application/octet-stream", "stripe-signature": header},
        )
        api_event["body"] = "!!!not base64!!!"
        result = lambda_runtime.invoke("WebhookFunction", api_event)
        status, payload = result["statusCode"], json.loads(result["body"])
    else:
        response = stack.post_webhook(None, PLATFORM_SECRET, body=body, signature=header)
        status, payload = response.status, response.json()

    assert 400 <= status < 500
    assert payload["error"] == expected_error
    assert payload["message"]
    assert stack.queue_depth("EventsQueue") == 0
    assert stack.queue_depth("EventsDeadLetterQueue") == 0


def test_signed_but_unreadable_deliveries_are_parked_then_read_again_on_redrive(
    stack: InProcessStack, connect_oauth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing Stripe sent is lost: what revsync cannot read is kept whole with its reason."""
    connect_oauth("acme", "acct_acme")
    # Its customer, without the trait's value: the record is stripe:cus_1 once the subscription lands.
    customer = S.event("customer.created", S.customer("cus_1"), created=NOW - 9, account="acct_acme")
    assert stack.post_webhook(customer, PLATFORM_SECRET).status == 200
    stack.drain()
    sub = S.subscription("cus_1", [S.subscription_item(S.price(2500))], status="active")
    sub["items"]["data"][0]["price"]["tiers"] = 5  # the shape that used to be a 500
    unreadable = S.event("customer.subscription.created", sub, created=NOW - 5, account="acct_acme")
    not_json = b'{"id": "evt_1", "object": "event",'
    response = stack.post_webhook(unreadable, PLATFORM_SECRET)
    assert (response.status, response.json()["parked"]) == (200, "invalid_object")
    response = stack.post_webhook(None, PLATFORM_SECRET, body=not_json)
    assert (response.status, response.json()["parked"]) == (200, "malformed_json")
    assert stack.queue_depth("EventsQueue") == 0
    assert stack.queue_depth("EventsDeadLetterQueue") == 2

    # The fix ships: a reader that takes such tiers as absent (simulated by patching the parser).
    from revsync.domain import snapshots

    real_parse_price = snapshots.parse_price

    def fixed_parse_price(price: Any, plan: Any) -> Any:
        if isinstance(price, dict) and not isinstance(price.get("tiers"), list | None):
            price = {**price, "tiers": None}
        return real_parse_price(price, plan)

    monkeypatch.setattr(snapshots, "parse_price", fixed_parse_price)
    sqs = stack.client("sqs")
    from local.redrive import redrive

    result = redrive(sqs, stack.queue_url("EventsDeadLetterQueue"), stack.queue_url("EventsQueue"))
    assert (result.moved, set(result.reasons)) == (2, {"invalid_object", "malformed_json"})
    stats = stack.drain()
    assert stats.received == 2
    # The readable one is applied from the bytes Stripe signed...
    record = _record(stack, "acme", "stripe:cus_1")
    assert record is not None
    assert record["mrr"] == 2500
    # ...and what this code still cannot read is parked again with its reason, never dropped.
    [parked] = sqs.receive_message(
        QueueUrl=stack.queue_url("EventsDeadLetterQueue"),
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
    )["Messages"]
    assert parked["MessageAttributes"]["reason"]["StringValue"].startswith("EventError: malformed_json")


def test_body_over_the_cap_is_413(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    huge = S.customer("cus_1", metadata={"blob": "x" * 300_000})
    response = stack.post_webhook(
        S.event("customer.updated", huge, created=NOW, account="acct_acme"), PLATFORM_SECRET
    )
    assert response.status == 413
    assert response.json()["error"] == "body_too_large"
    assert stack.queue_depth("EventsQueue") == 0


def test_base64_body_and_several_signatures_are_accepted(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    event = S.event(
        "customer.created", S.customer("cus_1", metadata={"app_id": "u-1"}), created=NOW, account="acct_acme"
    )
    # During a secret roll Stripe signs with the old and the new secret.
    response = stack.post_webhook(
        event, ["whsec_old_rolled", PLATFORM_SECRET], content_type="application/octet-stream"
    )
    assert response.status == 200, response.body
    assert stack.queue_depth("EventsQueue") == 1


def test_unknown_account_is_acknowledged_and_nothing_is_written(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("acme", "acct_acme")
    response = stack.post_webhook(
        S.event(
            "customer.created",
            S.customer("cus_x", metadata={"app_id": "u-9"}),
            created=NOW,
            account="acct_nobody",
        ),
        PLATFORM_SECRET,
    )
    assert response.status == 200
    assert response.json() == {"received": True, "ignored": "unknown_account"}
    assert stack.queue_depth("EventsQueue") == 0
    assert list(CustomerRecordItem.scan()) == []


def test_unhandled_types_livemode_mismatch_and_disconnected_are_dropped(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("acme", "acct_acme")
    connect_oauth("live", "acct_live", livemode=True)
    from revsync.domain.tenancy import Connection, Tenant
    from revsync.store.tenants import TenantStore

    TenantStore().save(Tenant("gone", Connection("revoked", "oauth", "acct_gone")), NOW)
    cases = {
        "unhandled_type": S.event(
            "charge.succeeded", {"id": "ch_1", "object": "charge"}, created=NOW, account="acct_acme"
        ),
        "livemode_mismatch": S.event(
            "customer.created", S.customer("cus_1"), created=NOW, account="acct_live"
        ),
        "not_connected": S.event("customer.created", S.customer("cus_1"), created=NOW, account="acct_gone"),
        "no_account": S.event("customer.created", S.customer("cus_1"), created=NOW),
    }
    for reason, event in cases.items():
        response = stack.post_webhook(event, PLATFORM_SECRET)
        assert (response.status, response.json().get("ignored")) == (200, reason)
    assert stack.queue_depth("EventsQueue") == 0


def test_two_tenants_never_see_each_others_data(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    connect_oauth("globex", "acct_globex")
    # Both tenants' Stripe accounts happen to use the same customer id and the same app id.
    for account, amount in (("acct_acme", 1000), ("acct_globex", 7000)):
        _post(
            stack,
            S.event(
                "customer.created",
                S.customer("cus_same", metadata={"app_id": "u-1"}),
                created=NOW - 5,
                account=account,
            ),
        )
        sub = S.subscription("cus_same", [S.subscription_item(S.price(amount))], status="active")
        _post(stack, S.event("customer.subscription.created", sub, created=NOW - 4, account=account))
    stack.drain()

    acme, globex = _record(stack, "acme", "u-1"), _record(stack, "globex", "u-1")
    assert acme is not None
    assert globex is not None
    assert (acme["tenant_id"], acme["mrr"]) == ("acme", 1000)
    assert (globex["tenant_id"], globex["mrr"]) == ("globex", 7000)
    assert _record(stack, "initech", "u-1") is None


def test_enqueue_failure_is_5xx(
    stack: InProcessStack, connect_oauth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_oauth("acme", "acct_acme")
    stack.client("sqs").delete_queue(QueueUrl=stack.queue_url("EventsQueue"))
    response = stack.post_webhook(
        S.event("customer.created", S.customer("cus_1"), created=NOW, account="acct_acme"), PLATFORM_SECRET
    )
    assert response.status == 503
    assert response.json()["error"] == "enqueue_failed"


def _sqs_record(message_id: str, body: str, group: str, receive_count: int = 1) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "0",
            "SenderId": "x",
            "ApproximateFirstReceiveTimestamp": "0",
            "MessageGroupId": group,
            "MessageDeduplicationId": message_id,
            "SequenceNumber": "1",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:revsync-local-events.fifo",
        "awsRegion": "us-east-1",
    }


def _envelope(tenant: str, customer_id: str, created: int) -> str:
    from revsync.domain.events import envelope_for, parse_event

    event = parse_event(
        json.dumps(
            S.event(
                "customer.updated",
                S.customer(customer_id, metadata={"app_id": customer_id}),
                created=created,
                account="acct_acme",
            )
        ).encode()
    )
    envelope = envelope_for(event, tenant)
    return json.dumps(envelope)


def test_worker_failure_on_one_record_reports_only_that_record(
    stack: InProcessStack, connect_oauth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_oauth("acme", "acct_acme")
    from revsync.store.customers import CustomerStore

    original = CustomerStore.load

    def flaky(self: CustomerStore, tenant_id: str, customer_id: str) -> Any:
        if customer_id == "cus_bad":
            raise RuntimeError("DynamoDB throttled")
        return original(self, tenant_id, customer_id)

    monkeypatch.setattr(CustomerStore, "load", flaky)
    event = {
        "Records": [
            _sqs_record("m1", _envelope("acme", "cus_ok1", NOW), "acme#cus_ok1"),
            _sqs_record("m2", _envelope("acme", "cus_bad", NOW), "acme#cus_bad"),
            _sqs_record("m3", _envelope("acme", "cus_ok2", NOW), "acme#cus_ok2"),
        ]
    }
    result = lambda_runtime.invoke("WorkerFunction", event)

    assert result == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert _record(stack, "acme", "cus_ok1") is not None
    assert _record(stack, "acme", "cus_ok2") is not None


def _dead_letters(stack: InProcessStack) -> list[dict[str, Any]]:
    messages = (
        stack.client("sqs")
        .receive_message(
            QueueUrl=stack.queue_url("EventsDeadLetterQueue"),
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
    return messages  # type: ignore[no-any-return]


def test_poison_message_lands_in_the_dlq_with_its_reason(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    result = lambda_runtime.invoke(
        "WorkerFunction", {"Records": [_sqs_record("m1", "{not json", "acme#cus_1")]}
    )

    assert result == {"batchItemFailures": []}  # parked, not retried
    [parked] = _dead_letters(stack)
    assert parked["Body"] == "{not json"
    assert parked["MessageAttributes"]["reason"]["StringValue"] == "EventError: queue message is not JSON"


def test_message_that_keeps_failing_is_parked_on_its_last_delivery(
    stack: InProcessStack, connect_oauth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_oauth("acme", "acct_acme")
    from revsync.store.customers import CustomerStore

    def always_fails(self: CustomerStore, tenant_id: str, customer_id: str) -> Any:
        raise RuntimeError("table unavailable")

    monkeypatch.setattr(CustomerStore, "load", always_fails)
    body = _envelope("acme", "cus_1", NOW)
    # A batch whose every record failed fails the invocation: Lambda retries the whole batch.
    with pytest.raises(BatchProcessingError):
        lambda_runtime.invoke("WorkerFunction", {"Records": [_sqs_record("m1", body, "acme#cus_1", 1)]})
    assert _dead_letters(stack) == []

    last = lambda_runtime.invoke("WorkerFunction", {"Records": [_sqs_record("m1", body, "acme#cus_1", 5)]})
    assert last == {"batchItemFailures": []}
    [parked] = _dead_letters(stack)
    assert parked["Body"] == body
    assert parked["MessageAttributes"]["reason"]["StringValue"] == "RuntimeError: table unavailable"


def test_record_moves_when_its_customer_id_changes(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    dynamodb = stack.client("dynamodb")
    # The platform already knows u-2 (from its analytics import).
    dynamodb.put_item(
        TableName="revsync-local-customers",
        Item={"tenant_id": {"S": "acme"}, "external_id": {"S": "u-2"}, "seats": {"N": "5"}},
    )
    unmatched = S.customer("cus_1", name="Ada")
    _post(stack, S.event("customer.created", unmatched, created=NOW - 30, account="acct_acme"))
    _post(
        stack,
        S.event(
            "customer.subscription.created", S.subscription("cus_1"), created=NOW - 29, account="acct_acme"
        ),
    )
    stack.drain()
    kept = _record(stack, "acme", "stripe:cus_1")
    assert kept is not None
    assert (kept["matched"], kept["mrr"]) == (False, 1000)

    _post(
        stack,
        S.event(
            "customer.updated",
            {**unmatched, "metadata": {"app_id": "u-1"}},
            created=NOW - 20,
            account="acct_acme",
        ),
    )
    stack.drain()
    assert _record(stack, "acme", "stripe:cus_1") is None
    moved = _record(stack, "acme", "u-1")
    assert moved is not None
    assert (moved["matched"], moved["mrr"]) == (True, 1000)

    _post(
        stack,
        S.event(
            "customer.updated",
            {**unmatched, "metadata": {"app_id": "u-2"}},
            created=NOW - 10,
            account="acct_acme",
        ),
    )
    stack.drain()
    assert _record(stack, "acme", "u-1") is None
    assert "Item" not in dynamodb.get_item(
        TableName="revsync-local-customers", Key={"tenant_id": {"S": "acme"}, "external_id": {"S": "u-1"}}
    )
    merged = dynamodb.get_item(
        TableName="revsync-local-customers", Key={"tenant_id": {"S": "acme"}, "external_id": {"S": "u-2"}}
    )["Item"]
    assert merged["seats"] == {"N": "5"}  # the platform's attribute survives
    assert merged["stripe_customer_id"] == {"S": "cus_1"}
    assert merged["mrr"] == {"N": "1000"}

    # Leaving a key the platform also uses: revsync's attributes go, the platform's stay.
    _post(
        stack,
        S.event(
            "customer.updated",
            {**unmatched, "metadata": {"app_id": "u-3"}},
            created=NOW - 5,
            account="acct_acme",
        ),
    )
    stack.drain()
    left = dynamodb.get_item(
        TableName="revsync-local-customers", Key={"tenant_id": {"S": "acme"}, "external_id": {"S": "u-2"}}
    )["Item"]
    assert left == {"tenant_id": {"S": "acme"}, "external_id": {"S": "u-2"}, "seats": {"N": "5"}}
    assert _record(stack, "acme", "u-3") is not None


def test_gateway_base64_encodes_a_text_body_that_is_not_utf8(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    """Regression: the local gateway crashed on such a body; API Gateway base64-encodes it."""
    connect_oauth("acme", "acct_acme")
    unsigned = stack.post_webhook(None, PLATFORM_SECRET, body=b"\xff\xfe{", signature="t=1,v1=00")
    assert (unsigned.status, unsigned.json()["error"]) == (400, "signature_expired")
    signed = stack.post_webhook(None, PLATFORM_SECRET, body=b"\xff\xfe{", content_type="text/plain")
    assert (signed.status, signed.json()["parked"]) == (200, "malformed_json")  # kept, not lost


@pytest.mark.parametrize("state", ["%C3%A9", "%C3%A9.%C3%A9", "a.%F0%9F%98%80", "%FF%FE", "x" * 5000])
def test_oauth_callback_with_a_non_ascii_or_odd_state_is_a_clear_400(
    stack: InProcessStack, state: str
) -> None:
    """Regression: a non-ASCII state reached hmac.compare_digest as str (a 500)."""
    response = stack.request("GET", "/oauth/stripe/callback", query=f"code=ac_1&state={state}")
    assert response.status == 400
    assert "Stripe was not connected" in response.body
