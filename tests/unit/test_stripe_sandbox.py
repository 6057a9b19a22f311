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
