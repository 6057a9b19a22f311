"""The receiver, the worker and the revenue rollup on events as the AWS SAM CLI generates them (`sam
local generate-event`), not as our own local gateway and pollers build them: the HTTP API payload as
SAM's template has it (route `$default`, a base64 body, headers in their sent case, path parameters
of another route), an SQS record and a DynamoDB stream record of the shapes Lambda's event-source
mappings deliver."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from revsync.domain.signature import sign_header

from local import lambda_runtime, streams
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


# The fields a DynamoDB stream event carries when its mapping has a tumbling window (Lambda's
# "DynamodbTimeWindowEvent"); SAM's generator has no such sample, so they are added to its record.
WINDOW_FIELDS = {
    "window",
    "state",
    "shardId",
    "eventSourceARN",
    "isFinalInvokeForWindow",
    "isWindowTerminatedEarly",
}


def test_the_rollup_applies_the_dynamodb_stream_record_sam_generates(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("acme", "acct_acme")
    customer = S.customer("cus_ddb", metadata={"app_id": "u-ddb"})
    subscription = S.subscription("cus_ddb", [S.subscription_item(S.price(4900))], id="sub_ddb")
    for event_type, obj in (("customer.created", customer), ("customer.subscription.created", subscription)):
        sent = stack.post_webhook(
            S.event(event_type, obj, created=FROZEN_NOW, account="acct_acme"), PLATFORM_SECRET
        )
        assert sent.status == 200, sent.body
    stack.drain(rollup=False)
    delivered: list[dict[str, Any]] = []

    def capture(function: str, event: dict[str, Any]) -> dict[str, Any]:
        delivered.append(event)
        return {"state": {}, "batchItemFailures": []}

    assert stack.names is not None
    streams.mapping("RollupFunction", stack.names, capture, "us-east-1").drain()
    [ours] = [
        record
        for event in delivered
        for record in event["Records"]
        if record["dynamodb"].get("NewImage", {}).get("timeline", {}).get("S", "[]") != "[]"
    ]
    assert set(delivered[0]) == {"Records"} | WINDOW_FIELDS

    generated = generate("dynamodb", "update")
    [sams] = [record for record in generated["Records"] if record["eventName"] == ours["eventName"]]
    assert set(sams) == set(ours)
    assert set(sams["dynamodb"]) == set(ours["dynamodb"])
    # SAM's record, carrying our item's change, in the event a windowed mapping delivers.
    for name in ("Keys", "NewImage", "OldImage", "SequenceNumber"):
        if name in ours["dynamodb"]:
            sams["dynamodb"][name] = ours["dynamodb"][name]
    window = {name: delivered[0][name] for name in WINDOW_FIELDS}
    answer = lambda_runtime.invoke("RollupFunction", {**window, "Records": [sams]})

    assert answer == {"state": {}, "batchItemFailures": []}
    month = time.strftime("%Y-%m", time.gmtime(FROZEN_NOW))
    report = stack.request("GET", "/tenants/acme/revenue", query=f"from={month}&to={month}").json()
    assert (report["currency"], report["months"][0]["new"]) == ("usd", 4900)
