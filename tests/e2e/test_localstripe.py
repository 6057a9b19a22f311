"""revsync against a Stripe fake we did not write: localstripe (legacy plans API, its own signed webhooks).

The stack is pointed at it with REVSYNC_STRIPE_API_BASE; customers, subscriptions, cancellations
and deletions made there must arrive as the right records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from local.stack import LocalStack
from tests.e2e.conftest import free_port, free_ports

pytestmark = pytest.mark.e2e
TENANT, API_KEY, SECRET = "ls-tenant", "sk_test_localstripe0001", "whsec_localstripe_secret"


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    binary = Path(sys.executable).parent / "localstripe"
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--from-scratch"],
        cwd=tmp_path_factory.mktemp("ls"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # a slow, shared CI machine
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/v1/customers", timeout=1)
            except urllib.error.HTTPError:
                break  # it answers (401 without a key): it is up
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(localstripe_url: str) -> Iterator[LocalStack]:
    with LocalStack(ports=free_ports(), stripe_api_base=localstripe_url) as running:
        yield running


def _eventually(check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def _record(stack: LocalStack, external_id: str) -> dict[str, Any] | None:
    status, body = stack.admin("GET", f"/tenants/{TENANT}/customers/{external_id}")
    return body if status == 200 else None


def test_localstripe_objects_arrive_as_the_right_records(stack: LocalStack, localstripe_url: str) -> None:
    assert os.environ["REVSYNC_STRIPE_API_BASE"] == localstripe_url
    assert stack.sandbox is None
    status, connected = stack.admin(
        "PUT",
        f"/tenants/{TENANT}/stripe/connection",
        {"api_key": API_KEY, "webhook_secret": SECRET},
    )
    assert status == 200, connected
    assert (
        stack.admin("PUT", f"/tenants/{TENANT}/stripe/config", {"customer_id_trait": "metadata.app_id"})[0]
        == 200
    )
    # localstripe signs and delivers its own webhooks to whatever is configured here: the endpoint
    # the status document names, the receiver's function URL.
    webhook_url = stack.admin("GET", f"/tenants/{TENANT}/stripe")[1]["webhook_url"]
    assert webhook_url == f"{stack.webhook_url}/webhooks/stripe/{TENANT}"
    registration = urllib.parse.urlencode({"url": webhook_url, "secret": SECRET})
    urllib.request.urlopen(
        urllib.request.Request(
            f"{localstripe_url}/_config/webhooks/revsync",
            data=registration.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    )

    client = stripe.StripeClient(API_KEY, base_addresses={"api": localstripe_url}, max_network_retries=0)
    client.v1.plans.create(
        params={
            "id": "pro",
            "amount": 2500,
            "currency": "usd",
            "interval": "month",
            "product": {"name": "Pro"},
        }
    )
    client.v1.plans.create(
        params={
            "id": "annual",
            "amount": 120000,
            "currency": "usd",
            "interval": "year",
            "product": {"name": "Annual"},
        }
    )

    def customer(app_id: str) -> str:
        token = client.v1.tokens.create(
            params={
                "card": {"number": "4242424242424242", "exp_month": "12", "exp_year": "2034", "cvc": "123"}
            }
        )
        return client.v1.customers.create(
            params={"email": f"{app_id}@example.com", "metadata": {"app_id": app_id}, "source": token.id}
        ).id

    active = customer("ls-active")
    client.v1.subscriptions.create(params={"customer": active, "items": [{"plan": "pro", "quantity": 2}]})
    annual = customer("ls-annual")
    client.v1.subscriptions.create(params={"customer": annual, "items": [{"plan": "annual"}]})
    canceled = customer("ls-canceled")
    doomed = client.v1.subscriptions.create(params={"customer": canceled, "items": [{"plan": "pro"}]})
    client.v1.subscriptions.cancel(doomed.id)
    deleted = customer("ls-deleted")
    client.v1.subscriptions.create(params={"customer": deleted, "items": [{"plan": "pro"}]})
    client.v1.customers.delete(deleted)

    def settled() -> bool:
        records = {
            name: _record(stack, name) for name in ("ls-active", "ls-annual", "ls-canceled", "ls-deleted")
        }
        return bool(
            records["ls-active"]
            and records["ls-active"]["mrr"] == 5000
            and records["ls-annual"]
            and records["ls-annual"]["mrr"] == 10000
            and records["ls-canceled"]
            and records["ls-canceled"]["churned"]
            and records["ls-deleted"]
            and records["ls-deleted"]["deleted_in_stripe"]
        )

    assert _eventually(settled), {
        name: _record(stack, name) for name in ("ls-active", "ls-annual", "ls-canceled", "ls-deleted")
    }
    active_record = _record(stack, "ls-active")
    assert active_record is not None
    assert (active_record["matched"], active_record["stripe_customer_id"], active_record["churned"]) == (
        True,
        active,
        False,
    )
    deleted_record = _record(stack, "ls-deleted")
    assert deleted_record is not None
    assert (deleted_record["mrr"], deleted_record["churned"]) == (0, True)
    assert stack.queue_depth("EventsDeadLetterQueue") == 0
