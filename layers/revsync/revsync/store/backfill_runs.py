"""A backfill run kept between rounds (``backfill#<tenant>`` in the tenants table): its walks'
cursors, totals and allowance, written once a round. A continuation (a new execution) and a run
started again after a failure resume from it; a finished run removes it."""

from __future__ import annotations

import json
from typing import Any, cast

from revsync.domain.backfill import Run, Segment
from revsync.infra import aws


def _key(tenant_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"backfill#{tenant_id}"}}


class BackfillRuns:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name  # the tenants table

    def load(self, tenant_id: str) -> tuple[Run, list[Segment]] | None:
        item = (
            aws.dynamodb()
            .get_item(TableName=self._table_name, Key=_key(tenant_id), ConsistentRead=True)
            .get("Item")
        )
        if item is None:
            return None
        return cast(Run, json.loads(item["run"]["S"])), cast(list[Segment], json.loads(item["segments"]["S"]))

    def save(self, tenant_id: str, run: Run, segments: list[Segment]) -> None:
        aws.dynamodb().put_item(
            TableName=self._table_name,
            Item={
                **_key(tenant_id),
                "run": {"S": json.dumps(run, separators=(",", ":"))},
                "segments": {"S": json.dumps(segments, separators=(",", ":"))},
            },
        )

    def clear(self, tenant_id: str) -> None:
        aws.dynamodb().delete_item(TableName=self._table_name, Key=_key(tenant_id))
