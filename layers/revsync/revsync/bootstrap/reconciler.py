"""The reconciler's graph (functions/importer/reconciler.py): the catch-up's stores, Stripe's Events
API, the catch-up queue, the connected tenants, the write path's re-derivation (a policy change's
recompute and the schedule's review) and the clocks a run's deadline is read from."""

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from revsync.bootstrap.stripe import stripe_accounts
from revsync.infra import aws
from revsync.infra.catch_ups import SqsCatchUpQueue
from revsync.infra.changes import EventBridgeChanges
from revsync.services import policy, reconcile, sync
from revsync.settings import ReconcilerSettings
from revsync.store import models
from revsync.store.customers import CustomerStore
from revsync.store.events_progress import ConnectedTenants, EventsProgressStore
from revsync.store.tenants import TenantStore


class Reconciler(NamedTuple):
    settings: ReconcilerSettings
    tenants: policy.PolicyTenants
    customers: sync.Customers
    stripe: reconcile.EventLister
    progress: reconcile.EventsProgress
    queue: reconcile.CatchUpQueue
    candidates: reconcile.CatchUpCandidates
    changes: EventBridgeChanges
    rederive: policy.Rederive
    clock: Callable[[], float]
    monotonic: Callable[[], float]  # a run's deadline


def build(settings: ReconcilerSettings, **overrides: Any) -> Reconciler:
    aws.configure(settings.aws)
    models.bind(
        customers=settings.customers_table,
        sync=settings.sync_table,
        tenants=settings.tenants_table,
    )
    return Reconciler(
        settings=settings,
        tenants=TenantStore(),
        customers=CustomerStore(),
        stripe=stripe_accounts(settings.stripe, settings.tenants_table),
        progress=EventsProgressStore(settings.tenants_table),
        queue=SqsCatchUpQueue(settings.reconcile_queue_url, settings.reconcile_minutes * 60),
        candidates=ConnectedTenants(settings.tenants_table),
        changes=EventBridgeChanges(settings.changes_bus_name),
        rederive=sync.rederive,
        clock=time.time,
        monotonic=time.monotonic,
    )._replace(**overrides)


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Reconciler:
    return build(ReconcilerSettings.from_environ(environ), **overrides)
