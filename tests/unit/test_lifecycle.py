"""Lifecycle, trials, renewals, payments, traits and matching (docs/contracts.md customer record contract)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from revsync.domain.record import external_id_for, validate_trait
from revsync.domain.snapshots import parse_customer
from revsync.domain.traits import candidate_traits

from local import stripe_shapes as S
from tests.unit.revenue_helpers import AS_OF, record_for

SHAPES = ["current", "legacy"]
DAY = 86_400


def sub(status: str, shape: S.Shape = "current", **kwargs: Any) -> dict[str, Any]:
    period_end = kwargs.pop("period_end", AS_OF + 30 * DAY)
    return S.subscription(
        "cus_1",
        [S.subscription_item(S.price(1000), shape=shape, period_end=period_end)],
        status=status,
        shape=shape,
        period_end=period_end,
        **kwargs,
    )


# --- churn ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_no_subscription_ever_is_not_churned(shape: S.Shape) -> None:
    record = record_for([], S.customer("cus_1", shape=shape))
    assert (record["churned"], record["churned_at"]) == (False, None)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("live", ["trialing", "active", "past_due", "unpaid", "paused"])
def test_any_live_subscription_keeps_the_customer(shape: S.Shape, live: str) -> None:
    ended = sub("canceled", shape, canceled_at=AS_OF - 5 * DAY, ended_at=AS_OF - 5 * DAY)
    assert record_for([ended, sub(live, shape)])["churned"] is False


@pytest.mark.parametrize("shape", SHAPES)
def test_churned_when_no_live_subscription_is_left(shape: S.Shape) -> None:
    first = sub("canceled", shape, canceled_at=AS_OF - 9 * DAY, ended_at=AS_OF - 8 * DAY)
    second = sub("incomplete_expired", shape, canceled_at=AS_OF - 3 * DAY)
    record = record_for([first, second])
    assert record["churned"] is True
    assert record["churned_at"] == AS_OF - 3 * DAY  # latest ended_at, else canceled_at


@pytest.mark.parametrize("shape", SHAPES)
def test_a_new_live_subscription_reactivates(shape: S.Shape) -> None:
    ended = sub("canceled", shape, canceled_at=AS_OF - 9 * DAY, ended_at=AS_OF - 9 * DAY)
    record = record_for([ended, sub("active", shape)])
    assert (record["churned"], record["churned_at"]) == (False, None)


@pytest.mark.parametrize("shape", SHAPES)
def test_deleted_customer_is_churned_with_nothing_live(shape: S.Shape) -> None:
    # Its subscriptions' own events may still say active or trialing: deletion wins regardless.
    record = record_for(
        [sub("active", shape), sub("trialing", shape, trial_end=AS_OF + DAY)],
        S.customer("cus_1", shape=shape),
        deleted_at=AS_OF + 60,
    )
    assert record["deleted_in_stripe"] is True
    assert (record["churned"], record["churned_at"]) == (True, AS_OF + 60)
    assert (record["mrr"], record["next_renewal_at"], record["trialing"], record["trial_end"]) == (
        0,
        None,
        False,
        None,
    )
    assert all(s["mrr"] == 0 for s in record["subscriptions"].values())


# --- trials and renewals ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_trial_end_is_the_latest_among_trialing(shape: S.Shape) -> None:
    record = record_for(
        [
            sub("trialing", shape, trial_end=AS_OF + 3 * DAY),
            sub("trialing", shape, trial_end=AS_OF + 9 * DAY),
            sub("active", shape, trial_end=AS_OF + 99 * DAY),
        ]
    )
    assert (record["trialing"], record["trial_end"]) == (True, AS_OF + 9 * DAY)
    assert record["mrr"] == 1000  # only the active one


@pytest.mark.parametrize("shape", SHAPES)
def test_next_renewal_is_the_earliest_renewing(shape: S.Shape) -> None:
    subs = [
        sub("active", shape, period_end=AS_OF + 20 * DAY),
        sub("past_due", shape, period_end=AS_OF + 10 * DAY),
        sub("trialing", shape, period_end=AS_OF + 15 * DAY),
        sub("unpaid", shape, period_end=AS_OF + 1 * DAY),
        sub("canceled", shape, period_end=AS_OF + 2 * DAY),
    ]
    assert record_for(subs)["next_renewal_at"] == AS_OF + 10 * DAY


@pytest.mark.parametrize("shape", SHAPES)
def test_cancel_at_period_end_still_counts_but_does_not_renew(shape: S.Shape) -> None:
    record = record_for([sub("active", shape, cancel_at_period_end=True)])
    assert (record["mrr"], record["next_renewal_at"], record["churned"]) == (1000, None, False)


def test_cancel_at_before_the_renewal_means_no_renewal() -> None:
    leaving = sub("active", period_end=AS_OF + 30 * DAY)
    leaving["cancel_at"] = AS_OF + 10 * DAY
    staying = sub("active", period_end=AS_OF + 30 * DAY)
    staying["cancel_at"] = AS_OF + 300 * DAY
    assert record_for([leaving])["next_renewal_at"] is None
    assert record_for([staying])["next_renewal_at"] == AS_OF + 30 * DAY


# --- payments -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_payments_count_each_paid_invoice_once(shape: S.Shape) -> None:
    subscription = sub("active", shape)
    invoices = [
        S.invoice(
            "cus_1", subscription["id"], amount_paid=1000, paid_at=AS_OF - 40 * DAY, shape=shape, id="in_1"
        ),
        S.invoice(
            "cus_1", subscription["id"], amount_paid=1200, paid_at=AS_OF - 10 * DAY, shape=shape, id="in_2"
        ),
        S.invoice("cus_1", None, amount_paid=300, paid_at=AS_OF - 20 * DAY, shape=shape, id="in_3"),
    ]
    record = record_for([subscription], invoices=invoices)
    assert (record["last_payment_at"], record["total_paid"]) == (AS_OF - 10 * DAY, 2500)
    assert record["mrr"] == 1000  # MRR stays derived from the subscription


def test_no_payments() -> None:
    record = record_for([sub("active")])
    assert (record["last_payment_at"], record["total_paid"]) == (None, 0)


# --- traits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_traits_carry_the_stripe_data(shape: S.Shape) -> None:
    customer = S.customer(
        "cus_1",
        email="ada@example.com",
        name="Ada",
        metadata={"app_id": "u-1", "plan": "pro"},
        created=1_600_000_000,
        currency="usd",
        balance=-500,
        delinquent=True,
        shape=shape,
    )
    subscription = S.subscription(
        "cus_1",
        [S.subscription_item(S.price(1000, nickname="Pro"), shape=shape, period_end=AS_OF + 5 * DAY)],
        shape=shape,
        period_end=AS_OF + 5 * DAY,
        status="active",
    )
    invoice = S.invoice(
        "cus_1",
        subscription["id"],
        amount_paid=1000,
        paid_at=AS_OF - DAY,
        shape=shape,
        period_end=AS_OF + 5 * DAY,
    )
    traits = record_for([subscription], customer, [invoice])["traits"]
    assert traits == {
        "stripe.email": "ada@example.com",
        "stripe.name": "Ada",
        "stripe.created": 1_600_000_000,
        "stripe.currency": "usd",
        "stripe.balance": -500,
        "stripe.delinquent": True,
        "stripe.metadata.app_id": "u-1",
        "stripe.metadata.plan": "pro",
        "stripe.mrr": 1000,
        "stripe.subscription_status": "active",
        "stripe.plan_names": ["Pro"],
        "stripe.trial_end": None,
        "stripe.next_renewal_at": AS_OF + 5 * DAY,
        "stripe.last_payment_at": AS_OF - DAY,
        "stripe.total_paid": 1000,
        "stripe.net_paid": 1000,
        # A delinquent customer is in dunning (revsync.domain.risk): its one raised signal.
        "stripe.risk.in_dunning": True,
    }


# --- matching -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trait", "customer", "expected"),
    [
        ("id", S.customer("cus_7"), ("cus_7", True)),
        ("email", S.customer("cus_7", email=" ada@example.com "), ("ada@example.com", True)),
        ("email", S.customer("cus_7", email=None), ("stripe:cus_7", False)),
        ("metadata.app_id", S.customer("cus_7", metadata={"app_id": "u-7"}), ("u-7", True)),
        ("metadata.app_id", S.customer("cus_7", metadata={"app_id": "  "}), ("stripe:cus_7", False)),
        ("metadata.app_id", S.customer("cus_7", metadata={"other": "x"}), ("stripe:cus_7", False)),
        ("metadata.app.id", S.customer("cus_7", metadata={"app.id": "u-7", "app": "x"}), ("u-7", True)),
        # 500 characters (Stripe's limit) of 3 bytes each: more than DynamoDB can key a record by.
        ("metadata.app_id", S.customer("cus_7", metadata={"app_id": "€" * 500}), ("stripe:cus_7", False)),
        ("metadata.app_id", S.customer("cus_7", metadata={"app_id": "€" * 341}), ("€" * 341, True)),
        (None, S.customer("cus_7", metadata={"app_id": "u-7"}), ("stripe:cus_7", False)),
    ],
)
def test_external_id(trait: str | None, customer: dict[str, Any], expected: tuple[str, bool]) -> None:
    assert external_id_for("cus_7", parse_customer(customer), trait) == expected


def test_subscription_before_its_customer_is_kept_unmatched_unless_the_trait_is_the_id() -> None:
    assert external_id_for("cus_7", None, "metadata.app_id") == ("stripe:cus_7", False)
    assert external_id_for("cus_7", None, "id") == ("cus_7", True)


# Stripe's metadata keys: up to 40 characters, any but square brackets (docs.stripe.com/api/metadata).
@pytest.mark.parametrize(
    "trait",
    ["id", "email", "metadata.app_id", "metadata." + "k" * 40, "metadata.app.id", "metadata.Kundennr ü"],
)
def test_valid_traits(trait: str) -> None:
    assert validate_trait(trait) == trait


@pytest.mark.parametrize(
    "trait", ["", "name", "metadata.", "metadata." + "k" * 41, "Email", "metadata.a[b]", "metadata.]"]
)
def test_invalid_traits(trait: str) -> None:
    with pytest.raises(ValueError, match="customer_id_trait"):
        validate_trait(trait)


# Any key Stripe accepts: 1-40 characters, none of them a square bracket.
_STRIPE_METADATA_KEYS = st.text(st.characters(blacklist_characters="[]"), min_size=1, max_size=40)


@given(st.dictionaries(_STRIPE_METADATA_KEYS, st.text(min_size=1, max_size=20), max_size=5))
def test_every_trait_the_picker_offers_can_be_saved_and_matches(metadata: dict[str, str]) -> None:
    customer = S.customer("cus_7", metadata=metadata)
    for candidate in candidate_traits([customer]):
        trait = validate_trait(candidate["trait"])  # what PUT .../config checks
        key = trait.removeprefix("metadata.")
        if trait.startswith("metadata."):
            assert external_id_for("cus_7", parse_customer(customer), trait) == (metadata[key].strip(), True)
