"""The catch-up of missed events (revsync.services.reconcile) and a policy change's recompute
(revsync.services.policy), jobs of the catch-up queue (revsync.services.jobs). Wiring only.

EventBridge Scheduler sends ``{"action": "queue_catch_ups"}`` every ReconcileMinutes: one job per
connected tenant goes on the catch-up queue (its run also reviews the tenant's changes that come
with time). The policy route queues a recompute there too. The queue's event source mapping hands
this function one job per invocation (BatchSize 1; at most ReconcileConcurrency at once); a job
that keeps failing goes to the catch-up dead-letter queue, and its tenant's next period's job goes
on from where it stopped.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.bootstrap import reconciler as bootstrap
from revsync.domain.reconcile import queued_job
from revsync.errors import InvalidInput
from revsync.services import jobs, policy, reconcile

logger = Logger()
metrics = Metrics()
SAFETY_MARGIN_SECONDS = 15  # stop taking pages this long before Lambda's time limit


# The cold start: the settings read and checked (a bad one fails here), the adapters built.
deps = bootstrap.from_environ(os.environ)


def _ports() -> reconcile.ReconcilePorts:
    return reconcile.ReconcilePorts(
        deps.tenants, deps.customers, deps.stripe, deps.progress, deps.clock, deps.changes
    )


def _policy_ports() -> policy.PolicyPorts:
    return policy.PolicyPorts(deps.tenants, deps.customers, deps.rederive, deps.changes, deps.clock)


def _run_jobs(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    reports = {}
    try:
        for record in event["Records"]:
            job = queued_job(record["body"])
            out_of_time = reconcile.out_of_time_after(
                context.get_remaining_time_in_millis(), SAFETY_MARGIN_SECONDS, deps.monotonic
            )
            report = jobs.run(job, _ports(), _policy_ports(), deps.queue, out_of_time)
            reports[job.tenant_id] = report
            logger.info("job run", tenant_id=job.tenant_id, reason=job.reason, **report)
            if "recovered" in report:
                metrics.add_metric(name="EventsRecovered", unit=MetricUnit.Count, value=report["recovered"])
    finally:
        deps.changes.flush()
    return {"reconciled": reports}


def _queue_catch_ups(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = reconcile.queue_catch_ups(deps.candidates, deps.queue, int(deps.clock()))
    logger.info("catch-ups queued", **result)
    metrics.add_metric(name="CatchUpsQueued", unit=MetricUnit.Count, value=result["queued"])
    return result


def _recompute(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """An operator's ``{"action": "recompute", "tenant_id": ...}``: recompute every customer of the
    tenant under the policy in force (docs/operations.md)."""
    status = policy.recompute_again(
        str(event.get("tenant_id")), tenants=deps.tenants, queue=deps.queue, now=int(deps.clock())
    )
    logger.info("recompute queued", tenant_id=event.get("tenant_id"), **status["recompute"])
    return status


ACTIONS = {"queue_catch_ups": _queue_catch_ups, "recompute": _recompute}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:  # the catch-up queue's event source mapping
        return _run_jobs(event, context)
    action = ACTIONS.get(str(event.get("action")))
    if action is None:
        raise InvalidInput(f"unknown catch-up action {event.get('action')!r}")
    return action(event, context)
