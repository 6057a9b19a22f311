"""The tenant API's graph (functions/oauth): tenants and their connection, records and histories,
the customers at risk, the revenue rollup, backfill claims and executions, OAuth states, secrets,
Stripe, the catch-up queue."""

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from revsync.domain.tenancy import Tenant
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
from revsync.stripe_api.results import KeyCheck, OAuthGrant, StripeUnavailable

T = TypeVar("T")


class TenantApiStripe(tenants.KeyChecker, tenants.CustomerSampler, connect.StripeConnect, Protocol):
    """Stripe as the tenant routes use it."""


class LazyStripe:
    """The tenant API's Stripe, built at its first call: most tenant routes never call Stripe, and
    the SDK is the heaviest of the function's imports, which its cold start would pay. An error of
    the SDK's that the adapter does not answer itself is ``StripeUnavailable`` (the caller may
    retry; never a 500)."""

    def __init__(self, build: Callable[[], TenantApiStripe]) -> None:
        self._build = build
        self._stripe: TenantApiStripe | None = None

    def _call(self, use: Callable[[TenantApiStripe], T]) -> T:
        if self._stripe is None:
            self._stripe = self._build()
        import stripe  # noqa: PLC0415 (loaded by the adapter just built)

        try:
            return use(self._stripe)
        except stripe.StripeError as exc:
            raise StripeUnavailable("Stripe did not answer as expected; try again.") from exc

    def check_api_key(self, api_key: str) -> KeyCheck:
        return self._call(lambda stripe: stripe.check_api_key(api_key))

    def sample_customers(self, tenant: Tenant, limit: int = 100) -> list[dict[str, Any]]:
        return self._call(lambda stripe: stripe.sample_customers(tenant, limit))

    def oauth_authorize_url(self, client_id: str, state: str, redirect_uri: str) -> str:
        return self._call(lambda stripe: stripe.oauth_authorize_url(client_id, state, redirect_uri))

    def oauth_exchange(self, code: str) -> OAuthGrant:
        return self._call(lambda stripe: stripe.oauth_exchange(code))

    def oauth_deauthorize(self, client_id: str, account_id: str) -> None:
        self._call(lambda stripe: stripe.oauth_deauthorize(client_id, account_id))


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
        stripe=LazyStripe(lambda: _stripe_accounts(settings, platform, tenant_secrets)),
        events=EventsProgressStore(settings.tenants_table),
        catch_ups=SqsCatchUpQueue(settings.reconcile_queue_url, settings.reconcile_minutes * 60),
        clock=time.time,
    )._replace(**overrides)


def _stripe_accounts(
    settings: TenantApiSettings, platform: PlatformSecrets, tenant_secrets: TenantSecrets
) -> TenantApiStripe:
    from revsync.bootstrap.stripe import stripe_accounts  # noqa: PLC0415 (the SDK, at the first call)

    return stripe_accounts(
        settings.stripe, settings.tenants_table, platform=platform, tenant_secrets=tenant_secrets
    )


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> TenantApi:
    return build(TenantApiSettings.from_environ(environ), **overrides)
