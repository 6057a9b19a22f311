"""Backfill steps for the state machine (statemachines/backfill.asl.json). Wiring only: see
revsync.services.backfill. The event's ``action`` names the step. (The catch-up of missed events
lives beside it: reconciler.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from revsync.domain.backfill import new_totals
from revsync.infra.changes import EventBridgeChanges
from revsync.services import backfill
from revsync.services.sync import Customers, Tenants
from revsync.settings import get_settings
from revsync.store.budget import AccountRequestBudget
from revsync.store.customers import CustomerStore
from revsync.store.tenants import BackfillProgress, CachedTenantStore, TenantStore
from revsync.stripe_api.pacing import Pacer
from revsync.wiring import stripe_accounts

logger = Logger()
metrics = Metrics()
SAFETY_MARGIN_SECONDS = 15  # stop taking pages this long before Lambda's time limit


class Stripe(backfill.Lister, Protocol):
    """Stripe as the importer uses it: list pages."""


@dataclass(slots=True)
class Dependencies:
    tenants: Tenants
    # A run starts from the tenant as stored now (a trait may have just changed); its steps then
    # refresh any cached copy older than that (see Segment.config_version).
    stored_tenants: Tenants
    customers: Customers
    progress: backfill.Progress
    stripe: Stripe
    changes: EventBridgeChanges
    clock: Callable[[], float]


@lru_cache(maxsize=1)
def dependencies() -> Dependencies:
    return Dependencies(
        tenants=CachedTenantStore(TenantStore()),
        stored_tenants=TenantStore(),
        customers=CustomerStore(),
        progress=BackfillProgress(),
        stripe=stripe_accounts(),
        changes=EventBridgeChanges(),
        clock=time.time,
    )


def _pacer(tenant_id: str) -> Pacer:
    """The account's one request budget, shared by every step running against it."""
    settings = get_settings()
    tenant = dependencies().tenants.get(tenant_id)
    live = bool(tenant and tenant.connection.livemode)
    limit = settings.stripe_rate_limit_live if live else settings.stripe_rate_limit_test
    account = (
        tenant.connection.account_id if tenant and tenant.connection.account_id else f"tenant-{tenant_id}"
    )
    return Pacer(reserve=AccountRequestBudget(account, limit).reserve)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps, settings = dependencies(), get_settings()
    now = int(deps.clock())
    action = event["action"]
    tenant_id = str(event.get("tenant_id", ""))
    if action == "start":
        segments = backfill.start(
            tenant_id,
            tenants=deps.stored_tenants,
            progress=deps.progress,
            walks=settings.backfill_concurrency,
            now=now,
        )
        logger.info("backfill started", tenant_id=tenant_id, segments=len(segments))
        # The Map runs `concurrency` walks at once (MaxConcurrencyPath); _pacer splits the rate limit by it.
        return {
            "tenant_id": tenant_id,
            "segments": segments,
            "totals": new_totals(),
            "concurrency": settings.backfill_concurrency,
        }
    if action == "page":
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
        produced = backfill.import_segment(
            tenant_id,
            event["segment"],
            tenants=deps.tenants,
            customers=deps.customers,
            stripe=deps.stripe,
            progress=deps.progress,
            pacer=_pacer(tenant_id),
            max_pages=settings.backfill_pages_per_step,
            deadline=deadline,
            changes=deps.changes,
        )
        deps.changes.flush()
        logger.info("backfill step", tenant_id=tenant_id, kind=produced[0]["kind"], walks=len(produced))
        return {"segments": produced}
    if action == "collect":
        # As many walks as the Map runs at once: room a finished walk leaves goes to the others.
        return backfill.collect_round(
            tenant_id,
            event["totals"],
            [r["segments"] for r in event["rounds"]],
            walks=settings.backfill_concurrency,
        )
    if action == "finish":
        result = backfill.finish(tenant_id, event["totals"], progress=deps.progress, now=now)
        logger.info("backfill finished", **result)
        return result
    if action == "fail":
        backfill.fail(tenant_id, event.get("error"), progress=deps.progress, now=now)
        logger.warning("backfill failed", tenant_id=tenant_id)
        return {"tenant_id": tenant_id}
    raise ValueError(f"unknown backfill action {action!r}")
