"""Stripe as the functions that call it are given it (the worker, the tenant API, the importer, the
reconciler): built one way, whichever function it is for."""

from functools import partial

from revsync.infra.secrets import PlatformSecrets, TenantSecrets
from revsync.settings import StripeSettings
from revsync.store.budget import AccountRequestBudget
from revsync.stripe_api.client import StripeAccounts


def budgets(tenants_table: str) -> partial[AccountRequestBudget]:
    """``budgets(account, rate)``: an account's shared request budget, kept in the tenants table."""
    return partial(AccountRequestBudget, tenants_table)


def stripe_accounts(
    settings: StripeSettings,
    tenants_table: str,
    *,
    platform: PlatformSecrets | None = None,
    tenant_secrets: TenantSecrets | None = None,
) -> StripeAccounts:
    """Stripe for a tenant's connection: the platform key (Connect) or the tenant's restricted key,
    every single read within the account's shared request budget (worker, importer, tenant API and
    backfills together stay under the account's rate limit). ``platform`` and ``tenant_secrets``:
    the function's own, when it reads more of them (the tenant API)."""
    platform = platform or PlatformSecrets(stripe_secret_key=settings.secret_key_param)
    tenant_secrets = tenant_secrets or TenantSecrets(settings.tenant_secrets_key)
    return StripeAccounts(
        platform_key=platform.stripe_secret_key,
        tenant_api_key=tenant_secrets.api_key,
        api_base=settings.api_base,
        budget=budgets(tenants_table),
        rate_limits=(settings.rate_limit_test, settings.rate_limit_live),
    )
