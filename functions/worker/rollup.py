"""Revenue rollup: the sync table's stream, applied to the tenants' monthly totals exactly once.
Wiring only: see revsync.services.rollup.

A batch (one shard's records, in order) is applied group by group; when a group fails, its first
record is reported as the batch's failure, so Lambda retries from there, and the shard's position
skips whatever was applied already. The mapping's tumbling window is there for the shard's id it
puts in each event (the window's ``state`` is not used: it is answered empty, as Lambda requires).
``{"action": "seed", "tenant_id": ..., "cursor": ...}`` (an operator's invocation) counts the
tenant's states written before the rollup existed.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.bootstrap import rollup as bootstrap
from revsync.domain.routing import validate_tenant_id
from revsync.errors import InvalidInput
from revsync.services.rollup import RollupInterrupted, apply_changes, seed
from revsync.store.rollup import stream_batch

logger = Logger()
metrics = Metrics()

# Seeding stops this long before the function's time limit and answers with its cursor.
SEED_MARGIN_MILLIS = 10_000


# The cold start: the settings read and checked (a bad one fails here), the adapters built.
deps = bootstrap.from_environ(os.environ)


def _apply(event: dict[str, Any]) -> dict[str, Any]:
    batch = stream_batch(event)
    if batch.shard_id is None:
        raise InvalidInput("no shardId in the event: the mapping needs its TumblingWindowInSeconds")
    now = int(deps.clock())
    try:
        outcome = apply_changes(batch.shard_id, batch.changes, deps.rollup, now)
    except RollupInterrupted as exc:
        failed = batch.sequence_numbers[exc.sequence]
        logger.exception("rollup interrupted: retried from this record", sequence=failed)
        metrics.add_metric(name="RollupGroupsFailed", unit=MetricUnit.Count, value=1)
        return {"state": {}, "batchItemFailures": [{"itemIdentifier": failed}]}
    metrics.add_metric(name="RollupGroupsWritten", unit=MetricUnit.Count, value=outcome.written)
    if outcome.skipped:
        metrics.add_metric(name="RollupGroupsSkipped", unit=MetricUnit.Count, value=outcome.skipped)
    if outcome.oldest_change is not None:
        # The lag as the rollup sees it (Lambda's IteratorAge, which the alarm watches, is the same).
        lag = max(0, now - outcome.oldest_change)
        metrics.add_metric(name="RollupLagSeconds", unit=MetricUnit.Seconds, value=lag)
    return {"state": {}, "batchItemFailures": []}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "seed":
        deadline = context.get_remaining_time_in_millis

        def out_of_time() -> bool:
            return deadline() < SEED_MARGIN_MILLIS

        tenant_id = validate_tenant_id(event.get("tenant_id"))  # an InvalidInput for the operator
        done = seed(tenant_id, deps.pieces, event.get("cursor"), out_of_time)
        logger.info("seeded", **done)
        return done
    return _apply(event)
