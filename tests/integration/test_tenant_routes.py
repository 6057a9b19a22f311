"""Tenant routes through the real handler, and the API-key (direct endpoint) path end to end."""

from __future__ import annotations

from typing import Any

import pytest
from revsync.domain.policy import RevenuePolicy
from revsync.domain.tenancy import Connection, Tenant, Tracking
from revsync.services.backfill import BackfillError
from revsync.store.tenants import TenantStore

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe
from tests.integration.conftest import legacy_tenant_secret

pytestmark = pytest.mark.integration

API_KEY = "rk_test_51Abcdefghijklmnop"
WEBHOOK_SECRET = "whsec_direct_tenant_secret"
NOW = FROZEN_NOW


def _secrets(stack: InProcessStack) -> list[str]:
    return [s["Name"] for s in stack.client("secretsmanager").list_secrets()["SecretList"]]


def _connect(stack: InProcessStack, tenant: str = "acme", api_key: str = API_KEY) -> Any:
    return stack.request(
        "PUT", f"/tenants/{tenant}/stripe/connection", {"api_key": api_key, "webhook_secret": WEBHOOK_SECRET}
    )


def test_api_key_connection_then_direct_webhooks_reach_the_record(
    stack: InProcessStack, stripe_fake: FakeStripe, capsys: pytest.CaptureFixture[str]
) -> None:
    stripe_fake.valid_keys[API_KEY] = "acct_direct"
    # Where the tenant registers its endpoint in Stripe, before it has the endpoint's secret to save.
    webhook_url = stack.request("GET", "/tenants/acme/stripe").json()["webhook_url"]
    assert webhook_url == "https://local.lambda-url.us-east-1.on.aws/webhooks/stripe/acme"
    response = _connect(stack)
    assert response.status == 200, response.body
    connection = response.json()["connection"]
    assert connection == {
        "status": "connected",
        "mode": "api_key",
        "account_id": "acct_direct",
        "livemode": False,
        "connected_at": connection["connected_at"],
        "scope": None,
    }
    # Sealed on the tenant item with KMS, no Secrets Manager secret ($0.40 a month each).
    assert _secrets(stack) == []
    stored = TenantStore().get("acme")
    assert stored is not None
    assert stored.connection.sealed is not None
    assert stored.connection.secret_name is None
    assert stack.request("PUT", "/tenants/acme/stripe/config", {"customer_id_trait": "email"}).status == 200

    customer = S.customer("cus_9", email="grace@example.com")
    event = S.event("customer.created", customer, created=NOW)  # no `account`: a direct endpoint
    assert stack.post_webhook(event, WEBHOOK_SECRET, tenant_id="acme", via="url").status == 200
    assert (
        stack.post_webhook(event, "whsec_local", tenant_id="acme").status == 400
    )  # the platform's secret is not this tenant's
    stack.drain()

    record = stack.request("GET", "/tenants/acme/customers/grace@example.com")
    assert record.status == 200
    assert record.json()["stripe_customer_id"] == "cus_9"
    logs = capsys.readouterr().out
    for secret in (API_KEY, WEBHOOK_SECRET, "grace@example.com"):
        assert secret not in logs


def test_an_old_style_tenant_keeps_working_then_moves_to_sealed_secrets_on_its_rotation(
    stack: InProcessStack, stripe_fake: FakeStripe
) -> None:
    """A tenant saved before sealed secrets: its Secrets Manager secret, in the middle of a webhook
    secret roll (two secrets, comma-separated), keeps working until the tenant's next PUT
    .../connection, which seals the new values on the tenant item and deletes the secret. The
    receiver verifies deliveries all along."""
    name = legacy_tenant_secret("acme", API_KEY, "whsec_old_secret, whsec_new_secret")
    legacy = Tenant("acme", Connection("connected", "api_key", "acct_direct", secret_name=name))
    TenantStore().save(legacy.with_config("id"), NOW)
    delivered = iter(range(100))

    def deliver(*secrets: str) -> int:
        event = S.event("customer.created", S.customer(f"cus_{next(delivered)}"), created=NOW)
        return stack.post_webhook(event, list(secrets), tenant_id="acme", via="url").status

    # Before: read from Secrets Manager as always, both rolled secrets accepted.
    assert [deliver("whsec_old_secret"), deliver("whsec_new_secret"), deliver("whsec_other")] == [
        200,
        200,
        400,
    ]
    tenant = TenantStore().get("acme")
    assert tenant is not None
    assert stack.graph("TenantApiFunction").secrets.api_key(tenant) == API_KEY

    # The rotation: the roll ends (the new secret only) and the key changes.
    stripe_fake.valid_keys["rk_test_51Rotatedkeyabcdef"] = "acct_direct"
    rotated = stack.request(
        "PUT",
        "/tenants/acme/stripe/connection",
        {"api_key": "rk_test_51Rotatedkeyabcdef", "webhook_secret": "whsec_new_secret"},
    )
    assert rotated.status == 200, rotated.body
    assert _secrets(stack) == []  # deleted at once, no recovery window
    tenant = TenantStore().get("acme")
    assert tenant is not None
    assert (tenant.connection.secret_name, tenant.customer_id_trait) == (None, "id")
    assert tenant.connection.sealed is not None
    assert stack.graph("TenantApiFunction").secrets.api_key(tenant) == "rk_test_51Rotatedkeyabcdef"
    # After: Stripe signs with the new secret (and, while its roll lasts, the old one beside it).
    assert [
        deliver("whsec_new_secret"),
        deliver("whsec_old_secret", "whsec_new_secret"),
        deliver("whsec_old_secret"),
    ] == [200, 200, 400]
    stack.drain()
    for applied in ("cus_0", "cus_1", "cus_3", "cus_4"):
        assert stack.request("GET", f"/tenants/acme/customers/{applied}").status == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"api_key": "pk_test_123456789", "webhook_secret": WEBHOOK_SECRET}, "invalid_api_key"),
        ({"api_key": API_KEY, "webhook_secret": "secret"}, "invalid_webhook_secret"),
        ({"webhook_secret": WEBHOOK_SECRET}, "invalid_api_key"),
        (["not", "an", "object"], "invalid_body"),
        ("{not json", "invalid_json"),
        ("", "invalid_body"),
        (b"\x80{}", "invalid_json"),  # not UTF-8 (the gateway passes it base64-encoded): was a 500
        ({"api_key": "rk_test_rejectedbystripe", "webhook_secret": WEBHOOK_SECRET}, "invalid_api_key"),
    ],
)
def test_bad_connections_are_400_and_store_nothing(
    stack: InProcessStack, stripe_fake: FakeStripe, body: Any, code: str
) -> None:
    raw = body if isinstance(body, (str, bytes)) else __import__("json").dumps(body)
    response = stack.request(
        "PUT", "/tenants/acme/stripe/connection", raw, {"content-type": "application/json"}
    )
    assert response.status == 400
    assert response.json()["error"] == code
    assert response.json()["message"]
    assert _secrets(stack) == []
    assert TenantStore().get("acme") is None


def test_config_requires_a_connection_and_a_valid_trait(
    stack: InProcessStack, stripe_fake: FakeStripe
) -> None:
    not_connected = stack.request("PUT", "/tenants/acme/stripe/config", {"customer_id_trait": "id"})
    assert (not_connected.status, not_connected.json()["error"]) == (409, "not_connected")
    stripe_fake.valid_keys[API_KEY] = None
    assert _connect(stack).status == 200
    for trait in ("metadata.", "metadata.a[b]", "name", "", 7):
        response = stack.request("PUT", "/tenants/acme/stripe/config", {"customer_id_trait": trait})
        assert (response.status, response.json()["error"]) == (400, "invalid_customer_id_trait"), trait
    status = stack.request("GET", "/tenants/acme/stripe").json()
    assert status["config"]["customer_id_trait"] is None
    assert status["connection"]["account_id"] is None  # the key could not read its account: fine


def test_tracking_override_keeps_an_existing_trial_setting(stack: InProcessStack) -> None:
    TenantStore().save(
        Tenant(
            "acme",
            Connection("connected", "oauth", "acct_1"),
            tracking=Tracking(revenue="segment", churn="manual", trial="product"),
        ),
        NOW,
    )
    TenantStore().save(Tenant("fresh", Connection("connected", "oauth", "acct_2")), NOW)
    acme = stack.request(
        "PUT", "/tenants/acme/stripe/config", {"customer_id_trait": "metadata.app_id"}
    ).json()
    fresh = stack.request("PUT", "/tenants/fresh/stripe/config", {"customer_id_trait": "id"}).json()
    assert acme["tracking"] == {"revenue": "stripe", "churn": "stripe", "trial": "product"}
    assert fresh["tracking"] == {"revenue": "stripe", "churn": "stripe", "trial": "stripe"}
    assert stack.request("GET", "/tenants/acme/stripe").json()["config"] == {
        "customer_id_trait": "metadata.app_id",
        "version": 1,
    }


def test_status_of_an_unknown_tenant_and_error_shapes(stack: InProcessStack) -> None:
    status = stack.request("GET", "/tenants/nobody/stripe")
    assert status.status == 200
    assert status.json()["connection"]["status"] == "none"
    assert status.json()["backfill"]["state"] == "none"
    missing = stack.request("GET", "/tenants/acme/customers/u-404")
    assert (missing.status, missing.json()["error"]) == (404, "customer_not_found")
    # Over DynamoDB's 1,024-byte key in UTF-8, though not in characters (moto does not check it).
    for path in ("/tenants/acme/customers/" + "é" * 600, "/tenants/acme/customers/" + "é" * 600 + "/history"):
        too_long = stack.request("GET", path)
        assert (too_long.status, too_long.json()["error"]) == (400, "invalid_external_id")
    bad_tenant = stack.request("GET", "/tenants/bad%20id/stripe")
    assert (bad_tenant.status, bad_tenant.json()["error"]) == (400, "invalid_tenant_id")
    assert stack.request("GET", "/health").json() == {"status": "ok"}


def test_platform_attributes_on_a_record_are_never_touched(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("acme", "acct_acme")
    stack.client("dynamodb").put_item(
        TableName="revsync-local-customers",
        Item={
            "tenant_id": {"S": "acme"},
            "external_id": {"S": "u-1"},
            "plan_tier": {"S": "enterprise"},
            "health_score": {"N": "87"},
        },
    )
    customer = S.customer("cus_1", metadata={"app_id": "u-1"})
    stack.post_webhook(
        S.event("customer.created", customer, created=NOW - 5, account="acct_acme"), "whsec_local"
    )
    stack.post_webhook(
        S.event(
            "customer.subscription.created", S.subscription("cus_1"), created=NOW - 4, account="acct_acme"
        ),
        "whsec_local",
    )
    stack.drain()
    item = stack.client("dynamodb").get_item(
        TableName="revsync-local-customers", Key={"tenant_id": {"S": "acme"}, "external_id": {"S": "u-1"}}
    )["Item"]
    assert item["plan_tier"] == {"S": "enterprise"}
    assert item["health_score"] == {"N": "87"}
    assert item["stripe_customer_id"] == {"S": "cus_1"}


def test_a_connection_changed_meanwhile_is_a_409_not_a_500(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from revsync.store.tenants import ConnectionMoved

    # An API-key tenant: its disconnection calls no Stripe.
    TenantStore().save(Tenant("acme", Connection("connected", "api_key", "acct_1")), NOW)

    def crossed(self: TenantStore, tenant: Tenant, now: int) -> None:
        raise ConnectionMoved(tenant.tenant_id)

    monkeypatch.setattr(TenantStore, "save", crossed)
    response = stack.request("DELETE", "/tenants/acme/stripe")
    assert (response.status, response.json()["error"]) == (409, "connection_changed")


def test_a_policy_saved_while_the_config_is_changed_is_kept_and_the_config_is_a_409(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUT /config reads the tenant, then writes its config over the version it read: a policy saved
    in between (another admin's PUT /policy) is not undone; the config change answers 409, to retry."""
    TenantStore().save(Tenant("acme", Connection("connected", "oauth", "acct_1")), NOW)
    change_config = TenantStore.change_config
    policy = RevenuePolicy(discounts="none")

    def crossed(self: TenantStore, tenant: Tenant, now: int) -> None:
        read = TenantStore().get("acme")
        assert read is not None
        TenantStore().change_policy(read.with_policy(policy), now)  # lands first
        change_config(self, tenant, now)

    monkeypatch.setattr(TenantStore, "change_config", crossed)
    response = stack.request("PUT", "/tenants/acme/stripe/config", {"customer_id_trait": "id"})
    assert (response.status, response.json()["error"]) == (409, "config_changed")
    kept = TenantStore().get("acme")
    assert kept is not None
    assert (kept.policy, kept.customer_id_trait, kept.config_version) == (policy, None, 1)


def test_a_console_backfill_of_a_tenant_not_connected_fails_with_its_reason(stack: InProcessStack) -> None:
    """Started from the console (no route claimed it), the run's first step fails; the state
    machine's RecordFailure step then records why on the tenant, and records nothing for a tenant
    that does not exist."""
    TenantStore().save(Tenant("idle", Connection()), NOW)
    with pytest.raises(BackfillError) as failed:
        lambda_runtime.invoke("ImporterFunction", {"action": "start", "tenant_id": "idle"})
    error = {"Error": "BackfillError", "Cause": str(failed.value)}

    lambda_runtime.invoke("ImporterFunction", {"action": "fail", "tenant_id": "idle", "error": error})
    lambda_runtime.invoke("ImporterFunction", {"action": "fail", "tenant_id": "nobody", "error": error})

    backfill = stack.request("GET", "/tenants/idle/stripe").json()["backfill"]
    assert (backfill["state"], backfill["finished_at"]) == ("failed", NOW)
    assert "has no Stripe connection" in backfill["error"]
    assert TenantStore().get("nobody") is None
