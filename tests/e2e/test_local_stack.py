"""The local stack end to end, over HTTP only: the gateway, the Stripe sandbox, and moto's endpoint."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import boto3
import pytest
import stripe
from revsync.domain.signature import sign_header

from local.stack import LocalStack
from local.template import http_routes
from local.truth import expected_record
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e
DAY = 86_400


def connect_tenant(
    stack: LocalStack, tenant_id: str, trait: str = "metadata.app_id"
) -> tuple[stripe.StripeClient, str]:
    """An API-key tenant: its own sandbox account, a webhook endpoint where the status document says
    (the receiver's function URL), a trait."""
    key, secret = f"rk_test_{secrets.token_hex(12)}", f"whsec_{secrets.token_hex(12)}"
    assert (
        stack.admin(
            "PUT",
            f"/tenants/{tenant_id}/stripe/connection",
            {"api_key": key, "webhook_secret": secret},
        )[0]
        == 200
    )
    client = stripe.StripeClient(key, base_addresses={"api": stack.stripe_url})
    client.v1.webhook_endpoints.create(
        params={  # type: ignore[typeddict-unknown-key,typeddict-item]
            "url": stack.admin("GET", f"/tenants/{tenant_id}/stripe")[1]["webhook_url"],
            "secret": secret,
        }
    )
    assert (
        stack.admin(
            "PUT",
            f"/tenants/{tenant_id}/stripe/config",
            {"customer_id_trait": trait},
        )[0]
        == 200
    )
    return client, secret


def sandbox(stack: LocalStack, path: str, body: dict[str, Any]) -> Any:
    status, answer = http("POST", f"{stack.stripe_url}/_sandbox/{path}", body)
    assert status == 200, answer
    return answer


def test_live_changes_reach_the_records_through_delayed_duplicated_reordered_webhooks(
    local_stack: LocalStack,
) -> None:
    stack = local_stack
    client, _ = connect_tenant(stack, "e2e-acme")
    sandbox(
        stack, "config", {"delivery_delay_ms": 40, "delivery_duplicate_ratio": 0.5, "delivery_reorder": True}
    )
    try:
        basic = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 2000,
                "nickname": "Basic",
                "recurring": {"interval": "month"},
                "product_data": {"name": "Basic"},
            }
        )
        pro = client.v1.prices.create(
            params={
                "currency": "usd",
                "unit_amount": 5000,
                "nickname": "Pro",
                "recurring": {"interval": "month"},
                "product_data": {"name": "Pro"},
            }
        )
        half = client.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})
        ids = {}
        for name in ("trial", "upgrade", "cancel", "leaving", "deleted", "discounted"):
            ids[name] = client.v1.customers.create(
                params={"email": f"{name}@example.com", "metadata": {"app_id": f"u-{name}"}}
            ).id
        client.v1.subscriptions.create(
            params={"customer": ids["trial"], "items": [{"price": basic.id}], "trial_period_days": 60}
        )
        upgrade = client.v1.subscriptions.create(
            params={"customer": ids["upgrade"], "items": [{"price": basic.id}]}
        )
        client.v1.subscriptions.update(
            upgrade.id,
            params={"items": [{"id": upgrade["items"].data[0].id, "price": pro.id, "quantity": 3}]},
        )
        cancel = client.v1.subscriptions.create(
            params={"customer": ids["cancel"], "items": [{"price": pro.id}]}
        )
        client.v1.subscriptions.cancel(cancel.id)
        leaving = client.v1.subscriptions.create(
            params={"customer": ids["leaving"], "items": [{"price": pro.id}]}
        )
        client.v1.subscriptions.update(leaving.id, params={"cancel_at_period_end": True})
        client.v1.subscriptions.create(params={"customer": ids["deleted"], "items": [{"price": pro.id}]})
        client.v1.customers.delete(ids["deleted"])
        client.v1.subscriptions.create(
            params={
                "customer": ids["discounted"],
                "items": [{"price": pro.id}],
                "discounts": [{"coupon": half.id}],
            }
        )
        sandbox(stack, "clock/advance", {"seconds": 31 * DAY})  # renewals paid; `leaving` ends

        assert http("POST", f"{stack.api_url}/_local/flush")[1] == {"flushed": True, "dead_letters": 0}
        for name, customer_id in ids.items():
            status, record = stack.admin("GET", f"/tenants/e2e-acme/customers/u-{name}")
            assert status == 200, (name, record)
            want = expected_record(client, customer_id)
            got = {k: record[k] for k in want}
            assert got == want, name
    finally:
        sandbox(
            stack,
            "config",
            {"delivery_delay_ms": 0, "delivery_duplicate_ratio": 0.0, "delivery_reorder": False},
        )


def test_a_poison_message_ends_in_the_dlq_with_its_reason(local_stack: LocalStack) -> None:
    stack = local_stack
    _, secret = connect_tenant(stack, "e2e-poison")
    # Stripe fails every read from now on (an outage: a 429 would only defer it), so the worker can
    # never resolve this discount's owner.
    sandbox(stack, "config", {"fail_next_requests": 10_000})
    try:
        discount = {
            "id": "di_poison",
            "object": "discount",
            "customer": "cus_poison",
            "subscription": None,
            "source": {"type": "coupon", "coupon": "co_x"},
            "start": 1,
            "end": None,
        }
        event = {
            "id": "evt_poison_1",
            "object": "event",
            "type": "customer.discount.created",
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": discount},
        }
        body = json.dumps(event).encode()
        request_headers = {"Stripe-Signature": sign_header(secret, int(time.time()), body)}
        import urllib.request

        response = urllib.request.urlopen(
            urllib.request.Request(
                f"{stack.api_url}/webhooks/stripe/e2e-poison",
                data=body,
                method="POST",
                headers=request_headers,
            )
        )
        assert response.status == 200
        status, flushed = http("POST", f"{stack.api_url}/_local/flush")
        assert (status, flushed["flushed"]) == (200, True)
        assert flushed["dead_letters"] == 1
    finally:
        sandbox(stack, "config", {"fail_next_requests": 0})
    assert stack.names is not None
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=stack.aws_url)
    [parked] = sqs.receive_message(
        QueueUrl=stack.names.queue_urls["EventsDeadLetterQueue"], MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(parked["Body"])["event_id"] == "evt_poison_1"
    assert parked["MessageAttributes"]["reason"]["StringValue"].startswith("APIError")


def test_the_gateway_serves_exactly_the_templates_routes(local_stack: LocalStack) -> None:
    from tests.integration.test_template import translated_template

    translated = translated_template()
    declared = {
        (method.upper(), path)
        for path, methods in translated["Resources"]["HttpApi"]["Properties"]["Body"]["paths"].items()
        for method in methods
    }
    declared |= {
        tuple(resource["Properties"]["RouteKey"].split(" ", 1))
        for resource in translated["Resources"].values()
        if resource["Type"] == "AWS::ApiGatewayV2::Route"
    }
    served = {(route.method, route.path) for route in http_routes()}
    assert served == declared
    for route in http_routes():
        concrete = route.path.replace("{tenant_id}", "e2e-routes").replace("{external_id}", "nobody")
        body: dict[str, str] | None = {} if route.method in ("PUT", "POST") else None
        if route.auth == "NONE":
            status, answer = http(route.method, f"{local_stack.api_url}{concrete}", body)
        else:
            assert http(route.method, f"{local_stack.api_url}{concrete}", body)[0] == 401
            status, answer = local_stack.admin(route.method, concrete, body)
        assert answer != {"error": "not_found", "message": "no such route"}, (route, status)
    assert http("GET", f"{local_stack.api_url}/not/a/route") == (
        404,
        {"error": "not_found", "message": "no such route"},
    )


def test_step_functions_run_asl_with_lambda_tasks_calling_the_local_handlers(local_stack: LocalStack) -> None:
    definition = {
        "StartAt": "Health",
        "States": {
            "Health": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:TenantApiFunction",
                    "Payload": {
                        "version": "2.0",
                        "routeKey": "GET /health",
                        "rawPath": "/health",
                        "headers": {},
                        "requestContext": {"http": {"method": "GET", "path": "/health"}, "stage": "$default"},
                        "isBase64Encoded": False,
                    },
                },
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }
    sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=local_stack.aws_url)
    machine = sfn.create_state_machine(
        name="local-hook-check",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/local",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    deadline = time.monotonic() + 120  # a safety net for a stalled interpreter, not a timing check
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert (output["statusCode"], json.loads(output["body"])) == (200, {"status": "ok"})
