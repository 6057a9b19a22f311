"""Concrete adapters the handlers share, built one way (the handlers stay wiring only)."""

from __future__ import annotations

from functools import partial

from revsync.infra.secrets import PlatformSecrets, TenantSecrets
from revsync.settings import get_settings
from revsync.store.budget import AccountRequestBudget
from revsync.stripe_api.client import StripeAccounts
from revsync.table_names import table_names


def stripe_accounts(tenant_secrets: TenantSecrets | None = None) -> StripeAccounts:
    """Stripe for a tenant's connection: the platform key (Connect) or the tenant's restricted key,
    every single read within the account's shared request budget (worker, importer, tenant API and
    backfills together stay under the account's rate limit)."""
    settings, secrets = get_settings(), tenant_secrets or TenantSecrets()
    return StripeAccounts(
        platform_key=PlatformSecrets().stripe_secret_key,
        tenant_api_key=secrets.api_key,
        api_base=settings.stripe_api_base,
        budget=partial(AccountRequestBudget, table_names().tenants),
        rate_limits=(settings.stripe_rate_limit_test, settings.stripe_rate_limit_live),
    )
