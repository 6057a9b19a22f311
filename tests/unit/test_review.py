"""When a customer's record next changes by time alone (revsync.domain.review): the policy's
past-due limit, and a trial's end coming within 7 days and passing."""

from __future__ import annotations

from typing import Any

import pytest
from revsync.domain.events import Observation
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.record import derive_record
from revsync.domain.review import next_review
from revsync.domain.snapshots import parse_customer, parse_subscription, parse_subscription_schedule
from revsync.domain.state import CustomerObjects

from local import stripe_shapes as S

T0 = 1_750_000_000
DAY = 86_400
WEEK_LIMIT = RevenuePolicy(churn_after_days=7)


def _objects(*subscriptions: dict[str, Any], deleted: bool = False) -> CustomerObjects:
    objects = CustomerObjects("cus_1")
    customer = parse_customer(S.customer("cus_1"), deleted=deleted)
    objects = objects.with_observation(
        Observation(
            snapshot=customer, observed_at=T0, source="deleted" if deleted else "updated", event_id=None
        )
    )
    for raw in subscriptions:
        objects = objects.with_observation(
            Observation(snapshot=parse_subscription(raw), observed_at=T0, source="updated", event_id=None)
        )
    return objects


def _sub(sub_id: str = "sub_1", **kwargs: Any) -> dict[str, Any]:
    return S.subscription("cus_1", [S.subscription_item(S.price(1000))], id=sub_id, created=T0, **kwargs)


@pytest.mark.parametrize(
    ("subscriptions", "policy", "since", "after", "expected"),
    [
        ([_sub()], WEEK_LIMIT, {}, T0, None),  # nothing turns by time
        ([_sub(status="past_due")], DEFAULT_POLICY, {"sub_1": T0}, T0, None),  # past due always counts
        ([_sub(status="past_due")], WEEK_LIMIT, {"sub_1": T0}, T0, T0 + 7 * DAY),
        ([_sub(status="past_due")], WEEK_LIMIT, {"sub_1": T0}, T0 + 7 * DAY, None),  # churned already
        ([_sub(status="trialing", trial_end=T0 + 10 * DAY)], DEFAULT_POLICY, {}, T0, T0 + 3 * DAY),
        (
            [_sub(status="trialing", trial_end=T0 + 10 * DAY)],
            DEFAULT_POLICY,
            {},
            T0 + 3 * DAY,
            T0 + 10 * DAY + 1,
        ),
        ([_sub(status="trialing", trial_end=T0 + 10 * DAY)], DEFAULT_POLICY, {}, T0 + 10 * DAY + 1, None),
        (
            [_sub(status="trialing", trial_end=T0 + 10 * DAY), _sub("sub_2", status="past_due")],
            RevenuePolicy(churn_after_days=2),
            {"sub_2": T0},
            T0,
            T0 + 2 * DAY,  # the earliest
        ),
        ([_sub(status="canceled", trial_end=T0 + 10 * DAY)], DEFAULT_POLICY, {}, T0, None),  # ended
    ],
)
def test_the_next_time_the_record_turns_by_time(
    subscriptions: list[dict[str, Any]],
    policy: RevenuePolicy,
    since: dict[str, int],
    after: int,
    expected: int | None,
) -> None:
    assert next_review(_objects(*subscriptions), policy, since, after) == expected


def test_a_deleted_customer_has_nothing_to_review() -> None:
    objects = _objects(_sub(status="trialing", trial_end=T0 + 10 * DAY), deleted=True)
    assert next_review(objects, DEFAULT_POLICY, {}, T0) is None


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, WEEK_LIMIT, RevenuePolicy(churn_after_days=9)])
def test_the_record_changes_by_time_only_at_a_review_time(policy: RevenuePolicy) -> None:
    """Derived day by day with no observation, the record changes only at the times next_review
    gives (so reviewing the customer then misses nothing)."""
    objects = _objects(_sub(status="trialing", trial_end=T0 + 12 * DAY), _sub("sub_2", status="past_due"))
    since = {"sub_2": T0 + DAY}
    turns, at = [], T0
    while (turn := next_review(objects, policy, since, at)) is not None:
        turns.append(turn)
        at = turn
    changes = []
    previous = derive_record("t", objects, "id", policy, past_due_since=since, as_of=T0)
    for hour in range(1, 20 * 24):
        record = derive_record("t", objects, "id", policy, past_due_since=since, as_of=T0 + hour * 3600)
        if record != previous:
            changes.append(T0 + hour * 3600)
        previous = record
    # Each change is seen at the first whole hour at or after its review time.
    assert changes == [turn + (-(turn - T0) % 3600) for turn in turns]


def test_a_schedules_next_phase_is_a_review_time() -> None:
    """The risk signals' own turns come from revsync.domain.risk.next_risk_change: a subscription
    schedule's next phase starting (scheduled_change_at then moves on) is one."""
    objects = _objects(_sub())
    price = S.price(1000, id="price_a")
    phases = [
        S.schedule_phase(price, T0, T0 + 20 * DAY),
        S.schedule_phase(price, T0 + 20 * DAY, T0 + 50 * DAY, quantity=3),
    ]
    raw = S.subscription_schedule("cus_1", phases, subscription="sub_1", id="sub_sched_1")
    objects = objects.with_observation(
        Observation(
            snapshot=parse_subscription_schedule(raw), observed_at=T0, source="updated", event_id=None
        )
    )
    assert derive_record("t", objects, "id", as_of=T0)["risk"]["scheduled_change_at"] == T0 + 20 * DAY
    assert next_review(objects, DEFAULT_POLICY, {}, T0) == T0 + 20 * DAY
    assert next_review(objects, WEEK_LIMIT, {}, T0) == T0 + 20 * DAY
