"""The tenant API's graph (functions/oauth): tenants and their connection, records and histories,
the customers at risk, the revenue rollup, backfill claims and executions, OAuth states, secrets,
Stripe, the catch-up queue."""

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from revsync.bootstrap.stripe import stripe_accounts
from revsync.infra import aws
from revsync.infra.catch_ups import SqsCatchUpQueue
from revsync.infra.secrets import PlatformSecrets, TenantSecrets
from revsync.infra.stepfunctions import BackfillStarter
from revsync.services import connect, policy, reconcile, revenue, risks, tenants
from revsync.settings import TenantApiSettings
from revsync.store import models
from revsync.store.backfill_progress import BackfillProgress
from revsync.store.events_progress import EventsProgressStore
from revsync.store.oauth_states import OAuthStates
from revsync.store.read_models import CustomerRecords, MrrHistories
from revsync.store.rollup import RevenueRollup
from revsync.store.tenants import TenantStore


class TenantApiStripe(tenants.KeyChecker, tenants.CustomerSampler, connect.StripeConnect, Protocol):
    """Stripe as the tenant routes use it."""


class TenantApiTenants(tenants.TenantRepository, policy.PolicyTenants, Protocol):
    """The tenants as the tenant routes keep them (the policy route changes only the policy)."""


class TenantApi(NamedTuple):
    settings: TenantApiSettings
    tenants: TenantApiTenants
    records: tenants.RecordReader
    histories: revenue.HistoryReader
    revenue: revenue.RevenueReader
    risks: risks.RiskReader
    claims: tenants.BackfillClaims
    states: connect.States
    platform: PlatformSecrets
    starter: tenants.BackfillStarter
    secrets: tenants.SecretWriter
    stripe: TenantApiStripe
    events: EventsProgressStore
    catch_ups: reconcile.CatchUpQueue
    clock: Callable[[], float]


def build(settings: TenantApiSettings, **overrides: Any) -> TenantApi:
    aws.configure(settings.aws)
    models.bind(
        customers=settings.customers_table,
        sync=settings.sync_table,
        tenants=settings.tenants_table,
        revenue=settings.revenue_table,
    )
    platform = PlatformSecrets(
        stripe_secret_key=settings.stripe.secret_key_param,
        connect_client_id=settings.connect_client_id_param,
        state_key=settings.state_key_param,
    )
    # One instance: the key it seals is the one the tenant's Stripe client opens (and a retired
    # secret is forgotten by both).
    tenant_secrets = TenantSecrets(settings.stripe.tenant_secrets_key)
    return TenantApi(
        settings=settings,
        tenants=TenantStore(),
        records=CustomerRecords(),
        histories=MrrHistories(),
        revenue=RevenueRollup(settings.aws.region),
        risks=CustomerRecords(),
        claims=BackfillProgress(settings.tenants_table),
        states=OAuthStates(settings.tenants_table),
        platform=platform,
        starter=BackfillStarter(settings.backfill_state_machine_arn),
        secrets=tenant_secrets,
        stripe=stripe_accounts(
            settings.stripe, settings.tenants_table, platform=platform, tenant_secrets=tenant_secrets
        ),
        events=EventsProgressStore(settings.tenants_table),
        catch_ups=SqsCatchUpQueue(settings.reconcile_queue_url, settings.reconcile_minutes * 60),
        clock=time.time,
    )._replace(**overrides)


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> TenantApi:
    return build(TenantApiSettings.from_environ(environ), **overrides)
