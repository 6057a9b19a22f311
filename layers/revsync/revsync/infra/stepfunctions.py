"""Starting backfill executions (the state machine's input is ``{"tenant_id": ...}``, a contract)."""

from __future__ import annotations

import json

from revsync.infra import aws


class BackfillStarter:
    """Starts executions of the backfill state machine ``state_machine_arn``."""

    def __init__(self, state_machine_arn: str) -> None:
        self._state_machine = state_machine_arn

    def start(self, tenant_id: str, now: int) -> str:
        response = aws.stepfunctions().start_execution(
            stateMachineArn=self._state_machine,
            name=f"{tenant_id}-{now}",
            input=json.dumps({"tenant_id": tenant_id}),
        )
        return str(response["executionArn"])


class BackfillExecutions:
    """A run's next execution, started by the run itself (its state machine's ARN comes from the
    execution's context, so the function needs no reference to the state machine)."""

    def start(self, state_machine: str, name: str, tenant_id: str) -> str:
        client = aws.stepfunctions()
        try:
            response = client.start_execution(
                stateMachineArn=state_machine, name=name, input=json.dumps({"tenant_id": tenant_id})
            )
        except client.exceptions.ExecutionAlreadyExists:
            # A retried step whose first try started it (and it has ended since): it is that one.
            return state_machine.replace(":stateMachine:", ":execution:") + f":{name}"
        return str(response["executionArn"])
