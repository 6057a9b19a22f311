"""Starting backfill executions (the state machine's input is ``{"tenant_id": ...}``, a contract)."""

from __future__ import annotations

import json

from revsync.infra import aws
from revsync.settings import get_settings


class BackfillStarter:
    def start(self, tenant_id: str, now: int) -> str:
        response = aws.stepfunctions().start_execution(
            stateMachineArn=get_settings().backfill_state_machine_arn,
            name=f"{tenant_id}-{now}",
            input=json.dumps({"tenant_id": tenant_id}),
        )
        return str(response["executionArn"])
