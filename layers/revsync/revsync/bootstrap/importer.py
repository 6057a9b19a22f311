"""The importer's graph (functions/importer/app.py): the backfill's steps, their stores, Stripe's list
pages within the account's shared budget, the kept runs and the executions that continue them."""

import os
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple, Protocol

from revsync.bootstrap.stripe import budgets, stripe_accounts
from revsync.infra import aws
from revsync.infra.changes import EventBridgeChanges
from revsync.infra.stepfunctions import BackfillExecutions
from revsync.services import backfill
from revsync.services.sync import Customers, Tenants
from revsync.settings import ImporterSettings
from revsync.store import models
from revsync.store.backfill_progress import BackfillProgress
from revsync.store.backfill_runs import BackfillRuns
from revsync.store.budget import AccountRequestBudget
from revsync.store.customers import CustomerStore
from revsync.store.tenants import CachedTenantStore, TenantStore


class ImporterStripe(backfill.Lister, backfill.AccountReader, Protocol):
    """Stripe as the importer uses it: list pages, and the account's ``created``."""


class Importer(NamedTuple):
    settings: ImporterSettings
    tenants: Tenants
    # A run starts from the tenant as stored now (a trait may have just changed); its steps then
    # refresh any cached copy older than that (see Segment.config_version).
    stored_tenants: Tenants
    customers: Customers
    progress: backfill.Progress
    runs: backfill.Runs
    executions: backfill.Executions
    stripe: ImporterStripe
    budgets: partial[AccountRequestBudget]  # budgets(account, rate): the account's shared budget
    changes: EventBridgeChanges
    clock: Callable[[], float]


def build(settings: ImporterSettings, **overrides: Any) -> Importer:
    aws.configure(settings.aws)
    models.bind(
        customers=settings.customers_table,
        sync=settings.sync_table,
        tenants=settings.tenants_table,
    )
    return Importer(
        settings=settings,
        tenants=CachedTenantStore(TenantStore()),
        stored_tenants=TenantStore(),
        customers=CustomerStore(),
        progress=BackfillProgress(settings.tenants_table),
        runs=BackfillRuns(settings.tenants_table),
        executions=BackfillExecutions(),
        stripe=stripe_accounts(settings.stripe, settings.tenants_table),
        budgets=budgets(settings.tenants_table),
        changes=EventBridgeChanges(settings.changes_bus_name),
        clock=time.time,
    )._replace(**overrides)


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Importer:
    return build(ImporterSettings.from_environ(environ), **overrides)
