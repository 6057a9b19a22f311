"""Stripe webhook receiver (POST /webhooks/stripe[/{tenant_id}]). Wiring only: see revsync.services.receive.

Cold start matters here: nothing on this import path pulls in the stripe SDK or PynamoDB.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.infra.queue import SqsEventQueue
from revsync.infra.secrets import WebhookSecretSource
from revsync.services.receive import RequestError, WebhookRequest, WebhookResponse, receive
from revsync.settings import get_settings
from revsync.store.tenant_lookup import DynamoTenantDirectory

logger = Logger()
metrics = Metrics()

_METRIC = {
    "queued": "WebhookQueued",
    "dropped": "WebhookDropped",
    "rejected": "WebhookRejected",
    "failed": "WebhookFailed",
}


@lru_cache(maxsize=1)
def dependencies() -> dict[str, Any]:
    return {"tenants": DynamoTenantDirectory(), "secrets": WebhookSecretSource(), "queue": SqsEventQueue()}


def _http(response: WebhookResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(response.body),
    }


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = WebhookRequest.from_api_gateway(event, get_settings().max_webhook_body_bytes)
    except RequestError as exc:
        response = WebhookResponse(
            exc.status, {"error": exc.code, "message": str(exc)}, f"rejected:{exc.code}"
        )
    else:
        response = receive(request, **dependencies(), now=int(time.time()))
    # Only ids, types and outcomes are logged: never bodies, secrets or e-mails.
    logger.info("webhook", outcome=response.outcome, status=response.status, **response.log)
    metrics.add_metric(name=_METRIC[response.outcome.split(":")[0]], unit=MetricUnit.Count, value=1)
    return _http(response)
