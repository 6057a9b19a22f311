"""The receiver and the worker on events as the AWS SAM CLI generates them (`sam local generate-event`),
not as our own local gateway and poller build them: the HTTP API payload as SAM's template has it
(route `$default`, a base64 body, headers in their sent case, path parameters of another route) and
an SQS record of the shape Lambda's event-source mapping delivers."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from revsync.domain.signature import sign_header

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET, sam_cli

pytestmark = pytest.mark.integration

SAM = sam_cli()


def generate(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [SAM, "local", "generate-event", *arguments], capture_output=True, text=True, check=True, timeout=120
    )
    event: dict[str, Any] = json.loads(done.stdout)
    return event


def _webhook_event(
    stripe_event: dict[str, Any], *, method: str = "POST", path: str = "webhooks/stripe"
) -> dict[str, Any]:
    body = json.dumps(stripe_event)
    event = generate("apigateway", "http-api-proxy", "--method", method, "--path", path, "--body", body)
    event["headers"]["Stripe-Signature"] = sign_header(PLATFORM_SECRET, FROZEN_NOW, body.encode())
    return event


def test_receiver_queues_the_http_api_event_sam_generates(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    customer = S.customer("cus_sam", email="sam@example.com", metadata={"app_id": "u-sam"})
    event = _webhook_event(S.event("customer.created", customer, created=FROZEN_NOW - 5, account="acct_acme"))
    assert (event["isBase64Encoded"], event["routeKey"]) == (True, "$default")  # SAM's shape, as sent

    response = lambda_runtime.invoke("WebhookFunction", event)

    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {"received": True}
    assert stack.drain().succeeded == 1
    record = stack.request("GET", "/tenants/acme/customers/u-sam").json()
    assert (record["stripe_customer_id"], record["traits"]["stripe.email"]) == ("cus_sam", "sam@example.com")


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [("GET", "webhooks/stripe", 405, "method_not_allowed"), ("POST", "path/to/resource", 404, "not_found")],
)
def test_receiver_answers_other_methods_and_paths_of_sams_event_with_a_4xx(
    stack: InProcessStack, connect_oauth: Any, method: str, path: str, status: int, error: str
) -> None:
    connect_oauth("acme", "acct_acme")
    stripe_event = S.event("customer.created", S.customer("cus_sam"), created=FROZEN_NOW, account="acct_acme")

    event = _webhook_event(stripe_event, method=method, path=path)

    response = lambda_runtime.invoke("WebhookFunction", event)

    assert (response["statusCode"], json.loads(response["body"])["error"]) == (status, error)
    assert stack.queue_depth("EventsQueue") == 0


def test_worker_applies_the_sqs_record_sam_generates(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    customer = S.customer("cus_sqs", metadata={"app_id": "u-sqs"})
    sent = stack.post_webhook(
        S.event("customer.created", customer, created=FROZEN_NOW, account="acct_acme"), PLATFORM_SECRET
    )
    assert sent.status == 200, sent.body
    queued = stack.client("sqs").receive_message(QueueUrl=stack.queue_url("EventsQueue"))["Messages"][0]
    # SAM's generator writes --body into its JSON unescaped, so the envelope goes in afterwards.
    event = generate("sqs", "receive-message", "--queue-name", "revsync-local-events.fifo")
    event["Records"][0]["body"] = queued["Body"]

    assert lambda_runtime.invoke("WorkerFunction", event) == {"batchItemFailures": []}
    record = stack.request("GET", "/tenants/acme/customers/u-sqs").json()
    assert (record["stripe_customer_id"], record["matched"]) == ("cus_sqs", True)
