"""Each function's settings are read and checked at its cold start: a missing or malformed variable
fails it with one error naming every such variable (tests/integration/test_settings_iam.py holds the
names to template.yaml)."""

from __future__ import annotations

import pytest
from revsync.errors import SettingsError
from revsync.settings import ReceiverSettings, TenantApiSettings

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/revsync-events.fifo"
RECEIVER = {
    "AWS_REGION": "us-east-1",
    "TENANTS_TABLE": "revsync-tenants",
    "EVENTS_QUEUE_URL": QUEUE,
    "DEAD_LETTER_QUEUE_URL": QUEUE.replace("events", "dead"),
    "TENANT_MESSAGE_GROUPS": "4",
    "STRIPE_WEBHOOK_SECRET_PARAM": "/revsync/dev/stripe/webhook-secret",
    "TENANT_SECRETS_KEY": "arn:aws:kms:us-east-1:123456789012:key/k",
    "MAX_WEBHOOK_BODY_BYTES": "262144",
}
TENANT_API = {
    "AWS_REGION": "us-east-1",
    "CUSTOMERS_TABLE": "c",
    "SYNC_TABLE": "s",
    "TENANTS_TABLE": "t",
    "REVENUE_TABLE": "r",
    "STRIPE_SECRET_KEY_PARAM": "/revsync/dev/stripe/secret-key",
    "TENANT_SECRETS_KEY": "arn:aws:kms:us-east-1:123456789012:key/k",
    "STRIPE_CONNECT_CLIENT_ID_PARAM": "/revsync/dev/stripe/connect-client-id",
    "OAUTH_STATE_KEY_PARAM": "/revsync/dev/oauth/state-key",
    "BACKFILL_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:b",
    "RECONCILE_QUEUE_URL": QUEUE,
    "RECONCILE_MINUTES": "60",
    "ADMIN_AUTH": "JWT",
    "WEBHOOK_BASE_URL": "https://abc.lambda-url.us-east-1.on.aws/",
}


def test_a_complete_environment_reads_typed_values() -> None:
    settings = ReceiverSettings.from_environ(RECEIVER)
    assert (settings.tenant_message_groups, settings.max_webhook_body_bytes) == (4, 262_144)
    assert settings.aws.region == "us-east-1"
    assert settings.aws.client_timeout_seconds is None  # the template never sets the local one
    api = TenantApiSettings.from_environ(TENANT_API)
    assert (api.admin_auth, api.jwt_tenant_claim, api.admin_login_url) == ("JWT", "tenant_id", None)
    assert api.stripe.rate_limit_test == 25.0  # Stripe's documented test-mode limit by default


def test_every_missing_variable_is_named_in_one_error() -> None:
    environ = {k: v for k, v in RECEIVER.items() if k not in ("EVENTS_QUEUE_URL", "TENANTS_TABLE")}
    with pytest.raises(SettingsError) as raised:
        ReceiverSettings.from_environ(environ)
    assert "the receiver's settings" in str(raised.value)
    assert "TENANTS_TABLE is not set" in str(raised.value)
    assert "EVENTS_QUEUE_URL is not set" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("EVENTS_QUEUE_URL", "", "EVENTS_QUEUE_URL is not set"),  # an empty URL is none
        ("EVENTS_QUEUE_URL", "revsync-events.fifo", "EVENTS_QUEUE_URL is not an http(s) URL"),
        ("TENANT_MESSAGE_GROUPS", "four", "TENANT_MESSAGE_GROUPS is not an integer"),
        ("TENANT_MESSAGE_GROUPS", "0", "TENANT_MESSAGE_GROUPS is below 1"),
    ],
)
def test_a_malformed_variable_fails_the_cold_start_naming_it(name: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        ReceiverSettings.from_environ({**RECEIVER, name: value})


def test_admin_auth_is_iam_or_jwt_and_nothing_else() -> None:
    assert TenantApiSettings.from_environ({**TENANT_API, "ADMIN_AUTH": "IAM"}).admin_auth == "IAM"
    for wrong in ("jwt", "NONE", ""):
        with pytest.raises(SettingsError, match="ADMIN_AUTH"):
            TenantApiSettings.from_environ({**TENANT_API, "ADMIN_AUTH": wrong})


def test_an_optional_url_is_checked_when_given() -> None:
    with pytest.raises(SettingsError, match="SETTINGS_RETURN_URL is not an http"):
        TenantApiSettings.from_environ({**TENANT_API, "SETTINGS_RETURN_URL": "example.com/back"})
    given = TenantApiSettings.from_environ({**TENANT_API, "PUBLIC_BASE_URL": "https://revsync.example"})
    assert given.public_base_url == "https://revsync.example"
