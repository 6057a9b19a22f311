"""Queue worker: applies queued Stripe snapshots through the one write path. Wiring only: see
revsync.services.worker.

Powertools' FIFO batch processor reports partial failures; when a message fails, the rest of its
message group in the batch is skipped (and retried), other groups go on. A deferred message's
skipped group mates are hidden as long as it is: SQS holds a FIFO group while any of its messages
is in flight, so otherwise the group would wait for their visibility timeout (180 s), not the
deferral. A batch that only deferrals held back is answered as such, not as a failed invocation.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import (
    BatchProcessingError,
    SQSFifoMessageGroupCircuitBreakerError,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.bootstrap import worker as bootstrap
from revsync.errors import Deferred, RetryLater
from revsync.services.worker import process_message

logger = Logger()
metrics = Metrics()
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# This invocation's deferred message groups: group -> (seconds, the deferred message's id).
deferred_groups: dict[str, tuple[float, str]] = {}


# The cold start: the settings read and checked (a bad one fails here), the adapters built.
deps = bootstrap.from_environ(os.environ)


def record_handler(record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    handled = process_message(
        record.body,
        receive_count=receive_count,
        max_receive_count=deps.settings.max_receive_count,
        tenants=deps.tenants,
        connection_tenants=deps.connection_tenants,
        directory=deps.directory,
        customers=deps.customers,
        stripe=deps.stripe,
        watermarks=deps.watermarks,
        clock=deps.clock,
        changes=deps.changes,
    )
    if handled.outcome == "parked":
        # In the dead-letter queue, the group it came in (a redrive brings it back to that group).
        group = record.attributes.message_group_id or "unknown"
        deps.dead_letters.send(record.body, group, record.message_id, handled.reason)
        logger.error(
            "parked in DLQ", message_id=record.message_id, receive_count=receive_count, reason=handled.reason
        )
        metrics.add_metric(name="MessagesDeadLettered", unit=MetricUnit.Count, value=1)
        return
    if handled.outcome == "deferred":
        assert handled.delay_seconds is not None
        deps.visibility.hide(record.receipt_handle, handled.delay_seconds)
        deferred_groups[record.attributes.message_group_id or ""] = (handled.delay_seconds, record.message_id)
        logger.info("deferred", message_id=record.message_id, delay=handled.delay_seconds)
        metrics.add_metric(name="MessagesDeferred", unit=MetricUnit.Count, value=1)
        raise Deferred(handled.delay_seconds, handled.reason)
    if handled.outcome == "retry":
        logger.warning(
            "will retry", message_id=record.message_id, receive_count=receive_count, reason=handled.reason
        )
        raise RetryLater(handled.reason)
    result = handled.result
    # Applied or unchanged: the common case, counted by metrics; its line is DEBUG (see LogLevel).
    logger.debug(
        "applied",
        **handled.log,
        outcome=handled.outcome,
        reason=handled.reason,
        record_written=bool(result and result.record_written),
    )
    metrics.add_metric(name=f"Observations{handled.outcome.capitalize()}", unit=MetricUnit.Count, value=1)
    if result is not None and result.refetches:
        metrics.add_metric(name="StripeRefetches", unit=MetricUnit.Count, value=result.refetches)


def _hide_with_deferred(records: list[dict[str, Any]], failures: list[dict[str, str]]) -> None:
    """The skipped group mates of a deferred message wait as long as it does."""
    failed = {failure["itemIdentifier"] for failure in failures}
    for record in records:
        group = record.get("attributes", {}).get("MessageGroupId") or ""
        delay, deferred_id = deferred_groups.get(group, (0.0, ""))
        if delay and record["messageId"] in failed and record["messageId"] != deferred_id:
            deps.visibility.hide(record["receiptHandle"], delay)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # When every record of a batch failed, Powertools raises: Lambda then retries the whole batch
    # (an Errors alarm). Not when deferrals alone held it back: those are no failure.
    deferred_groups.clear()
    try:
        try:
            response: dict[str, Any] = dict(
                process_partial_response(
                    event=event, record_handler=record_handler, processor=processor, context=context
                )
            )
        except BatchProcessingError:
            waiting = (Deferred, SQSFifoMessageGroupCircuitBreakerError)
            if not deferred_groups or not all(isinstance(e[1], waiting) for e in processor.exceptions):
                raise
            response = {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}
        _hide_with_deferred(event["Records"], response["batchItemFailures"])
        return response
    finally:
        # The batch's record changes, ten per PutEvents call (at most once: see infra.changes).
        sent, failed = deps.changes.flush()
        if sent:
            metrics.add_metric(name="RecordChangesPublished", unit=MetricUnit.Count, value=sent)
        if failed:
            metrics.add_metric(name="RecordChangesNotPublished", unit=MetricUnit.Count, value=failed)
