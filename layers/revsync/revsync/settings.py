"""Each function's settings, typed and checked when the function starts (its cold start).

One class per function, holding what that function's code reads and nothing else: the names of the
resources it uses (tables, queues, SSM parameters, the KMS key, the bus, the state machine), all set
by template.yaml in the function's ``Environment`` (never derived here), and its tunables. A missing
or malformed variable fails the cold start with a ``SettingsError`` naming every one of them;
``revsync.bootstrap`` builds the function's adapters from the settings it is given.

No ``from __future__ import annotations`` and NamedTuples rather than dataclasses: the receiver
imports this module on its budgeted cold-start path, where string annotations and dataclasses cost
a measured part of a millisecond each.
"""

import os
from collections.abc import Collection, Mapping
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from revsync.errors import SettingsError

AdminAuth = Literal["IAM", "JWT"]


class _Environment:
    """Reads variables, collecting every problem so that one failed start names them all."""

    def __init__(self, environ: Mapping[str, str], function: str) -> None:
        self._environ, self._function = environ, function
        self._problems: list[str] = []

    def optional(self, name: str) -> str | None:
        return self._environ.get(name) or None

    def text(self, name: str, default: str | None = None) -> str:
        value = self.optional(name) or default
        if value is None:
            self._problems.append(f"{name} is not set")
            return ""
        return value

    def optional_url(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                self._problems.append(f"{name} is not an http(s) URL: {value!r}")
        return value

    def url(self, name: str) -> str:
        value = self.optional_url(name)
        if value is None:
            self._problems.append(f"{name} is not set")
        return value or ""

    def integer(self, name: str, default: int | None = None, minimum: int = 1) -> int:
        value = self.optional(name)
        if value is None and default is not None:
            return default
        try:
            number = int(value or "")
        except ValueError:
            self._problems.append(f"{name} is not an integer: {value!r}" if value else f"{name} is not set")
            return minimum
        if number < minimum:
            self._problems.append(f"{name} is below {minimum}: {number}")
        return number

    def positive(self, name: str, default: float) -> float:
        """A number above 0 (``default`` when unset)."""
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = 0.0
        if not number > 0:
            self._problems.append(f"{name} is not a number above 0: {value!r}")
            return default
        return number

    def choice(self, name: str, choices: Collection[str]) -> str:
        value = self.text(name)
        if value and value not in choices:
            self._problems.append(f"{name} must be one of {', '.join(sorted(choices))}: {value!r}")
        return value

    def check(self) -> None:
        if self._problems:
            raise SettingsError(f"{self._function}'s settings: {'; '.join(self._problems)}")


class AwsSettings(NamedTuple):
    region: str
    # Only the local stack sets it (moto on a loaded machine is slower than DynamoDB); the template
    # never does, so deployed clients keep revsync.infra.aws.CONFIG's timeouts.
    client_timeout_seconds: float | None

    @classmethod
    def read(cls, env: _Environment) -> "AwsSettings":
        # Lambda sets both; the SDK reads AWS_DEFAULT_REGION.
        region = env.optional("AWS_REGION") or env.text("AWS_DEFAULT_REGION")
        timeout = env.positive("REVSYNC_LOCAL_CLIENT_TIMEOUT_SECONDS", 0.0) or None
        return cls(region, timeout)


class StripeSettings(NamedTuple):
    """Stripe for a tenant's connection: the platform's key (Connect) or the tenant's sealed key."""

    secret_key_param: str  # SSM SecureString: the platform's secret key
    tenant_secrets_key: str  # the KMS key (ARN) sealing API-key tenants' secrets
    api_base: str | None  # another Stripe API (the local sandbox, localstripe) instead of api.stripe.com
    # Stripe's account-wide limits, requests a second (its documented defaults).
    rate_limit_test: float
    rate_limit_live: float

    @classmethod
    def read(cls, env: _Environment) -> "StripeSettings":
        return cls(
            secret_key_param=env.text("STRIPE_SECRET_KEY_PARAM"),
            tenant_secrets_key=env.text("TENANT_SECRETS_KEY"),
            api_base=env.optional_url("REVSYNC_STRIPE_API_BASE"),
            rate_limit_test=env.positive("STRIPE_RATE_LIMIT_TEST", 25.0),
            rate_limit_live=env.positive("STRIPE_RATE_LIMIT_LIVE", 100.0),
        )


class ReceiverSettings(NamedTuple):
    """functions/webhook: verify, route to a tenant, queue."""

    aws: AwsSettings
    tenants_table: str
    events_queue_url: str
    dead_letter_queue_url: str  # a verified delivery it cannot read is parked here whole
    # The FIFO message groups a tenant's events are spread over (template.yaml: TenantMessageGroups):
    # at most this many of a tenant's batches run at once.
    tenant_message_groups: int
    webhook_secret_param: str  # SSM SecureString: the platform's Connect endpoint secret(s)
    tenant_secrets_key: str  # the KMS key (ARN) that sealed API-key tenants' webhook secrets
    max_webhook_body_bytes: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ReceiverSettings":
        env = _Environment(environ, "the receiver")
        settings = cls(
            aws=AwsSettings.read(env),
            tenants_table=env.text("TENANTS_TABLE"),
            events_queue_url=env.url("EVENTS_QUEUE_URL"),
            dead_letter_queue_url=env.url("DEAD_LETTER_QUEUE_URL"),
            tenant_message_groups=env.integer("TENANT_MESSAGE_GROUPS"),
            webhook_secret_param=env.text("STRIPE_WEBHOOK_SECRET_PARAM"),
            tenant_secrets_key=env.text("TENANT_SECRETS_KEY"),
            max_webhook_body_bytes=env.integer("MAX_WEBHOOK_BODY_BYTES"),
        )
        env.check()
        return settings


class WorkerSettings(NamedTuple):
    """functions/worker/app.py: apply queued snapshots through the write path."""

    aws: AwsSettings
    customers_table: str
    sync_table: str
    tenants_table: str
    events_queue_url: str  # to defer a message when Stripe says wait
    dead_letter_queue_url: str
    # Deliveries of a message before the worker parks it in the DLQ itself (with its reason); the
    # queue's redrive policy allows more, as a safety net.
    max_receive_count: int
    stripe: StripeSettings
    changes_bus_name: str  # the change feed's EventBridge bus

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "WorkerSettings":
        env = _Environment(environ, "the worker")
        settings = cls(
            aws=AwsSettings.read(env),
            customers_table=env.text("CUSTOMERS_TABLE"),
            sync_table=env.text("SYNC_TABLE"),
            tenants_table=env.text("TENANTS_TABLE"),
            events_queue_url=env.url("EVENTS_QUEUE_URL"),
            dead_letter_queue_url=env.url("DEAD_LETTER_QUEUE_URL"),
            max_receive_count=env.integer("MAX_RECEIVE_COUNT"),
            stripe=StripeSettings.read(env),
            changes_bus_name=env.text("CHANGES_BUS_NAME"),
        )
        env.check()
        return settings


class TenantApiSettings(NamedTuple):
    """functions/oauth: the tenant routes."""

    aws: AwsSettings
    customers_table: str
    sync_table: str
    tenants_table: str
    revenue_table: str  # the monthly revenue rollup (read only)
    stripe: StripeSettings
    connect_client_id_param: str  # SSM: the platform's Connect client id (ca_…)
    state_key_param: str  # SSM SecureString: the key signing OAuth states
    backfill_state_machine_arn: str
    # The catch-up jobs' queue, and the period the schedule queues a job per tenant in (a requested
    # catch-up is deduplicated within it).
    reconcile_queue_url: str
    reconcile_minutes: int
    # Admin routes: IAM (SigV4) or JWT (a tenant's token acts only on its tenant; see
    # revsync.domain.access), the claim naming the token's tenant, where a browser without a token
    # logs in (a URL or a path on this API), where the OAuth callback returns the browser
    # ({tenant_id} replaced; None: the settings page here), and where browsers reach the API (None:
    # the host of each request).
    admin_auth: AdminAuth
    jwt_tenant_claim: str
    admin_login_url: str | None
    settings_return_url: str | None
    public_base_url: str | None
    # The receiver's function URL: where an API-key tenant's own Stripe account sends its webhooks.
    webhook_base_url: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "TenantApiSettings":
        env = _Environment(environ, "the tenant API")
        settings = cls(
            aws=AwsSettings.read(env),
            customers_table=env.text("CUSTOMERS_TABLE"),
            sync_table=env.text("SYNC_TABLE"),
            tenants_table=env.text("TENANTS_TABLE"),
            revenue_table=env.text("REVENUE_TABLE"),
            stripe=StripeSettings.read(env),
            connect_client_id_param=env.text("STRIPE_CONNECT_CLIENT_ID_PARAM"),
            state_key_param=env.text("OAUTH_STATE_KEY_PARAM"),
            backfill_state_machine_arn=env.text("BACKFILL_STATE_MACHINE_ARN"),
            reconcile_queue_url=env.url("RECONCILE_QUEUE_URL"),
            reconcile_minutes=env.integer("RECONCILE_MINUTES"),
            admin_auth="JWT" if env.choice("ADMIN_AUTH", ("IAM", "JWT")) == "JWT" else "IAM",
            jwt_tenant_claim=env.text("JWT_TENANT_CLAIM", "tenant_id"),
            admin_login_url=env.optional("ADMIN_LOGIN_URL"),
            settings_return_url=env.optional_url("SETTINGS_RETURN_URL"),
            public_base_url=env.optional_url("PUBLIC_BASE_URL"),
            webhook_base_url=env.url("WEBHOOK_BASE_URL"),
        )
        env.check()
        return settings


class ImporterSettings(NamedTuple):
    """functions/importer/app.py: the backfill's steps."""

    aws: AwsSettings
    customers_table: str
    sync_table: str
    tenants_table: str
    stripe: StripeSettings
    changes_bus_name: str
    # The backfill keeps as many walks going as keep each list's endpoint at its limit within the
    # account's (revsync.domain.backfill.allowance), at most this many; each step takes this many
    # pages at most, and writes a page's objects this many at a time (one customer's together).
    backfill_concurrency: int
    backfill_pages_per_step: int
    backfill_writers: int
    # History events an execution may use before the run continues in a new one (of 25,000).
    backfill_history_budget: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ImporterSettings":
        from revsync.domain.backfill import HISTORY_BUDGET  # noqa: PLC0415 (the importer's own path)

        env = _Environment(environ, "the importer")
        settings = cls(
            aws=AwsSettings.read(env),
            customers_table=env.text("CUSTOMERS_TABLE"),
            sync_table=env.text("SYNC_TABLE"),
            tenants_table=env.text("TENANTS_TABLE"),
            stripe=StripeSettings.read(env),
            changes_bus_name=env.text("CHANGES_BUS_NAME"),
            backfill_concurrency=env.integer("BACKFILL_CONCURRENCY"),
            backfill_pages_per_step=env.integer("BACKFILL_PAGES_PER_STEP"),
            backfill_writers=env.integer("BACKFILL_WRITERS"),
            backfill_history_budget=env.integer("BACKFILL_HISTORY_BUDGET", HISTORY_BUDGET),
        )
        env.check()
        return settings


class ReconcilerSettings(NamedTuple):
    """functions/importer/reconciler.py: the catch-up of missed events."""

    aws: AwsSettings
    customers_table: str
    sync_table: str
    tenants_table: str
    stripe: StripeSettings
    changes_bus_name: str
    # The catch-up jobs' queue (one message group per tenant; a run cut short queues its
    # continuation), and the period the schedule queues one job per connected tenant in.
    reconcile_queue_url: str
    reconcile_minutes: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "ReconcilerSettings":
        env = _Environment(environ, "the reconciler")
        settings = cls(
            aws=AwsSettings.read(env),
            customers_table=env.text("CUSTOMERS_TABLE"),
            sync_table=env.text("SYNC_TABLE"),
            tenants_table=env.text("TENANTS_TABLE"),
            stripe=StripeSettings.read(env),
            changes_bus_name=env.text("CHANGES_BUS_NAME"),
            reconcile_queue_url=env.url("RECONCILE_QUEUE_URL"),
            reconcile_minutes=env.integer("RECONCILE_MINUTES"),
        )
        env.check()
        return settings


class RollupSettings(NamedTuple):
    """functions/worker/rollup.py: the sync table's stream into the monthly revenue rollup."""

    aws: AwsSettings
    sync_table: str  # seeding marks states written before the rollup
    revenue_table: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "RollupSettings":
        env = _Environment(environ, "the revenue rollup")
        settings = cls(
            aws=AwsSettings.read(env),
            sync_table=env.text("SYNC_TABLE"),
            revenue_table=env.text("REVENUE_TABLE"),
        )
        env.check()
        return settings
