"""Stripe's own CLI against the sandbox: ``stripe trigger <event> --api-base <sandbox>`` runs Stripe's
trigger fixtures (the requests are theirs, built into the CLI), and each must succeed and emit the
events Stripe emits for it, in Stripe's order, every object it made passing the contract checker of
tests/unit/test_sandbox_contract.py (the stripe package's own definitions).

``make test`` installs the CLI from npm (``make stripe-cli``: the version local/stripe-cli pins);
without it the module is skipped, and CI=true makes a missing CLI an error. One sandbox serves every
trigger, each on an API key of its own (so an account of its own), a few at a time. Then the same
triggers on the local stack, on one account connected to a revsync tenant: the records of the
customers they made equal what the sandbox's objects imply.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import stripe
from revsync.domain.risk import derive_risk
from revsync.store.customers import CustomerStore

from local.http import http
from local.stack import LocalStack
from local.stripe_sandbox.server import SandboxApp, serve
from local.truth import expected_record, expected_risk
from tests.e2e.conftest import free_port
from tests.e2e.test_backfill import wait_backfill
from tests.e2e.test_local_stack import connect_tenant
from tests.unit.test_sandbox_contract import Mismatch, check_resource

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "local" / "stripe-cli" / "node_modules" / ".bin" / "stripe"
DAY = 86_400


def stripe_cli() -> Path:
    """Stripe's CLI as ``make stripe-cli`` installs it; elsewhere the module is skipped (CI=true
    makes a missing or unrunnable CLI an error)."""
    runs = CLI.exists() and subprocess.run([CLI, "version"], capture_output=True, check=False).returncode == 0
    if not runs:
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the Stripe CLI's test: `make stripe-cli` installs it (needs npm)")
        pytest.skip(
            "Stripe's CLI is not installed (make stripe-cli, which needs npm)", allow_module_level=True
        )
    return CLI


class Expected(NamedTuple):
    events: tuple[str, ...]  # the types the trigger emits, in order
    error: str | None = None  # a trigger Stripe refuses at the sandbox's API version: what it says


_SUBSCRIBED = (  # a customer with pm_card_visa (attached, its default) subscribes monthly
    "customer.created",
    "payment_method.attached",
    "product.created",
    "price.created",
    "plan.created",
    "customer.updated",  # its currency, set by its first subscription
    "customer.subscription.created",
)
_PAID = (  # an invoice finalized and charged on a good card
    "invoice.created",
    "invoice.finalized",
    "payment_intent.created",
    "charge.succeeded",
    "payment_intent.succeeded",
    "invoice_payment.paid",
    "invoice.paid",
    "invoice.payment_succeeded",
)
_DRAFT = ("customer.created", "invoiceitem.created", "invoice.created")  # a draft of one invoice item
_CARD_CUSTOMER = ("customer.created", "customer.source.created")  # a customer with source=tok_visa
_PRICE = ("product.created", "price.created", "plan.created")
_SCHEDULED = (  # a schedule starting now: its subscription created and billed on the customer's card
    *_CARD_CUSTOMER,
    *_PRICE,
    "subscription_schedule.created",
    "customer.updated",
    "customer.subscription.created",
    *_PAID,
)
_COUPON_REMOVED = "Received unknown parameter: coupon. Stripe removed it in API version 2025-03-31.basil"

TRIGGERS: dict[str, Expected] = {}
TRIGGERS.update(
    {
        "customer.created": Expected(("customer.created",)),
        "customer.updated": Expected(("customer.created", "customer.updated")),
        "customer.deleted": Expected(("customer.created", "customer.deleted")),
        # The fixtures pass ``coupon`` to customers, which 2025-03-31.basil removed (as a Stripe account
        # on a current version answers): the CLI stops there, having made its coupon.
        "customer.discount.created": Expected(("coupon.created",), _COUPON_REMOVED),
        "customer.discount.updated": Expected(("coupon.created",), _COUPON_REMOVED),
        "customer.discount.deleted": Expected(("coupon.created",), _COUPON_REMOVED),
        "customer.source.created": Expected(
            ("customer.created", "customer.source.created", "customer.updated")
        ),
        "customer.source.updated": Expected(
            ("customer.created", "customer.source.created", "customer.updated", "customer.source.updated")
        ),
        "customer.subscription.created": Expected((*_SUBSCRIBED, *_PAID)),
        "customer.subscription.updated": Expected((*_SUBSCRIBED, *_PAID, "customer.subscription.updated")),
        "customer.subscription.deleted": Expected((*_SUBSCRIBED, *_PAID, "customer.subscription.deleted")),
        # A 7-day trial ended at once (trial_end=now) without a payment method: trial_will_end, paused.
        "customer.subscription.paused": Expected(
            (
                "customer.created",
                *_PRICE,
                "customer.updated",
                "customer.subscription.created",
                "customer.subscription.trial_will_end",
                "customer.subscription.paused",
            )
        ),
        # A 1-day trial: shorter than the 3 days' notice, so the notice comes at once.
        "customer.subscription.trial_will_end": Expected(
            (
                "customer.created",
                *_PRICE,
                "customer.updated",
                "customer.subscription.created",
                "customer.subscription.trial_will_end",
            )
        ),
        "invoice.created": Expected(_DRAFT),
        "invoice.deleted": Expected((*_DRAFT, "invoice.deleted")),
        "invoice.finalized": Expected((*_DRAFT, "invoice.finalized")),
        "invoice.marked_uncollectible": Expected(
            (*_DRAFT, "invoice.finalized", "invoice.marked_uncollectible")
        ),
        "invoice.paid": Expected(
            ("customer.created", "payment_method.attached", "invoiceitem.created", *_PAID)
        ),
        "invoice.payment_succeeded": Expected(
            ("customer.created", "payment_method.attached", "invoiceitem.created", *_PAID)
        ),
        # pm_card_threeDSecure2Required: the charge needs the customer's authentication (the fixture
        # expects the 402 card_error Stripe answers).
        "invoice.payment_action_required": Expected(
            (
                "customer.created",
                "payment_method.attached",
                "invoiceitem.created",
                "invoice.created",
                "invoice.finalized",
                "payment_intent.created",
                "payment_intent.requires_action",
                "invoice.payment_action_required",
            )
        ),
        # pm_card_chargeCustomerFail: attached, then declined (the fixture expects the card_error).
        "invoice.payment_failed": Expected(
            (
                "customer.created",
                "payment_method.attached",
                "invoiceitem.created",
                "invoice.created",
                "invoice.finalized",
                "payment_intent.created",
                "charge.failed",
                "payment_intent.payment_failed",
                "invoice.payment_failed",
            )
        ),
        "invoice.sent": Expected((*_DRAFT, "invoice.finalized", "invoice.sent")),
        # A customer's cards: pm_card_visa attached, detached; saved by a setup intent, then edited.
        "payment_method.attached": Expected(("customer.created", "payment_method.attached")),
        "payment_method.detached": Expected(
            ("customer.created", "payment_method.attached", "payment_method.detached")
        ),
        "payment_method.updated": Expected(
            (
                "customer.created",
                "setup_intent.created",
                "payment_method.attached",
                "setup_intent.succeeded",
                "payment_method.updated",
            )
        ),
        "invoice.updated": Expected((*_DRAFT, "invoice.updated")),
        "invoice.voided": Expected((*_DRAFT, "invoice.finalized", "invoice.voided")),
        "invoiceitem.created": Expected(("customer.created", "invoiceitem.created")),
        "invoiceitem.deleted": Expected(("customer.created", "invoiceitem.created", "invoiceitem.deleted")),
        # A plan is a recurring price seen through the older Plans API: both kinds of events.
        "plan.created": Expected(("product.created", "plan.created", "price.created")),
        "plan.updated": Expected(
            ("product.created", "plan.created", "price.created", "plan.updated", "price.updated")
        ),
        "plan.deleted": Expected(
            ("product.created", "plan.created", "price.created", "plan.deleted", "price.updated")
        ),
        "price.created": Expected(_PRICE),
        "price.updated": Expected((*_PRICE, "price.updated", "plan.updated")),
        "product.created": Expected(("product.created",)),
        "product.updated": Expected(("product.created", "product.updated")),
        "product.deleted": Expected(("product.created", "product.deleted")),
        "coupon.created": Expected(("coupon.created",)),
        "coupon.updated": Expected(("coupon.created", "coupon.updated")),
        "coupon.deleted": Expected(("coupon.created", "coupon.deleted")),
        # Schedules starting now create their subscription at once (billed on the customer's card).
        "subscription_schedule.created": Expected(_SCHEDULED),
        "subscription_schedule.updated": Expected((*_SCHEDULED, "subscription_schedule.updated")),
        "subscription_schedule.released": Expected(
            (*_SCHEDULED, "customer.subscription.updated", "subscription_schedule.released")
        ),
        "subscription_schedule.canceled": Expected(
            (*_SCHEDULED, "customer.subscription.deleted", "subscription_schedule.canceled")
        ),
        # A schedule starting in 2030, canceled: Stripe sends ``aborted`` only for a schedule whose
        # subscription was canceled for failed payments; this one is ``canceled``.
        "subscription_schedule.aborted": Expected(
            (*_CARD_CUSTOMER, *_PRICE, "subscription_schedule.created", "subscription_schedule.canceled")
        ),
        # On a test clock from 2020-01-01: one monthly phase, released at its end (day 30), the
        # clock advanced to 2020-02-01: the notice 7 days before, completion, then the renewal.
        "subscription_schedule.completed": Expected(
            (
                "test_helpers.test_clock.created",
                "customer.created",
                *_PRICE,
                "subscription_schedule.created",
                "customer.updated",
                "customer.subscription.created",
                *_PAID,
                "test_helpers.test_clock.advancing",
                "subscription_schedule.expiring",
                "customer.subscription.updated",
                "subscription_schedule.completed",
                "customer.subscription.updated",
                *_PAID,
                "test_helpers.test_clock.ready",
            )
        ),
        # The fixture advances its clock to 9 days before the schedule ends; Stripe sends
        # ``expiring`` 7 days before (test_expiring_comes_seven_days_before_the_end advances further).
        "subscription_schedule.expiring": Expected(
            (
                "test_helpers.test_clock.created",
                "customer.created",
                *_PRICE,
                "subscription_schedule.created",
                "customer.updated",
                "customer.subscription.created",
                *_PAID,
                "test_helpers.test_clock.advancing",
                "test_helpers.test_clock.ready",
            )
        ),
        # A credit note on an open (unpaid) invoice lowers what is due: the invoice is updated.
        "credit_note.created": Expected(
            (*_DRAFT, "invoice.finalized", "credit_note.created", "invoice.updated")
        ),
        "credit_note.updated": Expected(
            (*_DRAFT, "invoice.finalized", "credit_note.created", "invoice.updated", "credit_note.updated")
        ),
        "credit_note.voided": Expected(
            (
                *_DRAFT,
                "invoice.finalized",
                "credit_note.created",
                "invoice.updated",
                "credit_note.voided",
                "invoice.updated",
            )
        ),
        "quote.created": Expected((*_CARD_CUSTOMER, *_PRICE, "quote.created")),
        "quote.finalized": Expected((*_CARD_CUSTOMER, *_PRICE, "quote.created", "quote.finalized")),
        "quote.accepted": Expected(
            (
                *_CARD_CUSTOMER,
                *_PRICE,
                "quote.created",
                "quote.finalized",
                "customer.updated",
                "customer.subscription.created",
                *_PAID,
                "quote.accepted",
            )
        ),
        "quote.canceled": Expected((*_CARD_CUSTOMER, *_PRICE, "quote.created", "quote.canceled")),
        # The fixture passes payment_method_types, which 2026-09-30.endive removed from payment intents
        # (Stripe's error code says so); test_charge_refunded_without_payment_method_types runs it without.
        "charge.refunded": Expected((), "payment_method_types_no_longer_supported"),
    }
)
# Objects the sandbox serves by id, to check each one a trigger made as the API answers it now.
_RETRIEVE = {
    "customer": "/v1/customers/{id}",
    "subscription": "/v1/subscriptions/{id}",
    "invoice": "/v1/invoices/{id}",
    "invoiceitem": "/v1/invoiceitems/{id}",
    "product": "/v1/products/{id}",
    "price": "/v1/prices/{id}",
    "plan": "/v1/plans/{id}",
    "coupon": "/v1/coupons/{id}",
    "payment_method": "/v1/payment_methods/{id}",
    "payment_intent": "/v1/payment_intents/{id}",
    "charge": "/v1/charges/{id}",
    "refund": "/v1/refunds/{id}",
    "setup_intent": "/v1/setup_intents/{id}",
    "credit_note": "/v1/credit_notes/{id}",
    "quote": "/v1/quotes/{id}",
    "subscription_schedule": "/v1/subscription_schedules/{id}",
    "test_helpers.test_clock": "/v1/test_helpers/test_clocks/{id}",
    "card": "/v1/customers/{customer}/sources/{id}",
}


class Run(NamedTuple):
    key: str
    returncode: int
    output: str


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[str, SandboxApp]]:
    stripe_cli()
    server, app = serve(free_port())
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        app.stop()


def trigger(url: str, key: str, event: str, *flags: str) -> Run:
    return cli(url, key, "trigger", event, *flags)


def cli(url: str, key: str, *args: str) -> Run:
    """``stripe <args…>`` on the account of ``key`` at ``url``."""
    with tempfile.TemporaryDirectory() as config:  # the CLI's own config, not the user's
        done = subprocess.run(
            [stripe_cli(), *args, "--api-key", key, "--api-base", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "XDG_CONFIG_HOME": config, "STRIPE_CLI_TELEMETRY_OPTOUT": "1"},
        )
    return Run(key, done.returncode, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def runs(sandbox: tuple[str, SandboxApp]) -> dict[str, Run]:
    """Every trigger, each on its own key, four at a time (the CLI mostly waits on the sandbox)."""
    url = sandbox[0]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            event: pool.submit(trigger, url, f"sk_test_cli_{index:03d}", event)
            for index, event in enumerate(TRIGGERS)
        }
        return {event: future.result() for event, future in futures.items()}


def emitted(app: SandboxApp, key: str) -> list[dict[str, Any]]:
    """The account's events in the order they were emitted (and delivered)."""
    with app.sandbox.lock:
        return list(app.sandbox.account_for_key(key).events)


def _client(url: str, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)


@pytest.mark.parametrize("event", list(TRIGGERS))
def test_each_trigger_runs_as_on_stripe_and_emits_stripes_events(
    event: str, runs: dict[str, Run], sandbox: tuple[str, SandboxApp]
) -> None:
    url, app = sandbox
    run, expected = runs[event], TRIGGERS[event]
    if expected.error is None:
        assert run.returncode == 0, run.output
        assert "Trigger succeeded" in run.output
    else:
        assert run.returncode != 0
        assert expected.error in run.output, run.output
    events = emitted(app, run.key)
    assert tuple(e["type"] for e in events) == expected.events
    # Every object the trigger made passes the contract checker: as delivered and as served now.
    client = _client(url, run.key)
    failures = []
    for delivered in events:
        try:
            check_resource(delivered, f"{delivered['type']} {delivered['id']}")
        except Mismatch as exc:
            failures.append(str(exc))
        obj = delivered["data"]["object"]
        path = _RETRIEVE.get(obj["object"])
        if path is None:  # an invoice payment: served inside its invoice only
            continue
        served = client.raw_request(
            "get", path.format(**{"customer": obj.get("customer"), "id": obj["id"]})
        ).data
        try:
            check_resource(served, f"GET {path} ({obj['id']})")
        except Mismatch as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures[:10])


def test_charge_refunded_without_payment_method_types(sandbox: tuple[str, SandboxApp]) -> None:
    """Stripe's fixture for ``charge.refunded`` minus the parameter its version no longer takes
    (``--remove``, the CLI's own way to adapt a fixture): a payment, then its refund."""
    url, app = sandbox
    run = trigger(
        url, "sk_test_cli_refund", "charge.refunded", "--remove", "payment_intent:payment_method_types"
    )
    assert run.returncode == 0, run.output
    assert [e["type"] for e in emitted(app, run.key)] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "charge.refunded",
        "refund.created",
    ]
    refunded = emitted(app, run.key)[-2]["data"]["object"]
    assert (refunded["amount_refunded"], refunded["refunded"]) == (100, True)


def test_expiring_comes_seven_days_before_the_end(
    runs: dict[str, Run], sandbox: tuple[str, SandboxApp]
) -> None:
    """The ``subscription_schedule.expiring`` fixture's clock, advanced two days more: the notice."""
    url, app = sandbox
    run = runs["subscription_schedule.expiring"]
    client = _client(url, run.key)
    [clock] = client.v1.test_helpers.test_clocks.list().data
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + 2 * DAY})
    [notice] = [e for e in emitted(app, run.key) if e["type"] == "subscription_schedule.expiring"]
    schedule = notice["data"]["object"]
    assert notice["created"] == schedule["phases"][-1]["end_date"] - 7 * DAY


# --- the records revsync keeps of what the triggers made ------------------------------------------

RECORD_FIELDS = (
    "mrr",
    "trialing",
    "churned",
    "deleted_in_stripe",
    "total_paid",
    "total_refunded",
    "net_paid",
    "last_payment_at",
)


def test_the_records_of_every_customer_the_triggers_made_equal_what_the_sandbox_implies(
    local_stack: LocalStack,
) -> None:
    """Every trigger that makes a customer, run by the CLI against the local stack's sandbox on the
    key of an account connected to a revsync tenant (customers keyed by id), then money given back
    with the CLI's resource commands: once every webhook is handled, each customer the triggers made
    has a record equal to what the sandbox's own objects imply (``local.truth``, worked out from the
    objects read back through the stripe SDK)."""
    stripe_cli()
    stack = local_stack
    client, _ = connect_tenant(stack, "e2e-cli", trait="id")
    assert wait_backfill(stack, "e2e-cli")["state"] == "succeeded"
    key = client._requestor.api_key
    assert key is not None
    making_customers = [e for e, expected in TRIGGERS.items() if "customer.created" in expected.events]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {e: pool.submit(trigger, stack.stripe_url, key, e) for e in making_customers}
        runs = {event: future.result() for event, future in futures.items()}
    assert {e: run.output for e, run in runs.items() if run.returncode != 0} == {}
    # Money given back after paid invoices, with the CLI's resource commands: a credit note refunded
    # on one invoice's charge, one credited to the balance on another, a refund of a third's charge.
    paid = client.v1.invoices.list(params={"status": "paid", "limit": 3}).data
    assert len(paid) == 3
    for args in (
        ("credit_notes", "create", "--invoice", paid[0].id, "-d", "amount=500", "-d", "refund_amount=500"),
        ("credit_notes", "create", "--invoice", paid[1].id, "-d", "amount=300", "-d", "credit_amount=300"),
        ("refunds", "create", "-d", f"payment_intent={_paid_by(paid[2])}", "-d", "amount=200"),
    ):
        run = cli(stack.stripe_url, key, *args)
        assert run.returncode == 0, run.output
    # A saved card made to expire this month, before its customer's renewal (the CLI's resource command).
    now = int(http("GET", f"{stack.stripe_url}/_sandbox/config")[1]["now"])
    month = time.gmtime(now)
    expiring = _card_of_a_renewing_customer(client)
    run = cli(
        stack.stripe_url,
        key,
        *("payment_methods", "update", expiring, "-d", f"card[exp_month]={month.tm_mon}"),
        *("-d", f"card[exp_year]={month.tm_year}"),
    )
    assert run.returncode == 0, run.output
    assert http("POST", f"{stack.api_url}/_local/flush")[1]["flushed"] is True

    made = {
        e.data.object.id
        for e in client.v1.events.list(params={"type": "customer.created", "limit": 100}).auto_paging_iter()
    }
    assert len(made) >= 30
    wrong = {}
    for customer_id in sorted(made):
        status, record = stack.admin("GET", f"/tenants/e2e-cli/customers/{customer_id}")
        want = expected_record(client, customer_id)
        got = {k: record.get(k) for k in RECORD_FIELDS} if status == 200 else status
        if got != {k: want[k] for k in RECORD_FIELDS}:
            wrong[customer_id] = (got, want)
    assert wrong == {}
    # The triggers' money: customers paid, and one given a credit note, or churned, or trialing.
    records = [stack.admin("GET", f"/tenants/e2e-cli/customers/{c}")[1] for c in made]
    assert sum(r["total_paid"] > 0 for r in records) >= 5
    assert any(r["churned"] for r in records)
    assert any(r["trialing"] for r in records)
    assert any(r["mrr"] > 0 for r in records)
    assert sum(r["total_refunded"] for r in records) == 500 + 300 + 200

    # Their risk signals, as revsync keeps what they read (each customer's state, through the store),
    # equal what the sandbox's objects and events imply (``local.truth.expected_risk``).
    store, risks = CustomerStore(), {}
    for customer_id in sorted(made):
        record = stack.admin("GET", f"/tenants/e2e-cli/customers/{customer_id}")[1]
        got = dict(derive_risk(store.load("e2e-cli", customer_id).objects, record["currency"], now))
        want = expected_risk(client, customer_id, now)
        if {k: got[k] for k in want} != want:
            risks[customer_id] = ({k: got[k] for k in want}, want)
    assert risks == {}
    signals = [derive_risk(store.load("e2e-cli", c).objects, None, now) for c in made]
    assert any(r["failed_payment_attempts"] > 0 and r["in_dunning"] for r in signals)  # payment_failed
    assert any(r["scheduled_mrr"] for r in signals)  # subscription_schedule.updated: two seats next
    assert any(r["card_expires_at"] for r in signals)  # the card edited above


def _card_of_a_renewing_customer(client: stripe.StripeClient) -> str:
    """The default card of a customer whose subscription renews (one a trigger subscribed)."""
    for subscription in client.v1.subscriptions.list(
        params={"status": "active", "limit": 100}
    ).auto_paging_iter():
        customer: Any = client.v1.customers.retrieve(str(subscription.customer))
        settings = customer.invoice_settings
        default = settings.default_payment_method if settings else None
        if default and not subscription.cancel_at_period_end and not subscription.cancel_at:
            return str(default)
    raise AssertionError("no trigger made a renewing customer with a default card")


def _paid_by(invoice: Any) -> str:
    [payment] = invoice.payments.data
    return str(payment.payment.payment_intent)
