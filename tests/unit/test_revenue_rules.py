"""docs/contracts.md's revenue rules, one table row per rule, each in both Stripe API shapes."""

from __future__ import annotations

from typing import Any

import pytest

from local import stripe_shapes as S
from tests.unit.revenue_helpers import AS_OF, mrr_of, record_for

SHAPES = ["current", "legacy"]
DAY = 86_400


def sub(items: list[dict[str, Any]], shape: S.Shape, **kwargs: Any) -> dict[str, Any]:
    return S.subscription("cus_1", items, shape=shape, **kwargs)


def item(price: dict[str, Any], shape: S.Shape, quantity: int = 1, **kwargs: Any) -> dict[str, Any]:
    return S.subscription_item(price, quantity=quantity, shape=shape, **kwargs)


# --- statuses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("status", "counts"),
    [
        ("active", True),
        ("past_due", True),
        ("trialing", False),
        ("incomplete", False),
        ("incomplete_expired", False),
        ("unpaid", False),
        ("paused", False),
        ("canceled", False),
    ],
)
def test_only_active_and_past_due_count(shape: S.Shape, status: str, counts: bool) -> None:
    assert mrr_of([sub([item(S.price(1500), shape)], shape, status=status)]) == (1500 if counts else 0)


# --- item value -----------------------------------------------------------------------------------

TIERS: list[dict[str, Any]] = [
    {"up_to": 10, "unit_amount": 1000, "flat_amount": 500},
    {"up_to": 20, "unit_amount": 800, "flat_amount": 300},
    {"up_to": None, "unit_amount": 500, "flat_amount": None},
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("price", "quantity", "expected"),
    [
        pytest.param(S.price(1000), 3, 3000, id="per_unit_times_quantity"),
        pytest.param(S.price(999), 0, 0, id="quantity_zero"),
        pytest.param(
            S.price(1000, transform_quantity={"divide_by": 5, "round": "up"}), 11, 3000, id="transform_up"
        ),
        pytest.param(
            S.price(1000, transform_quantity={"divide_by": 5, "round": "down"}), 11, 2000, id="transform_down"
        ),
        pytest.param(
            S.price(None, billing_scheme="tiered", tiers_mode="volume", tiers=TIERS),
            5,
            5500,
            id="volume_first_tier_with_flat",
        ),
        pytest.param(
            S.price(None, billing_scheme="tiered", tiers_mode="volume", tiers=TIERS),
            15,
            12300,
            id="volume_whole_quantity_at_second_tier",
        ),
        pytest.param(
            S.price(None, billing_scheme="tiered", tiers_mode="volume", tiers=TIERS),
            25,
            12500,
            id="volume_open_last_tier",
        ),
        pytest.param(
            S.price(None, billing_scheme="tiered", tiers_mode="graduated", tiers=TIERS),
            5,
            5500,
            id="graduated_within_first_tier",
        ),
        pytest.param(
            S.price(None, billing_scheme="tiered", tiers_mode="graduated", tiers=TIERS),
            25,
            21300,
            id="graduated_across_all_tiers_each_flat_once",
        ),
        pytest.param(S.price(1000, usage_type="metered"), 40, 0, id="metered_counts_zero"),
    ],
)
def test_item_value(shape: S.Shape, price: dict[str, Any], quantity: int, expected: int) -> None:
    assert mrr_of([sub([item(price, shape, quantity)], shape)]) == expected


def test_legacy_plan_without_a_price_follows_the_same_rules() -> None:
    plan_only = item(
        S.price(1000, interval="year", transform_quantity={"divide_by": 2, "round": "up"}),
        "legacy",
        quantity=3,
        legacy_plan_only=True,
    )
    assert plan_only["price"] is None
    assert plan_only["plan"]["transform_usage"] == {"divide_by": 2, "round": "up"}
    # ceil(3 / 2) = 2 units x 1000 / 12 months = 166.67
    assert mrr_of([sub([plan_only], "legacy")]) == 167


def test_legacy_tiered_plan() -> None:
    tiered = item(
        S.price(None, billing_scheme="tiered", tiers_mode="graduated", tiers=TIERS),
        "legacy",
        quantity=25,
        legacy_plan_only=True,
    )
    assert mrr_of([sub([tiered], "legacy")]) == 21300  # 10x1000+500 + 10x800+300 + 5x500


# --- monthly normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("interval", "count", "amount", "expected"),
    [
        ("month", 1, 1000, 1000),
        ("month", 3, 3000, 1000),
        ("year", 1, 12000, 1000),
        ("year", 2, 24000, 1000),
        ("week", 1, 1200, 5200),  # 1200 x 52 / 12
        ("week", 2, 1200, 2600),
        ("day", 1, 100, 3042),  # 100 x 365 / 12 = 3041.67
        ("day", 7, 700, 3042),
    ],
)
def test_monthly_normalisation(shape: S.Shape, interval: str, count: int, amount: int, expected: int) -> None:
    price = S.price(amount, interval=interval, interval_count=count)
    assert mrr_of([sub([item(price, shape)], shape)]) == expected


# --- discounts ------------------------------------------------------------------------------------

FUTURE, PAST = AS_OF + 30 * DAY, AS_OF - DAY


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("coupon", "end", "expected"),
    [
        pytest.param(S.coupon(percent_off=25), None, 7500, id="percent_forever"),
        pytest.param(S.coupon(percent_off=12.5), None, 8750, id="fractional_percent"),
        pytest.param(
            S.coupon(percent_off=50, duration="repeating", duration_in_months=3),
            FUTURE,
            5000,
            id="repeating_not_ended",
        ),
        pytest.param(
            S.coupon(percent_off=50, duration="repeating", duration_in_months=3),
            PAST,
            10000,
            id="repeating_ended",
        ),
        pytest.param(S.coupon(percent_off=50, duration="once"), None, 10000, id="once_does_not_recur"),
        pytest.param(S.coupon(amount_off=2500), None, 7500, id="amount_off"),
        pytest.param(S.coupon(amount_off=50000), None, 0, id="amount_off_never_below_zero"),
        pytest.param(S.coupon(amount_off=2500, currency="eur"), None, 10000, id="amount_off_other_currency"),
    ],
)
def test_subscription_discounts(
    shape: S.Shape, coupon: dict[str, Any], end: int | None, expected: int
) -> None:
    discount = S.discount(coupon, shape=shape, end=end)
    subscription = sub([item(S.price(10000), shape)], shape, discounts=[discount])
    assert mrr_of([subscription]) == expected


@pytest.mark.parametrize("shape", SHAPES)
def test_item_level_discount_applies_to_its_item_only(shape: S.Shape) -> None:
    discounted = item(S.price(10000), shape, discounts=[S.discount(S.coupon(percent_off=50), shape=shape)])
    assert mrr_of([sub([discounted, item(S.price(4000), shape)], shape)]) == 9000


@pytest.mark.parametrize("shape", SHAPES)
def test_amount_off_on_a_yearly_plan_is_per_invoice(shape: S.Shape) -> None:
    yearly = sub(
        [item(S.price(120000, interval="year"), shape)],
        shape,
        discounts=[S.discount(S.coupon(amount_off=12000), shape=shape)],
    )
    assert mrr_of([yearly]) == 9000


@pytest.mark.parametrize("shape", SHAPES)
def test_customer_discount_applies_to_every_subscription(shape: S.Shape) -> None:
    customer = S.customer(
        "cus_1", the_discount=S.discount(S.coupon(percent_off=10), shape=shape), shape=shape
    )
    subs = [sub([item(S.price(10000), shape)], shape), sub([item(S.price(5000), shape)], shape)]
    assert mrr_of(subs, customer) == 13500


def test_unresolved_coupon_counts_nothing_rather_than_guessing() -> None:
    unexpanded = {
        **S.discount(S.coupon(percent_off=50)),
        "source": {"type": "coupon", "coupon": "co_unknown"},
    }
    assert mrr_of([sub([item(S.price(10000), "current")], "current", discounts=[unexpanded])]) == 10000


# --- exact decimals, one rounding --------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_customer_total_is_rounded_once(shape: S.Shape) -> None:
    # Three 1000/year subscriptions: 83.333... each. Rounding each would give 249; the sum is 250.
    subs = [sub([item(S.price(1000, interval="year"), shape)], shape) for _ in range(3)]
    record = record_for(subs)
    assert record["mrr"] == 250
    assert [s["mrr"] for s in record["subscriptions"].values()] == [83, 83, 83]


def test_half_up_rounding() -> None:
    # 6 a year is 0.5 a month: half-up makes it 1.
    assert mrr_of([sub([item(S.price(6, interval="year"), "current")], "current")]) == 1


def test_taxes_are_never_included() -> None:
    taxed = sub([item(S.price(10000), "current")], "current")
    taxed["default_tax_rates"] = [{"id": "txr_1", "percentage": 20.0, "inclusive": False}]
    taxed["items"]["data"][0]["tax_rates"] = [{"id": "txr_1", "percentage": 20.0, "inclusive": False}]
    assert mrr_of([taxed]) == 10000


def test_subscriptions_in_another_currency_are_not_summed() -> None:
    customer = S.customer("cus_1", currency="usd")
    subs = [
        sub([item(S.price(1000), "current")], "current"),
        sub([item(S.price(5000, currency="eur"), "current")], "current", currency="eur"),
    ]
    record = record_for(subs, customer)
    assert (record["mrr"], record["currency"]) == (1000, "usd")
    assert sorted(s["mrr"] for s in record["subscriptions"].values()) == [1000, 5000]


# --- both shapes: periods and invoice subscriptions -------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_renewal_uses_the_period_wherever_the_shape_puts_it(shape: S.Shape) -> None:
    subscription = sub(
        [item(S.price(1000), shape, period_end=AS_OF + 10 * DAY)], shape, period_end=AS_OF + 10 * DAY
    )
    record = record_for([subscription])
    assert record["next_renewal_at"] == AS_OF + 10 * DAY
    assert record["subscriptions"][subscription["id"]]["current_period_end"] == AS_OF + 10 * DAY


@pytest.mark.parametrize("shape", SHAPES)
def test_renewal_is_the_later_of_period_end_and_newest_paid_line(shape: S.Shape) -> None:
    subscription = sub(
        [item(S.price(1000), shape, period_end=AS_OF + 5 * DAY)], shape, period_end=AS_OF + 5 * DAY
    )
    paid = S.invoice("cus_1", subscription["id"], period_end=AS_OF + 35 * DAY, shape=shape)
    older = S.invoice("cus_1", subscription["id"], period_end=AS_OF - 25 * DAY, shape=shape)
    assert record_for([subscription], invoices=[older])["next_renewal_at"] == AS_OF + 5 * DAY
    assert record_for([subscription], invoices=[older, paid])["next_renewal_at"] == AS_OF + 35 * DAY
