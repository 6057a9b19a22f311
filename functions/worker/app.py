"""Queue worker: applies queued Stripe snapshots through the one write path. Wiring only.

Powertools' FIFO batch processor reports partial failures; when a message fails, the rest of its
message group in the batch is skipped (and retried), other groups go on.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.domain.events import EventError, parse_envelope
from revsync.domain.snapshots import SnapshotError
from revsync.infra.queue import DeadLetters
from revsync.infra.secrets import PlatformSecrets, TenantSecrets
from revsync.services.connect import connection_revoked
from revsync.services.sync import apply_observation
from revsync.settings import get_settings
from revsync.store.customers import CustomerStore
from revsync.store.tenants import CachedTenantStore, TenantStore
from revsync.stripe_api.client import StripeAccounts

logger = Logger()
metrics = Metrics()
processor = SqsFifoPartialProcessor(skip_group_on_error=True)

# Bad input that no retry can fix: park the message at once. Anything else (our bugs included) is
# retried, then parked with its reason.
PERMANENT_ERRORS = (EventError, SnapshotError)


@lru_cache(maxsize=1)
def dependencies() -> dict[str, Any]:
    platform, tenant_secrets = PlatformSecrets(), TenantSecrets()
    return {
        "tenants": CachedTenantStore(TenantStore()),
        "customers": CustomerStore(),
        "stripe": StripeAccounts(
            platform_key=platform.stripe_secret_key,
            tenant_api_key=lambda name: str(tenant_secrets.read(name)["api_key"]),
            api_base=get_settings().stripe_api_base,
        ),
    }


def record_handler(record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    try:
        envelope = parse_envelope(record.body)
        observation = envelope["observation"]
        if observation is None:  # about the connection: Stripe says the account disconnected us
            result = connection_revoked(envelope["tenant_id"], tenants=TenantStore(), now=int(time.time()))
        else:
            result = apply_observation(
                envelope["tenant_id"], observation, redelivered=receive_count > 1, **dependencies()
            )
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PERMANENT_ERRORS) or receive_count >= get_settings().max_receive_count:
            DeadLetters().send(
                record.body, record.attributes.message_group_id or "unknown", record.message_id, reason
            )
            logger.error(
                "parked in DLQ", message_id=record.message_id, receive_count=receive_count, reason=reason
            )
            metrics.add_metric(name="MessagesDeadLettered", unit=MetricUnit.Count, value=1)
            return
        logger.warning("will retry", message_id=record.message_id, receive_count=receive_count, reason=reason)
        raise
    logger.info(
        "applied",
        tenant_id=envelope["tenant_id"],
        event_id=envelope["event_id"],
        event_type=envelope["event_type"],
        outcome=result.outcome,
        reason=result.reason,
        record_written=result.record_written,
    )
    metrics.add_metric(name=f"Observations{result.outcome.capitalize()}", unit=MetricUnit.Count, value=1)
    if result.refetches:
        metrics.add_metric(name="StripeRefetches", unit=MetricUnit.Count, value=result.refetches)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # When every record of a batch failed, Powertools raises: Lambda then retries the whole batch.
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
