"""No tenant ever sees or changes another's data: every way one tenant could reach another's.

Paths, Connect accounts (including a tenant moving to another account), webhook secrets, OAuth
states and queued messages, each through the real handlers on moto.
"""

from __future__ import annotations

from typing import Any

import pytest
from revsync.domain import oauth_state
from revsync.domain.routing import TenantRoute
from revsync.domain.tenancy import Connection, Tenant
from revsync.infra.secrets import SealedSecretError
from revsync.store.tenants import AccountTaken, TenantStore

from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration

NOW = FROZEN_NOW


def _record(stack: InProcessStack, tenant: str, external_id: str) -> dict[str, Any] | None:
    response = stack.request("GET", f"/tenants/{tenant}/customers/{external_id}")
    return None if response.status == 404 else response.json()


def _customer_event(account: str, customer_id: str, app_id: str, at: int, **kwargs: Any) -> dict[str, Any]:
    customer = S.customer(customer_id, metadata={"app_id": app_id}, **kwargs)
    return S.event("customer.updated", customer, created=at, account=account)


def _move(tenant_id: str, account_id: str) -> None:
    """What the OAuth callback stores when a tenant connects (again, maybe another account)."""
    tenant = TenantStore().get(tenant_id) or Tenant(tenant_id)
    moved = Tenant(
        tenant_id,
        Connection("connected", "oauth", account_id, connected_at=NOW),
        customer_id_trait=tenant.customer_id_trait,
        config_version=tenant.config_version,
    )
    TenantStore().save(moved, NOW)


def test_moving_to_another_account_releases_the_old_one_in_the_same_write(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("fabrikam", "acct_one")
    stack.post_webhook(_customer_event("acct_one", "cus_1", "u-1", NOW - 50, name="before"), PLATFORM_SECRET)
    # Queued while still connected to acct_one, applied after the move: not this tenant's data now.
    stack.post_webhook(_customer_event("acct_one", "cus_2", "u-2", NOW - 40), PLATFORM_SECRET)
    stack.drain(max_batches=1)  # cus_1 applied; cus_2 (another group) may or may not be in that batch

    _move("fabrikam", "acct_two")
    stack.drain()
    # Connect events of the old account after the move: acknowledged, dropped, nothing written.
    late = stack.post_webhook(
        _customer_event("acct_one", "cus_1", "u-1", NOW - 10, name="after"), PLATFORM_SECRET
    )
    assert (late.status, late.json().get("ignored")) == (200, "unknown_account")
    stack.drain()
    record = _record(stack, "fabrikam", "u-1")
    assert record is not None
    assert record["traits"]["stripe.name"] == "before"

    # Another tenant may now connect acct_one (it was released, not left claimed), and its events
    # reach that tenant only.
    TenantStore().save(
        Tenant("globex", Connection("connected", "oauth", "acct_one")).with_config("metadata.app_id"), NOW
    )
    stack.post_webhook(_customer_event("acct_one", "cus_1", "u-1", NOW - 5, name="globex's"), PLATFORM_SECRET)
    stack.drain()
    assert _record(stack, "globex", "u-1")["traits"]["stripe.name"] == "globex's"  # type: ignore[index]
    assert _record(stack, "fabrikam", "u-1")["traits"]["stripe.name"] == "before"  # type: ignore[index]


def test_a_queued_message_of_the_old_account_is_dropped_by_the_worker(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("fabrikam", "acct_one")
    stack.post_webhook(_customer_event("acct_one", "cus_9", "u-9", NOW - 40), PLATFORM_SECRET)
    _move("fabrikam", "acct_two")  # before the worker ran
    stats = stack.drain()
    assert stats.received == 1
    assert _record(stack, "fabrikam", "u-9") is None


def test_a_deauthorization_of_the_old_account_does_not_revoke_the_new_one(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    connect_oauth("fabrikam", "acct_one")
    deauthorized = S.event(
        "account.application.deauthorized",
        {"id": "ca_1", "object": "application"},
        created=NOW - 5,
        account="acct_one",
    )
    assert stack.post_webhook(deauthorized, PLATFORM_SECRET).status == 200  # queued for fabrikam
    _move("fabrikam", "acct_two")
    stack.drain()
    connection = stack.request("GET", "/tenants/fabrikam/stripe").json()["connection"]
    assert (connection["status"], connection["account_id"]) == ("connected", "acct_two")


def test_an_account_stays_with_its_tenant(stack: InProcessStack, connect_oauth: Any) -> None:
    connect_oauth("fabrikam", "acct_one")
    with pytest.raises(AccountTaken):
        TenantStore().save(Tenant("globex", Connection("connected", "oauth", "acct_one")), NOW)
    # A failed claim changed nothing: globex has no connection, acct_one still routes to fabrikam.
    assert TenantStore().get("globex") is None
    stack.post_webhook(_customer_event("acct_one", "cus_1", "u-1", NOW - 5), PLATFORM_SECRET)
    stack.drain()
    assert _record(stack, "fabrikam", "u-1") is not None
    assert _record(stack, "globex", "u-1") is None


def _connect_api_key(stack: InProcessStack, tenant_id: str) -> Tenant:
    """An API-key tenant as PUT .../connection saves it: its key and webhook secret sealed."""
    secrets = stack.graph("TenantApiFunction").secrets
    sealed = secrets.seal(tenant_id, f"rk_test_{tenant_id}_key", f"whsec_{tenant_id}_secret")
    tenant = Tenant(tenant_id, Connection("connected", "api_key", sealed=sealed)).with_config(
        "metadata.app_id"
    )
    TenantStore().save(tenant, NOW)
    return tenant


def test_direct_route_needs_that_tenants_own_secret(stack: InProcessStack) -> None:
    for tenant_id in ("initech", "umbrella"):
        _connect_api_key(stack, tenant_id)
    event = S.event("customer.created", S.customer("cus_1", metadata={"app_id": "u-1"}), created=NOW)
    # Another tenant's secret, or the platform's, does not open umbrella's route.
    for secret in ("whsec_initech_secret", PLATFORM_SECRET):
        crossed = stack.post_webhook(event, secret, tenant_id="umbrella")
        assert (crossed.status, crossed.json()["error"]) == (400, "bad_signature")
    assert stack.queue_depth("EventsQueue") == 0
    # Its own secret does, and the event lands in umbrella's records only.
    assert stack.post_webhook(event, "whsec_umbrella_secret", tenant_id="umbrella").status == 200
    stack.drain()
    assert _record(stack, "umbrella", "u-1") is not None
    assert _record(stack, "initech", "u-1") is None


@pytest.mark.parametrize("path_tenant", ["acme\n", "acme%0A", "..%2Facme", "acme%2Fcustomers", "ACME "])
def test_lookalike_tenant_paths_are_refused(
    stack: InProcessStack, connect_oauth: Any, path_tenant: str
) -> None:
    connect_oauth("acme", "acct_acme")
    for method, path in (
        ("GET", f"/tenants/{path_tenant}/stripe"),
        ("GET", f"/tenants/{path_tenant}/customers/u-1"),
        ("POST", f"/tenants/{path_tenant}/stripe/backfill"),
    ):
        response = stack.request(method, path)
        assert 400 <= response.status < 500, (method, path, response.status)
        assert response.json()["error"] in ("invalid_tenant_id", "not_found")


def test_an_oauth_state_of_one_tenant_cannot_connect_another(stack: InProcessStack) -> None:
    key = "state-key"
    token, state = oauth_state.issue("acme", key, NOW)
    states = stack.graph("TenantApiFunction").states
    states.save("acme", state.nonce, state.expires_at)
    # The nonce belongs to acme: consuming it for another tenant fails and leaves it usable by acme.
    assert states.consume("globex", state.nonce, NOW) is False
    assert states.consume("acme", state.nonce, NOW) is True
    # A state signed with another key (another deployment) is not ours.
    forged, _ = oauth_state.issue("globex", "another-key", NOW)
    with pytest.raises(oauth_state.StateError):
        oauth_state.verify(forged, key, NOW)
    assert oauth_state.verify(token, key, NOW).tenant_id == "acme"


def test_a_rewritten_tenant_secret_is_read_at_once_and_the_client_is_kept(stack: InProcessStack) -> None:
    from revsync.infra import aws

    secrets = stack.graph("TenantApiFunction").secrets
    sealed = secrets.seal("rotating", "rk_test_old", "whsec_old")
    route = TenantRoute(
        "rotating", "connected", False, "api_key", sealed_webhook_secret=sealed.webhook_secret
    )
    assert secrets.webhook_secrets(route) == ["whsec_old"]  # now cached
    client = aws.kms()
    resealed = secrets.seal("rotating", "rk_test_new", "whsec_old,whsec_new")
    route = route._replace(sealed_webhook_secret=resealed.webhook_secret)
    assert secrets.webhook_secrets(route) == ["whsec_old", "whsec_new"]
    assert (
        secrets.api_key(Tenant("rotating", Connection("connected", "api_key", sealed=resealed)))
        == "rk_test_new"
    )
    assert aws.kms() is client  # same client: only the value was new


def test_a_sealed_secret_copied_to_another_tenants_item_does_not_open(stack: InProcessStack) -> None:
    from revsync.infra import aws

    table = stack.graph("TenantApiFunction").settings.tenants_table
    initech = _connect_api_key(stack, "initech")
    umbrella = _connect_api_key(stack, "umbrella")
    event = S.event("customer.created", S.customer("cus_1", metadata={"app_id": "u-1"}), created=NOW)
    assert stack.post_webhook(event, "whsec_initech_secret", tenant_id="initech").status == 200  # warm
    # Someone with write access to the tenants table copies initech's sealed values onto umbrella.
    copied = aws.dynamodb().get_item(TableName=table, Key={"pk": {"S": "tenant#initech"}})["Item"][
        "connection"
    ]
    aws.dynamodb().update_item(
        TableName=table,
        Key={"pk": {"S": "tenant#umbrella"}},
        UpdateExpression="SET #c = :c",
        ExpressionAttributeNames={"#c": "connection"},
        ExpressionAttributeValues={":c": copied},
    )
    # KMS opens them for initech only (the encryption context names it), cache or no cache: umbrella's
    # route answers 503 (Stripe retries; the receiver's failure alarm fires) and queues nothing.
    crossed = stack.post_webhook(event, "whsec_initech_secret", tenant_id="umbrella")
    assert crossed.status == 503
    assert stack.queue_depth("EventsQueue") == 1  # initech's event only
    moved = TenantStore().get("umbrella")
    assert moved is not None
    assert moved.connection.sealed == initech.connection.sealed != umbrella.connection.sealed
    with pytest.raises(SealedSecretError):
        # nor does the worker's Stripe client get initech's key
        stack.graph("TenantApiFunction").secrets.api_key(moved)
    stack.drain()
    assert _record(stack, "initech", "u-1") is not None
    assert _record(stack, "umbrella", "u-1") is None
