"""The worker's graph (functions/worker/app.py): the write path's stores, Stripe for ties and
unexpandable data, the events queue's visibility and dead letters, the watermark and the change feed."""

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from revsync.bootstrap.stripe import stripe_accounts
from revsync.infra import aws
from revsync.infra.changes import EventBridgeChanges
from revsync.infra.queue import DeadLetters, EventsQueueVisibility
from revsync.services.receive import TenantDirectory
from revsync.services.sync import Customers, StripeObjects, Tenants
from revsync.services.tenants import TenantRepository
from revsync.services.worker import Watermarks
from revsync.settings import WorkerSettings
from revsync.store import models
from revsync.store.customers import CustomerStore
from revsync.store.events_progress import CachedWatermarks, EventsProgressStore
from revsync.store.tenant_lookup import DynamoTenantDirectory
from revsync.store.tenants import CachedTenantStore, TenantStore


class Worker(NamedTuple):
    settings: WorkerSettings
    tenants: Tenants  # cached briefly (the write path's reads)
    connection_tenants: TenantRepository  # as stored now (a deauthorization revokes the connection)
    directory: TenantDirectory  # a redriven delivery is routed again
    customers: Customers
    stripe: StripeObjects
    dead_letters: DeadLetters
    visibility: EventsQueueVisibility
    watermarks: Watermarks
    changes: EventBridgeChanges
    clock: Callable[[], float]


def build(settings: WorkerSettings, **overrides: Any) -> Worker:
    aws.configure(settings.aws)
    models.bind(
        customers=settings.customers_table,
        sync=settings.sync_table,
        tenants=settings.tenants_table,
    )
    return Worker(
        settings=settings,
        tenants=CachedTenantStore(TenantStore()),
        connection_tenants=TenantStore(),
        directory=DynamoTenantDirectory(settings.tenants_table),
        customers=CustomerStore(),
        stripe=stripe_accounts(settings.stripe, settings.tenants_table),
        dead_letters=DeadLetters(settings.dead_letter_queue_url),
        visibility=EventsQueueVisibility(settings.events_queue_url),
        watermarks=CachedWatermarks(EventsProgressStore(settings.tenants_table)),
        changes=EventBridgeChanges(settings.changes_bus_name),
        clock=time.time,
    )._replace(**overrides)


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Worker:
    return build(WorkerSettings.from_environ(environ), **overrides)
