"""The revenue policy's ``metered`` option (revsync.domain.policy): ``excluded`` (the default, Stripe's
Billing analytics) or ``last_invoice``: a metered item counts what the subscription's latest
finalized invoice billed it. Worked examples derived from the published definitions, the state's
usage lines as a join (any order, any repetition), the history replay, and the fields parsed checked
against the stripe package's classes.

* Baremetrics, https://help.baremetrics.com/en/articles/9096541-usage-based-billing (Stripe):
  "Optional: You can include metered billing in Monthly Recurring Revenue (MRR). Usage revenue is
  recognized when invoices containing metered line items are paid", and its Usage Revenue counts
  "Invoice line items with "usage_type": "metered" as defined in the Stripe Price object".
* ProfitWell, https://learn.profitwell.com/l/en/article/gf9qqkyplu-why-is-my-profit-well-mrr-different-from-my-stripe-mrr:
  "Metered billing - Stripe does not include metered billing into MRR, we do".
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source, observation_of, parse_event
from revsync.domain.history import history_entries, mrr_timeline, replay
from revsync.domain.policy import DAY, DEFAULT_POLICY, RevenuePolicy
from revsync.domain.record import derive_record
from revsync.domain.snapshots import parse_invoice, parse_subscription
from revsync.domain.state import (
    MAX_USAGE_SUBSCRIPTIONS,
    USAGE_INVOICES_KEPT,
    CustomerObjects,
    apply,
    usage_after,
)
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants
from tests.unit.test_history_replay import STEP, _histories
from tests.unit.test_signal_snapshots import _allows, _annotation

T0 = 1_767_225_600  # 2026-01-01
LAST_INVOICE = RevenuePolicy(metered="last_invoice")
PLAN = S.price(4900, id="price_pro")
CALLS = S.price(25, usage_type="metered", id="price_calls")
CALLS_YEARLY = S.price(25, usage_type="metered", interval="year", id="price_calls_y")


def _subscription(*prices: dict[str, Any], discounts: list[Any] | None = None, sub_id: str = "sub_1") -> Any:
    items = [{**S.subscription_item(price), "id": f"si_{i}"} for i, price in enumerate(prices)]
    return parse_subscription(
        S.subscription("cus_1", items, id=sub_id, status="active", created=T0, discounts=discounts or [])
    )


def _usage_line(
    price: str, amount: int, discounts: dict[str, int] | None = None, sub_id: str = "sub_1"
) -> Any:
    """A metered line as Stripe sends it from 2025-03-31 (the price an id under ``pricing``)."""
    return {
        "object": "line_item",
        "amount": amount - sum((discounts or {}).values()),
        "subtotal": amount,
        "currency": "usd",
        "discount_amounts": [{"amount": a, "discount": d} for d, a in (discounts or {}).items()],
        "period": {"start": T0, "end": T0 + 31 * DAY},
        "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_1"}},
        "parent": {
            "type": "subscription_item_details",
            "subscription_item_details": {"subscription": sub_id, "subscription_item": "si_1"},
        },
    }


def _invoice(
    invoice_id: str,
    lines: list[Any],
    status: str = "paid",
    finalized_at: int = T0 + 31 * DAY,
    currency: str = "usd",
) -> Any:
    raw = S.invoice("cus_1", "sub_1", id=invoice_id, status=status, currency=currency, amount_paid=1)
    raw["lines"]["data"] = [*raw["lines"]["data"], *lines]
    raw["status_transitions"]["finalized_at"] = None if status == "draft" else finalized_at
    raw["created"] = finalized_at
    return parse_invoice(raw)


def _seen(snapshot: Any, at: int, source: Source = "updated") -> Observation:
    return Observation(snapshot=snapshot, observed_at=at, source=source, event_id=None)


def _mrr(observations: list[Observation], policy: RevenuePolicy) -> int:
    objects = CustomerObjects("cus_1")
    for observation in observations:
        objects = apply(objects, observation).objects
    return derive_record("t", objects, "id", policy)["mrr"]


FOREVER = {**S.discount(S.coupon(percent_off=20, id="co_f"), start=T0), "id": "di_forever"}
REPEATING = {
    **S.discount(
        S.coupon(percent_off=50, duration="repeating", duration_in_months=1, id="co_r"),
        start=T0,
        end=T0 + 40 * DAY,
    ),
    "id": "di_repeating",
}
CALLS_ONLY = _subscription(PLAN, CALLS)


@pytest.mark.parametrize(
    ("subscription", "invoices", "policy", "mrr"),
    [
        # Stripe's way (the default): 4900 of seats, the 3000 of calls billed counts nothing.
        (CALLS_ONLY, [_invoice("in_1", [_usage_line("price_calls", 3000)])], DEFAULT_POLICY, 4900),
        # Baremetrics' option, ProfitWell: the calls billed on the last invoice count.
        (CALLS_ONLY, [_invoice("in_1", [_usage_line("price_calls", 3000)])], LAST_INVOICE, 7900),
        # Finalized and not paid yet (open, uncollectible) counts too; a draft or a voided one does not.
        (CALLS_ONLY, [_invoice("in_1", [_usage_line("price_calls", 3000)], "open")], LAST_INVOICE, 7900),
        (
            CALLS_ONLY,
            [_invoice("in_1", [_usage_line("price_calls", 3000)], "uncollectible")],
            LAST_INVOICE,
            7900,
        ),
        (CALLS_ONLY, [_invoice("in_1", [_usage_line("price_calls", 3000)], "draft")], LAST_INVOICE, 4900),
        (CALLS_ONLY, [_invoice("in_1", [_usage_line("price_calls", 3000)], "void")], LAST_INVOICE, 4900),
        # The latest finalized invoice, not a sum: the newer one's 5000; voided, the one before counts.
        (
            CALLS_ONLY,
            [
                _invoice("in_1", [_usage_line("price_calls", 3000)]),
                _invoice("in_2", [_usage_line("price_calls", 5000)], "open", T0 + 62 * DAY),
            ],
            LAST_INVOICE,
            9900,
        ),
        (
            CALLS_ONLY,
            [
                _invoice("in_1", [_usage_line("price_calls", 3000)]),
                _invoice("in_2", [_usage_line("price_calls", 5000)], "void", T0 + 62 * DAY),
            ],
            LAST_INVOICE,
            7900,
        ),
        # Normalised by the price's interval like every item: a year's 12000 of calls is 1000 a month.
        (
            _subscription(PLAN, CALLS_YEARLY),
            [_invoice("in_1", [_usage_line("price_calls_y", 12000)])],
            LAST_INVOICE,
            5900,
        ),
        # A line of a price the subscription bills licensed, or of another currency, is not metered usage.
        (CALLS_ONLY, [_invoice("in_1", [_usage_line("price_pro", 4900)])], LAST_INVOICE, 4900),
        (
            CALLS_ONLY,
            [_invoice("in_1", [_usage_line("price_calls", 3000)], currency="eur")],
            LAST_INVOICE,
            4900,
        ),
    ],
)
def test_metered_usage_counts_as_the_policy_says(
    subscription: Any, invoices: list[Any], policy: RevenuePolicy, mrr: int
) -> None:
    observations = [_seen(subscription, T0, "created")] + [
        _seen(invoice, invoice.get("finalized_at", T0) + DAY) for invoice in invoices
    ]
    assert _mrr(observations, policy) == mrr
    assert _mrr(list(reversed(observations)) * 2, policy) == mrr
    assert [m for _, _, m in mrr_timeline("cus_1", observations, policy)][-1] == mrr


@pytest.mark.parametrize(
    ("discounts", "as_of", "mrr"),
    [
        # 10000 of seats, 3000 of calls; the invoice took 600 (20% forever) and 1500 (50% for a month).
        ("active", T0 + 35 * DAY, 4000 + 3000 - 600 - 1500),
        ("active", T0 + 45 * DAY, 8000 + 3000 - 600),  # the repeating one is over: it takes nothing
        ("forever_only", T0 + 35 * DAY, 8000 + 3000 - 600),
        ("none", T0 + 35 * DAY, 10000 + 3000),
    ],
)
def test_discounts_on_the_invoice_line_count_as_the_policys_discount_rule(
    discounts: str, as_of: int, mrr: int
) -> None:
    """Stripe nets each discount per line (``discount_amounts``); the policy's rule judges each as it
    judges the subscription's own discounts (a ``once`` coupon used up, gone from the subscription,
    takes nothing off)."""
    subscription = _subscription(S.price(10000, id="price_team"), CALLS, discounts=[FOREVER, REPEATING])
    line = _usage_line("price_calls", 3000, {"di_forever": 600, "di_repeating": 1500, "di_once": 300})
    objects = CustomerObjects("cus_1")
    for observation in (_seen(subscription, T0), _seen(_invoice("in_1", [line]), T0 + 32 * DAY)):
        objects = apply(objects, observation).objects
    policy = RevenuePolicy(metered="last_invoice", discounts=discounts)  # type: ignore[arg-type]
    assert derive_record("t", objects, "id", policy, as_of=as_of)["mrr"] == mrr


def test_an_invoice_that_changes_the_metered_amount_is_a_movement_under_last_invoice_only() -> None:
    observations = [
        _seen(CALLS_ONLY, T0, "created"),
        _seen(_invoice("in_1", [_usage_line("price_calls", 3000)]), T0 + 32 * DAY),
        _seen(_invoice("in_2", [_usage_line("price_calls", 1000)], "open", T0 + 62 * DAY), T0 + 62 * DAY),
        _seen(_invoice("in_2", [_usage_line("price_calls", 1000)], "void", T0 + 62 * DAY), T0 + 70 * DAY),
    ]
    assert mrr_timeline("cus_1", observations) == [(T0, "usd", 4900)]
    expected = [
        (T0, "usd", 4900),
        (T0 + 32 * DAY, "usd", 7900),
        (T0 + 62 * DAY, "usd", 5900),
        (T0 + 70 * DAY, "usd", 7900),
    ]
    assert mrr_timeline("cus_1", observations, LAST_INVOICE) == expected
    assert mrr_timeline("cus_1", list(reversed(observations)) * 2, LAST_INVOICE) == expected
    # Resumed from a checkpoint (a history kept in pieces), the usage held so far carries over.
    _, [checkpoint] = replay(observations[:2], cuts=[T0 + 40 * DAY], policy=LAST_INVOICE)
    points, _ = replay(observations[2:], checkpoint, policy=LAST_INVOICE)
    assert points == expected[2:]
    # As the history keeps them (each observation's revenue view): the same.
    kept = [
        Observation(snapshot=view, observed_at=at, source=source, event_id=None)  # type: ignore[typeddict-item]
        for observation in observations
        for at, source, view in history_entries(observation)
    ]
    assert mrr_timeline("cus_1", kept, LAST_INVOICE) == expected


_usage_invoices = st.lists(
    st.tuples(
        st.sampled_from([f"in_{i}" for i in range(6)]),
        st.sampled_from(["open", "paid", "uncollectible", "void"]),
        st.sampled_from([f"sub_{i}" for i in range(MAX_USAGE_SUBSCRIPTIONS + 2)]),
        st.integers(1, 5),
    ),
    max_size=16,
)


@settings(max_examples=200, deadline=None)
@given(seen=_usage_invoices, order=st.randoms(use_true_random=False))
def test_the_kept_usage_is_the_same_in_any_order_and_duplicated(seen: list[Any], order: Any) -> None:
    """As tests/unit/test_state.py's properties: the state's usage lines are a function of the set of
    observations (an invoice's lines and finalization never change; its status only moves on)."""
    invoices = [
        _invoice(
            invoice_id,
            [_usage_line("price_calls", 1000 * int(invoice_id[-1]) + 7, sub_id=sub_id)],
            status,
            T0 + int(invoice_id[-1]) * day * DAY,
        )
        for invoice_id, status, sub_id, day in seen
    ]
    # One invoice id is one invoice: its subscription and finalization are those of its first sighting.
    first: dict[str, Any] = {}
    for invoice in invoices:
        first.setdefault(invoice["id"], invoice)
    invoices = [{**first[i["id"]], "status": i["status"]} for i in invoices]
    usage: Any = {}
    for invoice in invoices:
        usage = usage_after(usage, invoice)
    shuffled = [*invoices, *order.sample(invoices, k=len(invoices) // 2)]
    order.shuffle(shuffled)
    again: Any = {}
    for invoice in shuffled:
        again = usage_after(again, invoice)
    assert again == usage
    assert len(usage) <= MAX_USAGE_SUBSCRIPTIONS
    assert all(len(kept) <= USAGE_INVOICES_KEPT for kept in usage.values())
    objects = CustomerObjects("cus_1")
    for invoice in shuffled:
        objects = apply(objects, _seen(invoice, T0 + 400 * DAY)).objects
    assert objects.usage == usage


# What the usage lines are read from (revsync.domain.snapshots.parse_usage_lines), as paths through the
# stripe package's classes.
READ = [
    (stripe.Invoice, "status_transitions.finalized_at", int),
    (stripe.Invoice, "created", int),
    (stripe.InvoiceLineItem, "subtotal", int),
    (stripe.InvoiceLineItem, "amount", int),
    (stripe.InvoiceLineItem, "discount_amounts.amount", int),
    (stripe.InvoiceLineItem, "discount_amounts.discount", str),
    (stripe.InvoiceLineItem, "period.start", int),
    (stripe.InvoiceLineItem, "period.end", int),
    (stripe.InvoiceLineItem, "pricing.price_details.price", str),
    (stripe.InvoiceLineItem, "parent.subscription_item_details.subscription", str),
    (stripe.Price, "recurring.usage_type", str),
    (stripe.Price, "recurring.interval", str),
]


@pytest.mark.parametrize(("cls", "path", "kind"), READ, ids=[f"{c.__name__}.{p}" for c, p, _ in READ])
def test_every_field_the_usage_lines_read_is_one_stripe_defines(cls: type, path: str, kind: type) -> None:
    assert _allows(_annotation(cls, path), kind)


@settings(max_examples=100, deadline=None)
@given(
    observations=_histories, seen=_usage_invoices, at=st.lists(st.integers(0, 14), min_size=16, max_size=16)
)
def test_under_the_default_policy_usage_lines_change_no_record_or_timeline(
    observations: list[Observation], seen: list[Any], at: list[int]
) -> None:
    invoices = [
        _seen(
            _invoice(i, [_usage_line("price_calls", 1000, sub_id=sub_id)], status, T0 + day * DAY),
            T0 + at[n] * STEP,
        )
        for n, (i, status, sub_id, day) in enumerate(seen)
    ]
    with_invoices = [*observations, *invoices]
    assert mrr_timeline("cus_1", with_invoices) == mrr_timeline("cus_1", observations)
    objects = CustomerObjects("cus_1")
    for observation in with_invoices:
        if str(observation["source"]) != "imported":
            objects = apply(objects, observation).objects
    assert derive_record("t", objects, "id") == derive_record("t", replace(objects, usage={}), "id")


def test_lines_of_a_price_the_subscription_bills_as_licensed_are_not_kept_in_either_order() -> None:
    """From 2025-03-31 an invoice line names its price by id only: the customer's subscription tells a
    licensed one (a price's usage type never changes), whether it was seen before or after."""
    mixed = _invoice("in_1", [_usage_line("price_pro", 4900), _usage_line("price_calls", 1250)])
    licensed_only = _invoice("in_2", [_usage_line("price_pro", 4900)], finalized_at=T0 + 62 * DAY)
    assert [line["price"] for line in mixed["usage_lines"]] == ["price_pro", "price_calls"]
    observations = [_seen(CALLS_ONLY, T0), _seen(mixed, T0 + 31 * DAY), _seen(licensed_only, T0 + 62 * DAY)]
    for order in (observations, [*observations[1:], observations[0]]):
        objects = CustomerObjects("cus_1")
        for observation in order:
            objects = apply(objects, observation).objects
        assert {
            s: {i: [line["price"] for line in e["lines"]] for i, e in kept.items()}
            for s, kept in objects.usage.items()
        } == {"sub_1": {"in_1": ["price_calls"]}}
        assert derive_record("t", objects, "id", LAST_INVOICE)["mrr"] == 4900 + 1250


def test_a_finalized_invoice_not_yet_paid_brings_its_usage_and_one_with_none_is_dropped() -> None:
    """``invoice.finalized`` (an invoice sent to be paid later is finalized long before any payment):
    handled when it has usage lines; otherwise, never attempted, it is nothing for revsync."""
    raw = S.invoice("cus_1", "sub_1", id="in_open", status="open", amount_paid=0)
    raw["lines"]["data"] = [*raw["lines"]["data"], _usage_line("price_calls", 1250)]
    raw["status_transitions"]["finalized_at"] = T0 + 31 * DAY
    for kind in ("invoice.finalized", "invoice.voided", "invoice.marked_uncollectible"):
        observation = observation_of(parse_event(json.dumps(S.event(kind, raw, created=T0)).encode()))
        assert observation is not None, kind
        assert observation["snapshot"]["object"] == "invoice"
        assert [line["price"] for line in observation["snapshot"]["usage_lines"]] == ["price_calls"]
    licensed = S.invoice("cus_1", "sub_1", id="in_lic", status="open", amount_paid=0)
    event = S.event("invoice.finalized", licensed, created=T0)
    assert observation_of(parse_event(json.dumps(event).encode())) is None
    assert observation is not None
    objects = apply(apply(CustomerObjects("cus_1"), _seen(CALLS_ONLY, T0)).objects, observation).objects
    assert derive_record("t", objects, "id", LAST_INVOICE)["mrr"] == 4900 + 1250


def test_an_invoice_of_licensed_lines_only_adds_nothing_to_the_history() -> None:
    """The write path keeps an invoice in the MRR history only for lines that may bill usage: on the
    2025-03-31 shape every subscription invoice would otherwise enter it, once a month a customer."""
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    tenants, customers, fake = FakeTenants({"acme": tenant}), FakeCustomers(), FakeStripe()
    raw_sub = S.subscription(
        "cus_1",
        [{**S.subscription_item(PLAN), "id": "si_0"}, {**S.subscription_item(CALLS), "id": "si_1"}],
        id="sub_1",
        status="active",
        created=T0,
    )

    def send(kind: str, obj: dict[str, Any], at: int) -> int:
        observation = observation_of(parse_event(json.dumps(S.event(kind, obj, created=at)).encode()))
        assert observation is not None
        apply_observation("acme", observation, tenants=tenants, customers=customers, stripe=fake)
        return len(customers.load("acme", "cus_1").history.log.entries)

    before = send("customer.subscription.created", raw_sub, T0)
    for n, lines in enumerate(([_usage_line("price_pro", 4900)], [_usage_line("price_calls", 1250)])):
        raw = S.invoice("cus_1", "sub_1", id=f"in_{n}", amount_paid=1)
        raw["lines"]["data"] = lines
        raw["status_transitions"]["finalized_at"] = T0 + (n + 1) * DAY
        after = send("invoice.paid", raw, T0 + (n + 1) * DAY)
        assert after - before == n  # the licensed one: none; the metered one: an entry
