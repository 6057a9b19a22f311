"""MRR history and movements (docs/contracts.md "MRR history and movements"): the pure rules."""

from __future__ import annotations

import calendar
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation
from revsync.domain.history import (
    Contribution,
    HistoryLog,
    TimelineStart,
    contributions,
    history_document,
    history_entries,
    months,
    movement_of,
    movements,
    mrr_timeline,
    revenue_months,
)
from revsync.domain.snapshots import parse_customer, parse_invoice, parse_subscription
from revsync.errors import RevsyncError
from revsync.http_errors import status_of
from revsync.services.revenue import revenue

from local import stripe_shapes as S
from tests.fakes import FakeRollup

JAN = calendar.timegm((2026, 1, 1, 0, 0, 0))
DAY = 86_400


def _sub(
    sub_id: str,
    amount: int,
    at: int,
    status: str = "active",
    quantity: int = 1,
    source: str = "updated",
    currency: str = "usd",
    **kw: Any,
) -> Observation:
    raw = S.subscription(
        "cus_1",
        [S.subscription_item(S.price(amount, currency=currency), quantity=quantity)],
        id=sub_id,
        status=status,
        currency=currency,
        **kw,
    )
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)  # type: ignore[typeddict-item]


def _points(observations: list[Observation]) -> list[tuple[int, str, int]]:
    return [(p.at, p.movement, p.amount) for p in movements(mrr_timeline("cus_1", observations))]


def _stored(observations: list[Observation], imported: bool = False) -> HistoryLog:
    log = HistoryLog()
    for observation in observations:
        log = log.with_entries(history_entries(observation, imported=imported))
    return HistoryLog.from_json(log.to_json())  # as stored


def test_each_movement_rule() -> None:
    timeline = [(1, "usd", 1000), (2, "usd", 3000), (3, "usd", 2000), (4, "usd", 0), (5, "usd", 500)]
    assert [(p.movement, p.amount) for p in movements(timeline)] == [
        ("new", 1000),
        ("expansion", 2000),
        ("contraction", 1000),
        ("churn", 2000),
        ("reactivation", 500),
    ]
    assert movement_of(0, 100, ever_paid=False) == "new"
    assert movement_of(0, 100, ever_paid=True) == "reactivation"
    assert movement_of(100, 300, ever_paid=True) == "expansion"
    assert movement_of(300, 100, ever_paid=True) == "contraction"
    assert movement_of(300, 0, ever_paid=True) == "churn"
    assert movement_of(300, 300, ever_paid=True) is None


def test_a_customer_who_churns_and_comes_back_is_a_reactivation() -> None:
    observations = [
        _sub("sub_a", 2000, JAN + DAY, source="created"),
        _sub("sub_a", 2000, JAN + 10 * DAY, status="canceled", source="deleted"),
        _sub("sub_b", 3000, JAN + 40 * DAY, source="created"),
    ]
    assert _points(observations) == [
        (JAN + DAY, "new", 2000),
        (JAN + 10 * DAY, "churn", 2000),
        (JAN + 40 * DAY, "reactivation", 3000),
    ]


def test_upgrades_and_downgrades_within_a_month() -> None:
    observations = [
        _sub("sub_a", 1000, JAN + DAY, source="created"),
        _sub("sub_a", 1000, JAN + 3 * DAY, quantity=3),
        _sub("sub_a", 1000, JAN + 5 * DAY, quantity=2),
        _sub("sub_a", 1000, JAN + 9 * DAY, quantity=2),  # a renewal: no change, no movement
    ]
    assert _points(observations) == [
        (JAN + DAY, "new", 1000),
        (JAN + 3 * DAY, "expansion", 2000),
        (JAN + 5 * DAY, "contraction", 1000),
    ]
    [(key, january)] = contributions(movements(mrr_timeline("cus_1", observations))).items()
    assert key == ("usd", "2026-01")
    assert january == Contribution(new=1000, expansion=2000, contraction=1000, new_customers=1)


def test_a_multi_subscription_customer_adds_up_whatever_the_order() -> None:
    observations = [
        _sub("sub_a", 2000, JAN + DAY),
        _sub("sub_b", 1000, JAN + 2 * DAY),
        _sub("sub_a", 2000, JAN + 3 * DAY, quantity=3),  # upgrade
        _sub("sub_b", 1000, JAN + 4 * DAY, status="canceled"),
    ]
    expected = [
        (JAN + DAY, "usd", 2000),
        (JAN + 2 * DAY, "usd", 3000),
        (JAN + 3 * DAY, "usd", 7000),
        (JAN + 4 * DAY, "usd", 6000),
    ]
    assert mrr_timeline("cus_1", observations) == expected
    assert mrr_timeline("cus_1", [*reversed(observations), observations[1]]) == expected


def test_discounts_on_the_customer_and_on_the_subscription() -> None:
    half = S.coupon(percent_off=50, id="co_half")
    customer = parse_customer({**S.customer("cus_1"), "discount": S.discount(half, customer="cus_1")})
    five_off = S.coupon(amount_off=500, currency="usd", id="co_five")
    discounted = _sub("sub_b", 2000, JAN + 3 * DAY, discounts=[S.discount(five_off, customer="cus_1")])
    observations = [
        _sub("sub_a", 2000, JAN + DAY),
        Observation(snapshot=customer, observed_at=JAN + 2 * DAY, source="updated", event_id=None),
        discounted,
    ]
    # 2000; then half off: 1000; then + (2000 - 500) / 2 = 750 more.
    assert _points(observations) == [
        (JAN + DAY, "new", 2000),
        (JAN + 2 * DAY, "contraction", 1000),
        (JAN + 3 * DAY, "expansion", 750),
    ]


def test_a_change_of_currency_churns_the_old_one() -> None:
    points = movements([(JAN + DAY, "usd", 2000), (JAN + 5 * DAY, "eur", 1800)])
    assert [(p.currency, p.movement, p.amount) for p in points] == [
        ("usd", "new", 2000),
        ("usd", "churn", 2000),
        ("eur", "reactivation", 1800),
    ]


def test_the_stored_set_keeps_only_revenue_views_and_each_once() -> None:
    renewals = [_sub("sub_a", 2000, JAN + n * 30 * DAY, period_start=JAN + n * 30 * DAY) for n in range(12)]
    invoice = parse_invoice(S.invoice("cus_1", "sub_a", amount_paid=2000, paid_at=JAN))
    log = _stored(
        [*renewals, Observation(snapshot=invoice, observed_at=JAN, source="updated", event_id=None)]
    )
    assert len(log.views) == 1  # twelve renewals differ only in period dates
    assert len(log.entries) == 12  # the invoice is not part of MRR's history
    assert _stored(renewals + renewals[:3]) == log  # duplicates add nothing
    assert mrr_timeline("cus_1", log.observations()) == [(JAN, "usd", 2000)]


def test_an_imported_subscription_enters_at_its_start_and_leaves_at_its_end() -> None:
    now = JAN + 200 * DAY
    running = _sub("sub_a", 2000, now, source="fetched", created=JAN)
    trialled = _sub("sub_b", 1000, now, source="fetched", created=JAN, trial_end=JAN + 14 * DAY)
    ended = _sub(
        "sub_c", 500, now, status="canceled", source="fetched", created=JAN + DAY, ended_at=JAN + 90 * DAY
    )
    log = _stored([running, trialled, ended], imported=True)
    assert _points(log.observations()) == [
        (JAN, "new", 2000),
        (JAN + DAY, "expansion", 500),
        (JAN + 14 * DAY, "expansion", 1000),
        (JAN + 90 * DAY, "contraction", 500),
    ]
    # Events seen later about the same subscriptions take over from the reconstruction.
    upgraded = _sub("sub_a", 2000, JAN + 100 * DAY, quantity=2)
    created = _sub("sub_a", 2000, JAN, source="created", quantity=1)
    points = _points(_stored([created, upgraded]).observations() + log.observations())
    assert (JAN + 100 * DAY, "expansion", 2000) in points
    # Webhook observations (not an import) add no reconstructed entries.
    assert len(history_entries(running)) == 1


def test_months_and_the_identity_with_churn_and_comeback() -> None:
    assert [m.month for m in months("2025-11", "2026-02")] == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert months("2026-03", "2026-03")[0].start == calendar.timegm((2026, 3, 1, 0, 0, 0))
    ada = movements([(JAN + 5 * DAY, "usd", 1000), (JAN + 40 * DAY, "usd", 0), (JAN + 70 * DAY, "usd", 1500)])
    bob = movements(
        [(JAN + 10 * DAY, "usd", 2000), (JAN + 12 * DAY, "usd", 3000), (JAN + 20 * DAY, "usd", 2500)]
    )
    totals: dict[str, Contribution] = {}
    for history in (ada, bob):
        for (_, month), contribution in contributions(history).items():
            totals[month] = totals.get(month, Contribution()) + contribution
    jan, feb, mar = revenue_months(totals, "2026-01", "2026-03")
    assert (jan["new"], jan["expansion"], jan["contraction"], jan["mrr_end"]) == (3000, 1000, 500, 3500)
    assert (feb["churn"], feb["mrr_start"], feb["mrr_end"], feb["customers_end"]) == (1000, 3500, 2500, 1)
    assert (mar["reactivation"], mar["mrr_end"], mar["customers_start"], mar["customers_end"]) == (
        1500,
        4000,
        1,
        2,
    )
    # A window after the first month starts from everything before it.
    [only_march] = revenue_months(totals, "2026-03", "2026-03")
    assert only_march == mar


def test_history_document() -> None:
    points = movements([(JAN, "usd", 4900), (JAN + DAY, "usd", 0)])
    assert history_document(points) == {
        "currency": "usd",
        "points": [
            {"at": JAN, "mrr": 4900, "movement": "new", "amount": 4900},
            {"at": JAN + DAY, "mrr": 0, "movement": "churn", "amount": 4900},
        ],
    }
    assert history_document([]) == {"currency": None, "points": []}


_changes = st.lists(
    st.tuples(st.integers(0, 200 * DAY), st.integers(0, 5).map(lambda n: n * 1000)), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_changes, max_size=5))
def test_start_plus_movements_is_end_every_month(raw: list[list[tuple[int, int]]]) -> None:
    totals: dict[str, Contribution] = {}
    for changes in raw:
        timeline = [(JAN + at, "usd", mrr) for at, mrr in sorted(dict(changes).items())]
        for (_, month), contribution in contributions(movements(timeline)).items():
            totals[month] = totals.get(month, Contribution()) + contribution
    for entry in revenue_months(totals, "2025-12", "2026-08"):
        moved = (
            entry["new"] + entry["expansion"] + entry["reactivation"] - entry["contraction"] - entry["churn"]
        )
        assert entry["mrr_start"] + moved == entry["mrr_end"], entry
        assert entry["mrr_end"] >= 0
        assert entry["customers_end"] >= 0


_STEPS: list[tuple[str, dict[str, Any]]] = [
    ("created", {}),
    ("updated", {"quantity": 3}),
    ("updated", {"quantity": 2}),
    ("deleted", {"status": "canceled"}),
]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["sub_a", "sub_b"]), st.integers(0, 3), st.integers(0, 90)),
        min_size=1,
        max_size=10,
    ),
    st.randoms(use_true_random=False),
)
def test_any_order_and_duplication_gives_the_same_history_and_months(
    steps: list[tuple[str, int, int]], rng: random.Random
) -> None:
    """A customer's events in any order, some twice, give the history and the monthly figures the
    in-order stream gives (each event also folded in one at a time, as the write path does)."""
    events = []
    for sub_id, step, day in steps:
        source, change = _STEPS[step]
        events.append(_sub(sub_id, 1000, JAN + day * DAY, source=source, **change))
    in_order = sorted(events, key=lambda o: o["observed_at"])
    shuffled = [*events, *rng.sample(events, k=len(events) // 2)]
    rng.shuffle(shuffled)

    def folded(stream: list[Observation]) -> tuple[list[Any], dict[Any, Contribution]]:
        log = HistoryLog()
        for observation in stream:  # through JSON each time, as the state item keeps it
            log = HistoryLog.from_json(log.with_entries(history_entries(observation)).to_json())
        points = movements(mrr_timeline("cus_1", log.observations()))
        return points, contributions(points)

    assert folded(shuffled) == folded(in_order)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["sub_a", "sub_b"]), st.integers(0, 3)), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_through_the_write_path_any_order_gives_the_same_history_and_months(
    steps: list[tuple[str, int]], rng: random.Random
) -> None:
    """The same property through ``apply_observation`` and the in-memory store (distinct seconds:
    a same-second tie is settled by a read from Stripe, tested elsewhere)."""
    from revsync.domain.tenancy import Connection, Tenant
    from revsync.services.revenue import customer_history
    from revsync.services.sync import apply_observation

    from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

    events = []
    for index, (sub_id, step) in enumerate(steps):
        source, change = _STEPS[step]
        events.append(_sub(sub_id, 1000, JAN + index * 7 * DAY, source=source, **change))
    shuffled = [*events, *rng.sample(events, k=len(events) // 2)]
    rng.shuffle(shuffled)

    def outcome(stream: list[Observation]) -> tuple[Any, Any]:
        tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
        customers = FakeCustomers()
        for observation in stream:
            apply_observation(
                "acme",
                observation,
                tenants=FakeTenants({"acme": tenant}),
                customers=customers,
                stripe=FakeStripe(),
            )
        history = customer_history("acme", "cus_1", records=customers, histories=customers)
        # A month a late event touched and the next one untouched again holds zeros: the same report.
        totals = {
            (currency, month): total
            for currency, months in customers.revenue_totals("acme").items()
            for month, total in months.items()
            if any(total)
        }
        return history, totals

    assert outcome(shuffled) == outcome(events)


# --- the revenue route's query: any bytes give months or a 400, never an exception ----------------

_MONTHS = st.one_of(
    st.builds("{:04d}-{:02d}".format, st.integers(0, 9999), st.integers(0, 13)),
    st.text(max_size=12),
)


_QUERIES = st.dictionaries(
    st.sampled_from(["from", "to", "currency"]), _MONTHS | st.sampled_from(["usd", "USD"])
)


@given(_QUERIES)
def test_any_revenue_query_answers_months_or_a_400(query: dict[str, str]) -> None:
    refused: RevsyncError | None = None
    try:
        answer = revenue("t", query, totals=FakeRollup(), now=1_800_000_000)
    except RevsyncError as exc:
        refused = exc
    if refused is not None:
        assert status_of(refused) == 400
        return
    first, last = answer["months"][0]["month"], answer["months"][-1]["month"]
    assert "1970-01" <= first <= last <= "9998-12"
    assert len(answer["months"]) <= 120


def test_a_timeline_in_pieces_gives_the_movements_and_months_of_the_whole() -> None:
    """A piece that starts from where the previous one ended (TimelineStart) classifies its changes
    as the whole timeline does, so contributions of pieces add up to the whole's."""
    whole = [
        (JAN + DAY, "usd", 1000),
        (JAN + 10 * DAY, "usd", 2500),
        (JAN + 40 * DAY, "usd", 0),
        (JAN + 70 * DAY, "usd", 1500),
        (JAN + 80 * DAY, "eur", 1400),
    ]
    for cut in range(1, len(whole)):
        head, tail = whole[:cut], whole[cut:]
        _, currency, mrr = head[-1]
        start = TimelineStart(currency, mrr, any(m > 0 for _, _, m in head))
        assert movements(head) + movements(tail, start) == movements(whole)
        summed = contributions(movements(head))
        for key, part in contributions(movements(tail, start)).items():
            summed[key] = summed.get(key, Contribution()) + part
        assert summed == contributions(movements(whole))
    # Churned in the first piece: a later piece's return is a reactivation, not a new customer.
    assert movements([(JAN + 50 * DAY, "usd", 900)], TimelineStart("usd", 0, True))[0].movement == (
        "reactivation"
    )
    assert movements([(JAN + 50 * DAY, "usd", 0)], TimelineStart("usd", 700, False))[0].movement == "churn"
