"""MRR movements and months (DESIGN.md "MRR history and movements"): the pure rules under #13."""

from __future__ import annotations

import calendar
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation
from revsync.domain.history import monthly, months, movements, mrr_timeline
from revsync.domain.snapshots import parse_customer, parse_subscription

from local import stripe_shapes as S

JAN = calendar.timegm((2026, 1, 1, 0, 0, 0))
DAY = 86_400


def _sub(
    sub_id: str, amount: int, at: int, status: str = "active", quantity: int = 1, **kw: Any
) -> Observation:
    raw = S.subscription(
        "cus_1", [S.subscription_item(S.price(amount), quantity=quantity)], id=sub_id, status=status, **kw
    )
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source="updated", event_id=None)


def test_each_movement_rule() -> None:
    timeline = [(1, 1000), (2, 3000), (3, 2000), (4, 0), (5, 500), (6, 500)]
    assert [(p.movement, p.amount) for p in movements(timeline)] == [
        ("new", 1000),
        ("expansion", 2000),
        ("contraction", 1000),
        ("churn", 2000),
        ("reactivation", 500),
    ]


def test_a_timeline_comes_from_the_set_of_observations_and_multi_subscription_customers_add_up() -> None:
    observations = [
        _sub("sub_a", 2000, JAN + DAY),
        _sub("sub_b", 1000, JAN + 2 * DAY),
        _sub("sub_a", 2000, JAN + 3 * DAY, quantity=3),  # upgrade
        _sub("sub_b", 1000, JAN + 4 * DAY, status="canceled"),
    ]
    expected = [(JAN + DAY, 2000), (JAN + 2 * DAY, 3000), (JAN + 3 * DAY, 7000), (JAN + 4 * DAY, 6000)]
    assert mrr_timeline("cus_1", observations) == expected
    assert mrr_timeline("cus_1", [*reversed(observations), observations[1]]) == expected  # order, duplicates


def test_a_forever_discount_on_the_customer_reduces_the_timeline() -> None:
    coupon = S.coupon(percent_off=50, id="co_half")
    customer = parse_customer({**S.customer("cus_1"), "discount": S.discount(coupon, customer="cus_1")})
    observations = [
        _sub("sub_a", 2000, JAN + DAY),
        Observation(snapshot=customer, observed_at=JAN + 2 * DAY, source="updated", event_id=None),
    ]
    assert mrr_timeline("cus_1", observations) == [(JAN + DAY, 2000), (JAN + 2 * DAY, 1000)]


def test_months_and_the_identity_with_churn_and_comeback() -> None:
    assert [m.month for m in months("2025-11", "2026-02")] == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert months("2026-03", "2026-03")[0].start == calendar.timegm((2026, 3, 1, 0, 0, 0))
    ada = movements([(JAN + 5 * DAY, 1000), (JAN + 40 * DAY, 0), (JAN + 70 * DAY, 1500)])
    bob = movements([(JAN + 10 * DAY, 2000), (JAN + 12 * DAY, 3000), (JAN + 20 * DAY, 2500)])
    report = monthly([ada, bob], "2026-01", "2026-03")
    jan, feb, mar = report
    assert (jan["new"], jan["expansion"], jan["contraction"], jan["mrr_end"]) == (3000, 1000, 500, 3500)
    assert (feb["churn"], feb["mrr_start"], feb["mrr_end"], feb["customers_end"]) == (1000, 3500, 2500, 1)
    assert (mar["reactivation"], mar["mrr_end"], mar["customers_end"]) == (1500, 4000, 2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 200 * DAY), st.integers(0, 5).map(lambda n: n * 1000)), max_size=8),
        max_size=5,
    )
)
def test_start_plus_movements_is_end_every_month(raw: list[list[tuple[int, int]]]) -> None:
    histories = [movements(sorted(dict(changes).items())) for changes in raw]
    histories = [[p._replace(at=JAN + p.at) for p in history] for history in histories]
    for entry in monthly(histories, "2025-12", "2026-08"):
        moved = int(entry["new"]) + int(entry["expansion"]) + int(entry["reactivation"])
        moved -= int(entry["contraction"]) + int(entry["churn"])
        assert int(entry["mrr_start"]) + moved == int(entry["mrr_end"]), entry
