"""Stripe webhook receiver: POST /webhooks/stripe[/{tenant_id}] on the HTTP API or on the function's
URL. Wiring only: see revsync.services.receive.

Cold start matters here: nothing on this import path pulls in the stripe SDK or PynamoDB.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.bootstrap import receiver as bootstrap
from revsync.errors import RevsyncError
from revsync.services.receive import WebhookRequest, WebhookResponse, receive, rejected

logger = Logger()
metrics = Metrics()

_QUIET = frozenset({"queued", "rejected:not_found", "rejected:method_not_allowed"})
_METRIC = {
    "queued": "WebhookQueued",
    "dropped": "WebhookDropped",
    "parked": "WebhookParked",
    "rejected": "WebhookRejected",
    "failed": "WebhookFailed",
}


# The cold start: the settings read and checked (a bad one fails here), the adapters built.
deps = bootstrap.from_environ(os.environ)


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
        request = WebhookRequest.from_http_event(event, deps.settings.max_webhook_body_bytes)
    except RevsyncError as exc:
        response = rejected(exc)
    else:
        response = receive(
            request,
            tenants=deps.tenants,
            secrets=deps.secrets,
            queue=deps.queue,
            parked=deps.parked,
            now=int(deps.clock()),
        )
    # Only ids, types and outcomes are logged: never bodies, secrets or e-mails. A queued event is the
    # common case, and a request for another path or method is what scanners send a public URL: both
    # are counted by their metric, and their lines are DEBUG (LogLevel) so they cost little.
    log = logger.debug if response.outcome in _QUIET else logger.info
    log("webhook", outcome=response.outcome, status=response.status, **response.log)
    metrics.add_metric(name=_METRIC[response.outcome.split(":")[0]], unit=MetricUnit.Count, value=1)
    return _http(response)
