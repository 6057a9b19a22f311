"""Revenue rollup: the sync table's stream, applied to the tenants' monthly totals exactly once.
Wiring only: see revsync.services.rollup.

A batch (one shard's records, in order) is applied group by group; when a group fails, its first
record is reported as the batch's failure, so Lambda retries from there and the groups' markers
skip whatever was applied already. ``{"action": "seed", "tenant_id": ..., "cursor": ...}`` (an
operator's invocation) counts the tenant's states written before the rollup existed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.domain.rollup import PieceChange
from revsync.domain.routing import validate_tenant_id
from revsync.services.rollup import RollupInterrupted, RollupWriter, UncountedPieces, apply_changes, seed
from revsync.store.rollup import RevenueRollup, UncountedStates, piece_change

logger = Logger()
metrics = Metrics()

# Seeding stops this long before the function's time limit and answers with its cursor.
SEED_MARGIN_MILLIS = 10_000


@dataclass(slots=True)
class Dependencies:
    rollup: RollupWriter
    pieces: UncountedPieces
    clock: Callable[[], float]


@lru_cache(maxsize=1)
def dependencies() -> Dependencies:
    return Dependencies(rollup=RevenueRollup(), pieces=UncountedStates(), clock=time.time)


def _apply(event: dict[str, Any]) -> dict[str, Any]:
    deps = dependencies()
    changes: list[PieceChange] = []
    sequences: dict[int, str] = {}
    for record in DynamoDBStreamEvent(event).records:
        stream = record.dynamodb
        if stream is None:  # never: every record of a table's stream carries the change
            continue
        sequence = str(stream["SequenceNumber"])
        change = piece_change(
            str(record["eventID"]),
            sequence,
            stream.approximate_creation_date_time or 0,
            stream.old_image,
            stream.new_image,
        )
        changes.append(change)
        sequences[change.sequence] = sequence  # reported back as Lambda gave it
    now = int(deps.clock())
    try:
        outcome = apply_changes(changes, deps.rollup, now)
    except RollupInterrupted as exc:
        logger.exception(
            "rollup interrupted: the batch is retried from this record", sequence=sequences[exc.sequence]
        )
        metrics.add_metric(name="RollupGroupsFailed", unit=MetricUnit.Count, value=1)
        return {"batchItemFailures": [{"itemIdentifier": sequences[exc.sequence]}]}
    metrics.add_metric(name="RollupGroupsWritten", unit=MetricUnit.Count, value=outcome.written)
    if outcome.found:
        metrics.add_metric(name="RollupGroupsFoundApplied", unit=MetricUnit.Count, value=outcome.found)
    if outcome.oldest_change is not None:
        # Lambda's IteratorAge is the alarm's; this is the same lag as the rollup sees it.
        lag = max(0, now - outcome.oldest_change)
        metrics.add_metric(name="RollupLagSeconds", unit=MetricUnit.Seconds, value=lag)
    return {"batchItemFailures": []}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "seed":
        deadline = context.get_remaining_time_in_millis

        def out_of_time() -> bool:
            return deadline() < SEED_MARGIN_MILLIS

        tenant_id = validate_tenant_id(event.get("tenant_id"))  # a ValueError for the operator
        done = seed(tenant_id, dependencies().pieces, event.get("cursor"), out_of_time)
        logger.info("seeded", **done)
        return done
    return _apply(event)
