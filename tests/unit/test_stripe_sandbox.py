"""The Stripe sandbox behaves as Stripe documents, as seen through the official stripe SDK."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from local.http import http
from local.stripe_sandbox.limits import Limiters, Limits
from local.stripe_sandbox.server import SandboxApp, serve
from tests.e2e.conftest import free_port

DAY = 86_400


@pytest.fixture
def sandbox() -> Iterator[tuple[str, SandboxApp]]:
    server, app = serve(free_port())
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield url, app
    finally:
        server.shutdown()
        app.stop()


def client(url: str, key: str = "sk_test_sandboxcase", **kwargs: Any) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": url, "connect": url}, max_network_retries=0, **kwargs
    )


def monthly(c: stripe.StripeClient, amount: int = 1000, **extra: Any) -> Any:
    params: Any = {
        "currency": "usd",
        "unit_amount": amount,
        "recurring": {"interval": "month"},
        "product_data": {"name": "Plan"},
        **extra,
    }
    return c.v1.prices.create(params=params)


def test_lists_are_newest_first_paginated_and_capped(sandbox: tuple[str, SandboxApp]) -> None:
    c = client(sandbox[0])
    created = [c.v1.customers.create(params={"email": f"{i}@example.com"}).id for i in range(7)]
    page = c.v1.customers.list(params={"limit": 3})
    assert [x.id for x in page.data] == created[::-1][:3]
    assert page.has_more is True
    following = c.v1.customers.list(params={"limit": 3, "starting_after": page.data[-1].id})
    assert [x.id for x in following.data] == created[::-1][3:6]
    assert [x.id for x in c.v1.customers.list(params={"limit": 2}).auto_paging_iter()] == created[::-1]
    with pytest.raises(stripe.InvalidRequestError, match="less than or equal to 100"):
        c.v1.customers.list(params={"limit": 101})


def test_subscription_list_hides_canceled_unless_status_all(sandbox: tuple[str, SandboxApp]) -> None:
    c = client(sandbox[0])
    price = monthly(c)
    customer = c.v1.customers.create()
    kept = c.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    gone = c.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": price.id}]})
    c.v1.subscriptions.cancel(gone.id)
    assert [s.id for s in c.v1.subscriptions.list().data] == [kept.id]
    assert {s.id for s in c.v1.subscriptions.list(params={"status": "all"}).data} == {kept.id, gone.id}
    assert [s.id for s in c.v1.subscriptions.list(params={"status": "canceled"}).data] == [gone.id]


def test_modern_shapes_invoices_and_expand(sandbox: tuple[str, SandboxApp]) -> None:
    c = client(sandbox[0])
    tiered: Any = {
        "currency": "usd",
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": [{"up_to": 10, "unit_amount": 100}, {"up_to": "inf", "unit_amount": 50}],
        "recurring": {"interval": "month"},
        "product_data": {"name": "Seats"},
    }
    price = c.v1.prices.create(params=tiered)
    coupon = c.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    customer = c.v1.customers.create()
    sub = c.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 12}],
            "discounts": [{"coupon": coupon.id}],
        }
    )
    assert sub["items"].data[0].current_period_end > sub.created  # periods live on items
    assert isinstance(sub.discounts[0], str)  # ids unless expanded
    expanded: Any = c.v1.subscriptions.retrieve(sub.id, params={"expand": ["discounts"]})
    assert expanded.discounts[0].source.coupon == coupon.id
    [invoice_object] = c.v1.invoices.list(params={"customer": customer.id, "status": "paid"}).data
    invoice: Any = invoice_object
    assert invoice.amount_paid == 990  # (10 x 100 + 2 x 50) less 10%
    assert invoice.parent.subscription_details.subscription == sub.id
    assert c.v1.invoices.list(params={"customer": customer.id, "status": "open"}).data == []


def test_rate_limit_answers_429_as_stripe_does(sandbox: tuple[str, SandboxApp]) -> None:
    url, _ = sandbox
    c = client(url)
    http("POST", f"{url}/_sandbox/config", {"rate_limit_per_second": 2})
    errors = []
    for _ in range(10):
        try:
            c.v1.customers.list()
        except stripe.RateLimitError as exc:
            errors.append(exc)
    assert errors, "ten requests at a 2/s limit must be throttled"
    assert errors[0].http_status == 429
    body: Any = errors[0].json_body
    headers: Any = errors[0].headers
    assert body["error"]["code"] == "rate_limit"
    assert headers["Retry-After"] == "1"


def test_endpoint_limits_refuse_one_endpoint_and_say_which_limit(sandbox: tuple[str, SandboxApp]) -> None:
    """Stripe counts each named operation against its own limit and the account's: a 429 says which
    in ``Stripe-Rate-Limited-Reason``; another endpoint of the account is not refused meanwhile."""
    url, _ = sandbox
    c = client(url, "sk_test_endpoints0001")
    http(
        "POST", f"{url}/_sandbox/config", {"endpoint_rate_limit_per_second": 3, "rate_limit_per_second": 100}
    )
    try:
        reasons = []
        for _ in range(8):
            try:
                c.v1.invoices.list()
            except stripe.RateLimitError as exc:
                headers: Any = exc.headers
                reasons.append(headers["Stripe-Rate-Limited-Reason"])
        assert reasons
        assert set(reasons) == {"endpoint-rate"}
        c.v1.customers.list()  # its own budget: not refused
        http(
            "POST",
            f"{url}/_sandbox/config",
            {"rate_limit_per_second": 1, "endpoint_rate_limit_per_second": None},
        )
        refused: list[str] = []
        for _ in range(4):
            try:
                c.v1.subscriptions.list()
            except stripe.RateLimitError as exc:
                headers = exc.headers
                refused.append(headers["Stripe-Rate-Limited-Reason"])
        assert refused
        assert set(refused) == {"global-rate"}
    finally:
        http(
            "POST",
            f"{url}/_sandbox/config",
            {"rate_limit_per_second": None, "endpoint_rate_limit_per_second": None},
        )


def test_accounts_are_separated_by_key_and_by_stripe_account(sandbox: tuple[str, SandboxApp]) -> None:
    url, _ = sandbox
    first, second = client(url, "sk_test_first0001"), client(url, "sk_test_second0001")
    first.v1.customers.create(params={"email": "only-first@example.com"})
    assert second.v1.customers.list().data == []
    with pytest.raises(stripe.PermissionError):
        client(url, "sk_test_first0001", stripe_account="acct_not_connected").v1.customers.list()


def _authorize(url: str, **params: str) -> str:
    query = "&".join(
        f"{k}={v}"
        for k, v in {
            "response_type": "code",
            "client_id": "ca_test",
            "state": "s1",
            "redirect_uri": "http://127.0.0.1:9/cb",
            **params,
        }.items()
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirect).open(f"{url}/oauth/authorize?{query}")
    except urllib.error.HTTPError as redirect:
        return str(redirect.headers["Location"])
    raise AssertionError("no redirect")


def test_oauth_codes_are_single_use_and_denial_redirects_with_an_error(
    sandbox: tuple[str, SandboxApp],
) -> None:
    url, _ = sandbox
    platform = client(url, "sk_test_platform0001")
    location = _authorize(url)
    assert location.startswith("http://127.0.0.1:9/cb?code=ac_")
    assert "state=s1" in location
    code = location.split("code=")[1].split("&")[0]
    token = platform.oauth.token(params={"grant_type": "authorization_code", "code": code})
    connected = client(url, "sk_test_platform0001", stripe_account=token.stripe_user_id)
    assert connected.v1.customers.create(params={"name": "via connect"}).id.startswith("cus_")
    with pytest.raises(stripe.oauth_error.InvalidGrantError):
        platform.oauth.token(params={"grant_type": "authorization_code", "code": code})
    denied = _authorize(url, decision="deny")
    assert "error=access_denied" in denied
    assert "state=s1" in denied
    platform.oauth.deauthorize(params={"client_id": "ca_test", "stripe_user_id": str(token.stripe_user_id)})
    with pytest.raises(stripe.PermissionError):
        connected.v1.customers.list()


def test_clock_renews_pauses_and_resumes(sandbox: tuple[str, SandboxApp]) -> None:
    url, _ = sandbox
    c = client(url)
    price = monthly(c, 1500)
    paying = c.v1.customers.create()
    renewing = c.v1.subscriptions.create(params={"customer": paying.id, "items": [{"price": price.id}]})
    trial_only = c.v1.subscriptions.create(
        params={
            "customer": c.v1.customers.create().id,
            "items": [{"price": price.id}],
            "trial_period_days": 7,
            "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}},
        }
    )
    http("POST", f"{url}/_sandbox/clock/advance", {"seconds": 31 * DAY})
    assert len(c.v1.invoices.list(params={"customer": paying.id, "status": "paid"}).data) == 2
    assert c.v1.subscriptions.retrieve(renewing.id).status == "active"
    assert c.v1.subscriptions.retrieve(trial_only.id).status == "paused"
    assert c.v1.subscriptions.resume(trial_only.id).status == "active"
    types = [e.type for e in c.v1.events.list(params={"limit": 100}).data]
    assert {"customer.subscription.paused", "customer.subscription.resumed", "invoice.paid"} <= set(types)


def test_invoice_lifecycle_as_users_script_it(sandbox: tuple[str, SandboxApp]) -> None:
    """send_invoice is not charged; draft → open → paid / void / uncollectible, each transition once."""
    c = client(sandbox[0])
    customer = c.v1.customers.create(params={"email": "inv@example.com"})
    price = monthly(c, 3000)
    sub = c.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id}],
            "collection_method": "send_invoice",
            "days_until_due": 7,
        }
    )
    [sent] = c.v1.invoices.list(params={"subscription": sub.id}).data
    assert (sent.status, sent.amount_paid, sent.collection_method) == ("open", 0, "send_invoice")
    assert sent.due_date is not None
    paid = c.v1.invoices.pay(sent.id, params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid) == ("paid", 3000)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.invoices.void_invoice(sent.id)  # a paid invoice cannot be voided

    c.v1.invoice_items.create(params={"customer": customer.id, "amount": 1500, "currency": "usd"})
    draft = c.v1.invoices.create(params={"customer": customer.id})
    assert (draft.status, draft.amount_due) == ("draft", 1500)
    assert [line.amount for line in c.v1.invoices.line_items.list(draft.id).data] == [1500]
    opened = c.v1.invoices.finalize_invoice(draft.id)
    assert opened.status == "open"
    assert c.v1.invoices.mark_uncollectible(draft.id).status == "uncollectible"
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.invoices.pay(draft.id)

    c.v1.invoice_items.create(params={"customer": customer.id, "amount": 700, "currency": "usd"})
    other = c.v1.invoices.create(params={"customer": customer.id})
    c.v1.invoices.finalize_invoice(other.id)
    assert c.v1.invoices.void_invoice(other.id).status == "void"

    charged = c.v1.invoice_items.create(params={"customer": customer.id, "amount": 900, "currency": "usd"})
    assert charged.invoice is None
    auto = c.v1.invoices.create(params={"customer": customer.id})
    assert c.v1.invoices.pay(auto.id).status == "paid"  # a draft is finalized, then charged
    types = [e.type for e in c.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    for expected in (
        "invoice.sent",
        "invoice.paid",
        "invoice.marked_uncollectible",
        "invoice.voided",
        "invoice.payment_succeeded",
        "invoice.finalized",
        "invoiceitem.created",
    ):
        assert expected in types, expected


def test_events_stay_listable_when_their_delivery_is_dropped(sandbox: tuple[str, SandboxApp]) -> None:
    url = sandbox[0]
    c = client(url)
    http("POST", f"{url}/_sandbox/config", {"delivery_drop_ratio": 1.0})
    c.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
    created = [c.v1.customers.create(params={"email": f"d{i}@example.com"}).id for i in range(3)]
    stats = http("GET", f"{url}/_sandbox/stats")[1]
    assert stats["deliveries dropped"] == 3
    assert stats["pending_deliveries"] == 0
    listed = c.v1.events.list(params={"types": ["customer.created"], "limit": 2})
    assert listed.has_more is True
    everything = [
        e.data.object.id for e in c.v1.events.list(params={"type": "customer.created"}).auto_paging_iter()
    ]
    assert sorted(everything) == sorted(created)


def test_the_sandboxs_limiters_count_as_stripe_documents() -> None:
    """Per account: requests in flight, each endpoint's rate, the account's rate (a refused request
    takes nothing from any budget); a second refills a second's worth."""
    now = [0.0]
    limiters = Limiters(clock=lambda: now[0])
    limits = Limits(global_rate=3, endpoint_rate=2, endpoint_rates={"GET /v1/invoices": 3}, concurrency=2)
    assert limiters.admit("acct_1", "GET /v1/customers", limits) is None
    assert limiters.admit("acct_1", "GET /v1/customers", limits) is None
    assert limiters.admit("acct_1", "GET /v1/customers", limits) == "global-concurrency"
    assert limiters.admit("acct_2", "GET /v1/customers", limits) is None  # another account
    limiters.release("acct_1")
    limiters.release("acct_1")
    assert limiters.admit("acct_1", "GET /v1/customers", limits) == "endpoint-rate"
    assert limiters.admit("acct_1", "GET /v1/invoices", limits) is None  # raised for this account
    limiters.release("acct_1")
    assert limiters.admit("acct_1", "GET /v1/invoices", limits) == "global-rate"
    now[0] += 1.0
    assert limiters.admit("acct_1", "GET /v1/customers", limits) is None


# --- test clocks, dunning, schedules, credit notes, payments ---------------------------------------

T0 = 1_700_000_000  # a test clock's start: objects on it live in its frozen time, not the wall clock's


def _events_since(c: stripe.StripeClient, start: int, *types: str) -> list[tuple[str, int]]:
    """(type, day since T0) of the account's events of ``types`` (all if none), oldest first."""
    listed = list(c.v1.events.list(params={"limit": 100}).auto_paging_iter())[::-1]  # oldest first
    ordered = sorted(listed, key=lambda e: e.created)  # stable: the same second keeps its order
    return [(e.type, (e.created - start) // DAY) for e in ordered if not types or e.type in types]


def test_a_test_clock_runs_a_trial_renewals_a_retried_payment_and_a_period_end_cancellation(
    sandbox: tuple[str, SandboxApp],
) -> None:
    c = client(sandbox[0])
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "story"})
    price = monthly(c, 1000)
    customer = c.v1.customers.create(
        params={
            "test_clock": clock.id,
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    sub = c.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}], "trial_period_days": 7}
    )
    assert (customer.created, sub.created, sub.test_clock) == (T0, T0, clock.id)
    settings: Any = customer.invoice_settings
    assert settings.default_payment_method.startswith("pm_")  # the attached copy

    def advance(days: int) -> None:
        answer = c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + days * DAY})
        assert answer.status == "advancing"  # Stripe answers while it advances
        assert c.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready"

    def use_card(test_id: str) -> None:
        card = c.v1.payment_methods.attach(test_id, params={"customer": customer.id})
        c.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})

    advance(8)  # the trial ends on day 7
    advance(38)  # renewed on day 37
    use_card("pm_card_chargeCustomerFail")
    advance(68)  # renewal on day 67 declined: past_due, retried 3 days later
    assert c.v1.subscriptions.retrieve(sub.id).status == "past_due"
    use_card("pm_card_visa")
    advance(71)  # the retry on day 70 succeeds
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    advance(98)  # the period ending on day 97 ends it

    ended = c.v1.subscriptions.retrieve(sub.id)
    assert (ended.status, ended.ended_at) == ("canceled", T0 + 97 * DAY)
    billing = (
        "customer.subscription.trial_will_end",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
    )
    assert _events_since(c, T0, *billing) == [
        ("customer.subscription.trial_will_end", 4),  # three days before the trial ends
        ("customer.subscription.updated", 7),  # trialing -> active, the first period billed
        ("invoice.paid", 7),
        ("customer.subscription.updated", 37),  # the next period
        ("invoice.paid", 37),
        ("customer.subscription.updated", 67),
        ("invoice.payment_failed", 67),
        ("customer.subscription.updated", 67),  # active -> past_due
        ("invoice.paid", 70),  # the retry
        ("customer.subscription.updated", 70),  # past_due -> active
        ("customer.subscription.updated", 71),  # cancel_at_period_end, asked at the clock's time
        ("customer.subscription.deleted", 97),
    ]
    invoices = c.v1.invoices.list(params={"customer": customer.id}).data
    assert [((i.created - T0) // DAY, i.status, i.attempt_count) for i in invoices] == [
        (67, "paid", 2),
        (37, "paid", 1),
        (7, "paid", 1),
    ]
    # Stripe lists a test clock's customers and subscriptions only when asked for that clock.
    assert c.v1.customers.list().data == []
    assert [x.id for x in c.v1.customers.list(params={"test_clock": clock.id}).data] == [customer.id]
    assert c.v1.subscriptions.list(params={"status": "all"}).data == []


@pytest.mark.parametrize("after_failed_retries", ["cancel", "unpaid"])
def test_after_the_last_retry_fails_the_subscription_is_canceled_or_unpaid(
    sandbox: tuple[str, SandboxApp], after_failed_retries: str
) -> None:
    """Dunning as the account's retry schedule sets it: retried 2 and 3 days after each failure,
    then canceled (Stripe's default) or marked unpaid (its invoices keep coming, not attempted)."""
    url = sandbox[0]
    c = client(url)
    http(
        "POST",
        f"{url}/_sandbox/config",
        {"payment_retry_days": [2, 3], "after_failed_retries": after_failed_retries},
    )
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    failing = c.v1.customers.create(
        params={
            "test_clock": clock.id,
            "payment_method": "pm_card_chargeCustomerFail",
            "invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"},
        }
    )
    sub = c.v1.subscriptions.create(params={"customer": failing.id, "items": [{"price": monthly(c).id}]})
    [first] = c.v1.invoices.list(params={"subscription": sub.id}).data
    assert (sub.status, first.status, first.next_payment_attempt) == ("past_due", "open", T0 + 2 * DAY)
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 10 * DAY})
    retried = c.v1.invoices.retrieve(first.id)
    assert (retried.status, retried.attempt_count, retried.next_payment_attempt) == ("open", 3, None)
    assert _events_since(c, T0, "invoice.payment_failed") == [
        ("invoice.payment_failed", 0),
        ("invoice.payment_failed", 2),
        ("invoice.payment_failed", 5),
    ]
    ended: Any = c.v1.subscriptions.retrieve(sub.id)
    if after_failed_retries == "cancel":
        assert (ended.status, ended.ended_at) == ("canceled", T0 + 5 * DAY)
        assert ended.cancellation_details.reason == "payment_failed"
        return
    assert ended.status == "unpaid"
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 31 * DAY})
    renewal = c.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert (renewal.created, renewal.status, renewal.attempt_count) == (T0 + 30 * DAY, "open", 0)


def test_a_test_clock_moves_forward_only_two_intervals_at_a_time_and_its_deletion_deletes_its_customers(
    sandbox: tuple[str, SandboxApp],
) -> None:
    c = client(sandbox[0])
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    customer = c.v1.customers.create(params={"test_clock": clock.id})
    weekly = monthly(c, recurring={"interval": "week"})
    c.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": weekly.id}]})
    for frozen_time in (T0 - DAY, T0, T0 + 15 * DAY):
        with pytest.raises(stripe.InvalidRequestError):
            c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": frozen_time})
    assert c.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == T0
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 14 * DAY})
    assert c.v1.test_helpers.test_clocks.delete(clock.id).deleted is True
    assert c.v1.customers.retrieve(customer.id).deleted is True
    assert "customer.subscription.deleted" in {t for t, _ in _events_since(c, T0)}


def test_a_schedule_changes_phase_when_the_clock_passes_it_then_completes(
    sandbox: tuple[str, SandboxApp],
) -> None:
    c = client(sandbox[0])
    clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    customer = c.v1.customers.create(params={"test_clock": clock.id, "source": "tok_visa"})
    price = monthly(c, 1000)
    phases: Any = [
        {"items": [{"price": price.id, "quantity": 1}], "iterations": 1},
        {"items": [{"price": price.id, "quantity": 3}], "iterations": 1},
    ]
    schedule = c.v1.subscription_schedules.create(
        params={
            "customer": customer.id,
            "start_date": T0 + 5 * DAY,
            "end_behavior": "release",
            "phases": phases,
        }
    )
    assert (schedule.status, schedule.subscription) == ("not_started", None)
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 40 * DAY})
    started = c.v1.subscription_schedules.retrieve(schedule.id)
    sub = c.v1.subscriptions.retrieve(str(started.subscription))
    assert (started.status, sub.schedule, sub["items"].data[0].quantity) == ("active", schedule.id, 3)
    invoices = c.v1.invoices.list(params={"subscription": sub.id}).data
    assert [((i.created - T0) // DAY, i.amount_paid) for i in invoices] == [(35, 3000), (5, 1000)]
    c.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 70 * DAY})
    completed = c.v1.subscription_schedules.retrieve(schedule.id)
    assert (completed.status, completed.completed_at) == ("completed", T0 + 65 * DAY)
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"  # released: it goes on
    assert _events_since(
        c, T0, *(f"subscription_schedule.{e}" for e in ("created", "updated", "expiring", "completed"))
    ) == [
        ("subscription_schedule.created", 0),
        ("subscription_schedule.updated", 5),  # started
        ("subscription_schedule.updated", 35),  # the second phase
        ("subscription_schedule.expiring", 58),  # seven days before it ends
        ("subscription_schedule.completed", 65),
    ]


def test_credit_notes_and_refunds_lower_what_was_paid(sandbox: tuple[str, SandboxApp]) -> None:
    c = client(sandbox[0])
    customer = c.v1.customers.create(
        params={
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    c.v1.invoice_items.create(params={"customer": customer.id, "amount": 5000, "currency": "usd"})
    invoice = c.v1.invoices.pay(c.v1.invoices.create(params={"customer": customer.id}).id)
    assert (invoice.status, invoice.amount_paid) == ("paid", 5000)
    expanded: Any = c.v1.invoices.retrieve(invoice.id, params={"expand": ["payments"]})
    intent = expanded.payments.data[0].payment.payment_intent
    note = c.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "custom_line_item", "unit_amount": 1500, "quantity": 1, "description": "x"}],
            "refund_amount": 1000,
        }
    )
    assert (note.type, note.amount, note.refunds[0].amount_refunded) == ("post_payment", 1500, 1000)
    assert c.v1.invoices.retrieve(invoice.id).post_payment_credit_notes_amount == 1500
    assert c.v1.customers.retrieve(customer.id).balance == -500  # the rest credited to the balance
    refund = c.v1.refunds.create(params={"payment_intent": str(intent), "amount": 2000})
    charge = c.v1.charges.retrieve(str(refund.charge))
    assert (charge.amount_refunded, charge.refunded) == (3000, False)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.refunds.create(params={"charge": charge.id, "amount": 2001})  # more than is left
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.credit_notes.void_credit_note(note.id)  # its refund stands
    types = [t for t, _ in _events_since(c, 0)]
    assert types.count("charge.refunded") == 2
    assert "credit_note.created" in types

    c.v1.invoice_items.create(params={"customer": customer.id, "amount": 4000, "currency": "usd"})
    draft = c.v1.invoices.create(params={"customer": customer.id})
    opened = c.v1.invoices.finalize_invoice(draft.id)
    pre = c.v1.credit_notes.create(params={"invoice": opened.id, "amount": 1000})
    assert (pre.type, c.v1.invoices.retrieve(opened.id).amount_due) == ("pre_payment", 3000)
    c.v1.credit_notes.void_credit_note(pre.id)
    assert c.v1.invoices.retrieve(opened.id).amount_due == 4000
    c.v1.credit_notes.create(params={"invoice": opened.id, "amount": 4000})
    assert c.v1.invoices.retrieve(opened.id).status == "paid"  # credited in full


def test_test_cards_decide_how_charges_go(sandbox: tuple[str, SandboxApp]) -> None:
    c = client(sandbox[0])
    customer: Any = c.v1.customers.create(params={"source": "tok_visa"})
    assert customer.default_source.startswith("card_")
    attached = c.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    assert attached.id.startswith("pm_")
    assert attached.id != "pm_card_visa"  # a payment method of its own, made from the test card
    with pytest.raises(stripe.CardError):
        c.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.customers.create(params={"invoice_settings": {"default_payment_method": "pm_card_visa"}})

    def invoice_of(amount: int) -> str:
        c.v1.invoice_items.create(params={"customer": customer.id, "amount": amount, "currency": "usd"})
        return c.v1.invoices.create(params={"customer": customer.id}).id

    with pytest.raises(stripe.CardError) as declined:
        c.v1.invoices.pay(invoice_of(100), params={"payment_method": "pm_card_chargeCustomerFail"})
    assert declined.value.code == "card_declined"
    with pytest.raises(stripe.CardError) as action:
        c.v1.invoices.pay(invoice_of(200), params={"payment_method": "pm_card_threeDSecure2Required"})
    assert action.value.code == "invoice_payment_intent_requires_action"
    assert c.v1.invoices.pay(invoice_of(300)).status == "paid"  # the default source, a good card
    types = [t for t, _ in _events_since(c, 0)]
    for expected in (
        "customer.source.created",
        "payment_method.attached",
        "charge.failed",
        "invoice.payment_action_required",
    ):
        assert expected in types, expected


def test_a_quote_accepted_becomes_a_subscription(sandbox: tuple[str, SandboxApp]) -> None:
    c = client(sandbox[0])
    customer = c.v1.customers.create(params={"source": "tok_visa"})
    quote = c.v1.quotes.create(
        params={"customer": customer.id, "line_items": [{"price": monthly(c, 1500).id, "quantity": 2}]}
    )
    assert (quote.status, quote.amount_total) == ("draft", 3000)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.quotes.accept(quote.id)  # a draft must be finalized first
    c.v1.quotes.finalize_quote(quote.id)
    accepted = c.v1.quotes.accept(quote.id)
    sub = c.v1.subscriptions.retrieve(str(accepted.subscription))
    assert (accepted.status, sub.status, sub["items"].data[0].quantity) == ("accepted", "active", 2)


def test_parameters_and_versions_stripe_no_longer_serves_are_refused_saying_so(
    sandbox: tuple[str, SandboxApp],
) -> None:
    url = sandbox[0]
    c = client(url)
    with pytest.raises(stripe.InvalidRequestError) as coupon:
        c.raw_request("post", "/v1/customers", coupon="co_x")
    assert coupon.value.code == "parameter_unknown"
    assert "2025-03-31.basil" in str(coupon.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as types:
        c.raw_request(
            "post", "/v1/payment_intents", amount=100, currency="usd", payment_method_types=["card"]
        )
    assert types.value.code == "payment_method_types_no_longer_supported"
    with pytest.raises(stripe.InvalidRequestError) as version:
        client(url, stripe_version="2025-02-24.acacia").v1.customers.list()
    assert "2025-02-24.acacia" in str(version.value.user_message)


def test_events_are_listed_by_at_most_20_types_and_not_by_type_and_types(
    sandbox: tuple[str, SandboxApp],
) -> None:
    """``types[]``: "an array of up to 20 strings"; ``type`` or ``types``, not both (EventListParams)."""
    c = client(sandbox[0])
    c.v1.customers.create(params={"email": "x@example.com"})
    types = ["customer.created", *(f"customer.kind_{n}" for n in range(19))]
    assert [e.type for e in c.v1.events.list(params={"types": types}).data] == ["customer.created"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        c.v1.events.list(params={"types": [*types, "invoice.paid"]})
    assert refused.value.param == "types"
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.events.list(params={"types": types, "type": "customer.created"})


def test_a_saved_card_is_renewed_by_api_and_by_its_network(sandbox: tuple[str, SandboxApp]) -> None:
    """``POST /v1/payment_methods/{id}`` edits a saved card's expiry (``payment_method.updated``); the
    card networks' updater (the sandbox's control route) renews it (``..automatically_updated``); a
    card not saved to a customer cannot be edited."""
    url, app = sandbox
    c = client(url)
    customer = c.v1.customers.create(params={"payment_method": "pm_card_visa"})
    (card,) = c.v1.customers.payment_methods.list(customer.id).data
    assert card.card is not None
    before = {"exp_month": card.card.exp_month, "exp_year": card.card.exp_year}
    edited = c.v1.payment_methods.update(card.id, params={"card": {"exp_month": 3, "exp_year": 31}})
    assert edited.card is not None
    assert (edited.card.exp_month, edited.card.exp_year) == (3, 2031)
    renewed = http(
        "POST",
        f"{url}/_sandbox/payment_methods/{card.id}/card_updated",
        {"exp_month": 4, "exp_year": 2032},
        {"Authorization": "Bearer sk_test_sandboxcase"},
    )[1]
    assert (renewed["card"]["exp_month"], renewed["card"]["exp_year"]) == (4, 2032)
    with app.sandbox.lock:
        events = app.sandbox.account_for_key("sk_test_sandboxcase").events
        updates = [
            (e["type"], e["data"].get("previous_attributes")) for e in events if "updated" in e["type"]
        ]
    assert updates[-2:] == [
        ("payment_method.updated", {"card": before}),
        ("payment_method.automatically_updated", {"card": {"exp_month": 3, "exp_year": 2031}}),
    ]
    loose = c.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.payment_methods.update(loose.id, params={"metadata": {"k": "v"}})


def test_a_setup_intent_confirmed_saves_its_card_to_the_customer(sandbox: tuple[str, SandboxApp]) -> None:
    url, app = sandbox
    c = client(url)
    customer = c.v1.customers.create()
    params: Any = {"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
    intent = c.v1.setup_intents.create(params=params)
    assert intent.status == "succeeded"
    assert c.v1.payment_methods.retrieve(str(intent.payment_method)).customer == customer.id
    with app.sandbox.lock:
        events = [e["type"] for e in app.sandbox.account_for_key("sk_test_sandboxcase").events]
    assert events[-3:] == ["setup_intent.created", "payment_method.attached", "setup_intent.succeeded"]
    with pytest.raises(stripe.CardError):
        c.v1.setup_intents.create(
            params={"customer": customer.id, "payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
