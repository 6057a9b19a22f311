"""Stripe webhook receiver: POST /webhooks/stripe[/{tenant_id}] on the HTTP API or on the function's
URL. Wiring only: see revsync.services.receive.

Cold start matters here: nothing on this import path pulls in the stripe SDK or PynamoDB.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.infra.queue import DeadLetters, SqsEventQueue
from revsync.infra.secrets import WebhookSecretSource
from revsync.services.receive import (
    EventQueue,
    ParkedEvents,
    RequestError,
    TenantDirectory,
    WebhookRequest,
    WebhookResponse,
    WebhookSecrets,
    receive,
)
from revsync.settings import get_settings
from revsync.store.tenant_lookup import DynamoTenantDirectory
from revsync.table_names import table_names

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


class Dependencies:
    """The receiver's adapters (a plain class: a dataclass costs its measured cold start)."""

    __slots__ = ("clock", "parked", "queue", "secrets", "tenants")

    def __init__(
        self,
        tenants: TenantDirectory,
        secrets: WebhookSecrets,
        queue: EventQueue,
        parked: ParkedEvents,
        clock: Callable[[], float],
    ) -> None:
        self.tenants, self.secrets, self.queue, self.parked, self.clock = (
            tenants,
            secrets,
            queue,
            parked,
            clock,
        )


@lru_cache(maxsize=1)
def dependencies() -> Dependencies:
    return Dependencies(
        tenants=DynamoTenantDirectory(table_names().tenants),
        secrets=WebhookSecretSource(),
        queue=SqsEventQueue(),
        parked=DeadLetters(),
        clock=time.time,
    )


def _http(response: WebhookResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(response.body),
    }


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    try:
        request = WebhookRequest.from_http_event(event, get_settings().max_webhook_body_bytes)
    except RequestError as exc:
        response = WebhookResponse(
            exc.status, {"error": exc.code, "message": str(exc)}, f"rejected:{exc.code}"
        )
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
