"""Typed settings from the environment, read once per process through a cached factory.

Nothing reads the environment at import time: tests set variables and call ``get_settings.cache_clear()``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import NamedTuple

from revsync.domain.backfill import HISTORY_BUDGET


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


# A NamedTuple rather than a dataclass: it is on the receiver's cold-start path, and defining a
# 27-field dataclass costs about a millisecond there.
class Settings(NamedTuple):
    stage: str
    region: str
    customers_table: str
    sync_table: str
    tenants_table: str
    # The tenants' monthly revenue rollup (revsync.store.rollup), kept from the sync table's stream.
    revenue_table: str
    events_queue_url: str
    dead_letter_queue_url: str
    # The catch-up jobs' queue (one message group per tenant), and the period the schedule queues
    # one job per connected tenant in (ReconcileMinutes).
    reconcile_queue_url: str
    reconcile_minutes: int
    # Deliveries of a message before the worker parks it in the DLQ itself (with its reason); the
    # queue's redrive policy allows one more, as a safety net.
    max_receive_count: int
    # The FIFO message groups a tenant's events are spread over (template.yaml: TenantMessageGroups,
    # where the number is derived): at most this many of a tenant's batches run at once.
    tenant_message_groups: int
    # SSM parameter names of platform secrets (SecureString); values never live in the environment in AWS.
    webhook_secret_param: str
    stripe_secret_key_param: str
    connect_client_id_param: str
    state_key_param: str
    # Where browsers reach the API (the OAuth redirect and the settings page); derived from the
    # request when unset.
    public_base_url: str | None
    # The receiver's function URL (https://<url-id>.lambda-url.<region>.on.aws/): where an API-key
    # tenant's own Stripe account sends its webhooks (<it>webhooks/stripe/<tenant_id>).
    webhook_base_url: str | None
    # The KMS key (ARN) that encrypts API-key tenants' keys and webhook secrets (revsync.infra.secrets).
    tenant_secrets_key: str
    # Another Stripe API (the local sandbox, localstripe) instead of api.stripe.com.
    stripe_api_base: str | None
    max_webhook_body_bytes: int
    backfill_state_machine_arn: str
    # The backfill keeps as many walks going as keep each list's endpoint at its limit within the
    # account's (revsync.domain.backfill.allowance), at most this many; each step takes this many
    # pages at most.
    backfill_concurrency: int
    backfill_pages_per_step: int
    # A page's objects are written this many at a time (one customer's together).
    backfill_writers: int
    # History events an execution may use before the run continues in a new one (of 25,000).
    backfill_history_budget: int
    stripe_rate_limit_test: float
    stripe_rate_limit_live: float
    # The change feed's EventBridge bus (Customer Record Changed events).
    changes_bus_name: str
    # Admin routes: "IAM" (SigV4) or "JWT" (a tenant's token may act only on its tenant; see
    # revsync.domain.access), the claim naming the token's tenant, where a browser without a token
    # logs in, and where the OAuth callback returns the browser ({tenant_id} replaced; None: the
    # settings page here).
    admin_auth: str
    jwt_tenant_claim: str
    admin_login_url: str | None
    settings_return_url: str | None
    # Only the local stack sets it (moto on a loaded machine is slower than DynamoDB); the template
    # never does, so deployed clients keep aws.CONFIG's timeouts.
    local_client_timeout_seconds: float | None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    stage = os.environ.get("STAGE", "dev")
    return Settings(
        stage=stage,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        customers_table=_required("CUSTOMERS_TABLE"),
        sync_table=_required("SYNC_TABLE"),
        tenants_table=_required("TENANTS_TABLE"),
        revenue_table=os.environ.get("REVENUE_TABLE", f"revsync-{stage}-revenue"),
        events_queue_url=os.environ.get("EVENTS_QUEUE_URL", ""),
        dead_letter_queue_url=os.environ.get("DEAD_LETTER_QUEUE_URL", ""),
        reconcile_queue_url=os.environ.get("RECONCILE_QUEUE_URL", ""),
        reconcile_minutes=int(os.environ.get("RECONCILE_MINUTES", "15")),
        max_receive_count=int(os.environ.get("MAX_RECEIVE_COUNT", "5")),
        tenant_message_groups=max(1, int(os.environ.get("TENANT_MESSAGE_GROUPS", "8"))),
        webhook_secret_param=os.environ.get(
            "STRIPE_WEBHOOK_SECRET_PARAM", f"/revsync/{stage}/stripe/webhook-secret"
        ),
        stripe_secret_key_param=os.environ.get(
            "STRIPE_SECRET_KEY_PARAM", f"/revsync/{stage}/stripe/secret-key"
        ),
        connect_client_id_param=os.environ.get(
            "STRIPE_CONNECT_CLIENT_ID_PARAM", f"/revsync/{stage}/stripe/connect-client-id"
        ),
        state_key_param=os.environ.get("OAUTH_STATE_KEY_PARAM", f"/revsync/{stage}/oauth/state-key"),
        public_base_url=os.environ.get("PUBLIC_BASE_URL") or None,
        webhook_base_url=os.environ.get("WEBHOOK_BASE_URL") or None,
        tenant_secrets_key=os.environ.get("TENANT_SECRETS_KEY", ""),
        stripe_api_base=os.environ.get("REVSYNC_STRIPE_API_BASE") or None,
        max_webhook_body_bytes=int(os.environ.get("MAX_WEBHOOK_BODY_BYTES", str(256 * 1024))),
        backfill_state_machine_arn=os.environ.get("BACKFILL_STATE_MACHINE_ARN", ""),
        backfill_concurrency=int(os.environ.get("BACKFILL_CONCURRENCY", "15")),
        backfill_pages_per_step=int(os.environ.get("BACKFILL_PAGES_PER_STEP", "25")),
        backfill_writers=int(os.environ.get("BACKFILL_WRITERS", "1")),
        backfill_history_budget=int(os.environ.get("BACKFILL_HISTORY_BUDGET", str(HISTORY_BUDGET))),
        stripe_rate_limit_test=float(os.environ.get("STRIPE_RATE_LIMIT_TEST", "25")),
        stripe_rate_limit_live=float(os.environ.get("STRIPE_RATE_LIMIT_LIVE", "100")),
        changes_bus_name=os.environ.get("CHANGES_BUS_NAME", f"revsync-{stage}-changes"),
        admin_auth=os.environ.get("ADMIN_AUTH", "IAM"),
        jwt_tenant_claim=os.environ.get("JWT_TENANT_CLAIM") or "tenant_id",
        admin_login_url=os.environ.get("ADMIN_LOGIN_URL") or None,
        settings_return_url=os.environ.get("SETTINGS_RETURN_URL") or None,
        local_client_timeout_seconds=float(os.environ.get("REVSYNC_LOCAL_CLIENT_TIMEOUT_SECONDS") or 0)
        or None,
    )
