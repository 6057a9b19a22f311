"""Backfill steps for the state machine (statemachines/backfill.asl.json). Wiring only: see
revsync.services.backfill. The event's ``action`` names the step. (The catch-up of missed events
lives beside it: reconciler.py.)"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.bootstrap import importer as bootstrap
from revsync.domain.tenancy import Tenant
from revsync.errors import InvalidInput
from revsync.services import backfill
from revsync.store.budget import AccountRequestBudget
from revsync.stripe_api.pacing import Pacer

logger = Logger()
metrics = Metrics()
SAFETY_MARGIN_SECONDS = 15  # stop taking pages this long before Lambda's time limit


# The cold start: the settings read and checked (a bad one fails here), the adapters built.
deps = bootstrap.from_environ(os.environ)


def _budget(tenant: Tenant | None, tenant_id: str) -> AccountRequestBudget:
    """The account's one request budget, shared by every step, the catch-up and the worker's reads."""
    stripe = deps.settings.stripe
    live = bool(tenant and tenant.connection.livemode)
    limit = stripe.rate_limit_live if live else stripe.rate_limit_test
    account = (
        tenant.connection.account_id if tenant and tenant.connection.account_id else f"tenant-{tenant_id}"
    )
    return deps.budgets(account, limit)


def _limits(tenant: Tenant, endpoints: list[str]) -> tuple[float, dict[str, float]]:
    return _budget(tenant, tenant.tenant_id).rates(endpoints)


def _start(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    tenant_id = str(event.get("tenant_id", ""))
    state = backfill.start(
        tenant_id,
        tenants=deps.stored_tenants,
        progress=deps.progress,
        runs=deps.runs,
        limits=_limits,
        stripe=deps.stripe,
        max_walks=deps.settings.backfill_concurrency,
        now=now,
        execution=event.get("execution"),
    )
    run = state["run"]
    logger.info("backfill started", tenant_id=tenant_id, walks=state["active"], generation=run["generation"])
    return state


def _page(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    tenant_id = str(event.get("tenant_id", ""))
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    tenant = deps.tenants.get(tenant_id)
    produced = backfill.import_segment(
        tenant_id,
        event["segment"],
        tenants=deps.tenants,
        customers=deps.customers,
        stripe=deps.stripe,
        progress=deps.progress,
        pacer=Pacer(_budget(tenant, tenant_id)),
        max_pages=deps.settings.backfill_pages_per_step,
        deadline=deadline,
        changes=deps.changes,
        writers=deps.settings.backfill_writers,
    )
    deps.changes.flush()
    logger.info("backfill step", tenant_id=tenant_id, kind=produced[0]["kind"], walks=len(produced))
    return {"segments": produced}


def _collect(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    # The walks still going share the allowance; the run is kept for a continuation or a rerun.
    return backfill.collect_round(
        str(event.get("tenant_id", "")),
        event["run"],
        [r["segments"] for r in event["rounds"]],
        tenants=deps.stored_tenants,
        runs=deps.runs,
        limits=_limits,
        max_walks=deps.settings.backfill_concurrency,
        history_budget=deps.settings.backfill_history_budget,
    )


def _continue(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    """Near the history limit: the run goes on in a new execution."""
    tenant_id = str(event.get("tenant_id", ""))
    result = backfill.continue_run(
        tenant_id,
        event["run"],
        executions=deps.executions,
        state_machine=str(event["state_machine"]),
        progress=deps.progress,
    )
    logger.info("backfill continues", tenant_id=tenant_id, generation=result["generation"])
    return result


def _finish(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    tenant_id = str(event.get("tenant_id", ""))
    result = backfill.finish(
        tenant_id, event["run"]["totals"], progress=deps.progress, runs=deps.runs, now=now
    )
    logger.info("backfill finished", **result)
    return result


def _fail(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    tenant_id = str(event.get("tenant_id", ""))
    backfill.fail(tenant_id, event.get("error"), progress=deps.progress, now=now)
    logger.warning("backfill failed", tenant_id=tenant_id)
    return {"tenant_id": tenant_id}


def _execution_ended(event: dict[str, Any], context: LambdaContext, now: int) -> dict[str, Any]:
    """A backfill execution ended outside its Catch (Step Functions' status change, by EventBridge)."""
    failed = backfill.execution_ended(event.get("detail") or {}, progress=deps.progress, now=now)
    logger.warning("backfill execution ended", tenant_id=failed, status=event["detail"].get("status"))
    return {"tenant_id": failed}


Step = Callable[[dict[str, Any], LambdaContext, int], dict[str, Any]]

# The state machine's steps by the ``action`` its tasks send (statemachines/backfill.asl.json), and
# the status-change event by its source (it has no action).
STATUS_CHANGE = "aws.states"
ACTIONS: dict[str, Step] = {
    "start": _start,
    "page": _page,
    "collect": _collect,
    "continue": _continue,
    "finish": _finish,
    "fail": _fail,
    STATUS_CHANGE: _execution_ended,
}


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    name = STATUS_CHANGE if event.get("source") == STATUS_CHANGE else event.get("action")
    step = ACTIONS.get(str(name))
    if step is None:
        raise InvalidInput(f"unknown backfill action {name!r}")
    return step(event, context, int(deps.clock()))
