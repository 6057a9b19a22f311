"""Risk signals (revsync.domain.risk): each raised and cleared by the observations that cause it, at an
injected ``now``, whatever order the observations arrive in and however often."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source
from revsync.domain.history import replay
from revsync.domain.policy import DAY, DEFAULT_POLICY, RevenuePolicy
from revsync.domain.risk import NO_RISK, Risk, derive_risk, risk_traits
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.state import CustomerObjects, apply

from local import stripe_shapes as S

T0 = 1_767_225_600
PLAN = S.price(4900, id="price_pro")


def _sub(status: str = "active", sub_id: str = "sub_1", **fields: Any) -> Any:
    items = [{**S.subscription_item(PLAN), "id": f"si_{sub_id}"}]
    return parse_subscription(S.subscription("cus_1", items, id=sub_id, status=status, created=T0, **fields))


def _seen(snapshot: Any, at: int, source: Source = "updated") -> Observation:
    return Observation(snapshot=snapshot, observed_at=at, source=source, event_id=None)


def _risk(observations: list[Observation], now: int, policy: RevenuePolicy = DEFAULT_POLICY) -> Risk:
    objects = CustomerObjects("cus_1")
    for observation in observations:
        objects = apply(objects, observation).objects
    _, [checkpoint] = replay(observations, cuts=[objects.newest_observation + 1], policy=policy)
    return derive_risk(objects, "usd", now, policy, dict(checkpoint.past_due_since))


CREATED = _seen(_sub(), T0, "created")


@pytest.mark.parametrize(
    ("observations", "now", "raised"),
    [
        ([CREATED], T0, {}),
        # dunning: raised by the failed renewal, dated by its first observation, cleared when paid
        (
            [CREATED, _seen(_sub("past_due"), T0 + 31 * DAY)],
            T0 + 33 * DAY,
            {"in_dunning": True, "dunning_since": T0 + 31 * DAY},
        ),
        (
            [
                CREATED,
                _seen(_sub("past_due"), T0 + 31 * DAY),
                _seen(_sub("past_due"), T0 + 32 * DAY, "fetched"),
            ],
            T0 + 33 * DAY,
            {"in_dunning": True, "dunning_since": T0 + 31 * DAY},
        ),
        ([CREATED, _seen(_sub("past_due"), T0 + 31 * DAY), _seen(_sub(), T0 + 34 * DAY)], T0 + 35 * DAY, {}),
        ([CREATED, _seen(_sub("unpaid"), T0 + 45 * DAY)], T0 + 46 * DAY, {"in_dunning": True}),
        (
            [CREATED, _seen(_sub("canceled", ended_at=T0 + 60 * DAY), T0 + 60 * DAY, "deleted")],
            T0 + 61 * DAY,
            {},
        ),
        # a delinquent customer (an invoice outside subscriptions failed) is in dunning too
        (
            [CREATED, _seen(parse_customer(S.customer("cus_1", delinquent=True)), T0 + DAY)],
            T0 + DAY,
            {"in_dunning": True},
        ),
        # cancellation scheduled: raised with the MRR it takes, cleared when resumed or when it ends
        (
            [CREATED, _seen(_sub(cancel_at_period_end=True, canceled_at=T0 + 5 * DAY), T0 + 5 * DAY)],
            T0 + 6 * DAY,
            {"cancel_scheduled_at": T0 + 5 * DAY, "mrr_at_risk": 4900},
        ),
        (
            [
                CREATED,
                _seen(_sub(cancel_at_period_end=True, canceled_at=T0 + 5 * DAY), T0 + 5 * DAY),
                _seen(_sub(), T0 + 6 * DAY),
            ],
            T0 + 7 * DAY,
            {},
        ),
        (
            [
                CREATED,
                _seen(_sub(cancel_at_period_end=True, canceled_at=T0 + 5 * DAY), T0 + 5 * DAY),
                _seen(
                    _sub("canceled", canceled_at=T0 + 5 * DAY, ended_at=T0 + 30 * DAY),
                    T0 + 30 * DAY,
                    "deleted",
                ),
            ],
            T0 + 31 * DAY,
            {},
        ),
        # trial ending: only within 7 days of now, cleared when it converts
        ([_seen(_sub("trialing", trial_end=T0 + 14 * DAY), T0, "created")], T0 + 6 * DAY, {}),
        (
            [_seen(_sub("trialing", trial_end=T0 + 14 * DAY), T0, "created")],
            T0 + 7 * DAY,
            {"trial_ends_at": T0 + 14 * DAY},
        ),
        (
            [_seen(_sub("trialing", trial_end=T0 + 14 * DAY), T0, "created"), _seen(_sub(), T0 + 14 * DAY)],
            T0 + 14 * DAY,
            {},
        ),
        # a customer deleted in Stripe carries no risk
        (
            [
                _seen(_sub("past_due", cancel_at_period_end=True), T0),
                _seen(parse_customer(S.customer("cus_1"), deleted=True), T0 + DAY, "deleted"),
            ],
            T0 + DAY,
            {},
        ),
    ],
)
def test_each_signal_is_raised_and_cleared_by_what_causes_it(
    observations: list[Observation], now: int, raised: dict[str, Any]
) -> None:
    expected = {**NO_RISK, **raised}
    assert _risk(observations, now) == expected
    assert _risk(list(reversed(observations)) * 2, now) == expected
    assert risk_traits(_risk(observations, now)) == {f"stripe.risk.{k}": v for k, v in expected.items()}


def test_mrr_at_risk_is_what_the_scheduled_subscriptions_bring_in_whatever_the_policy() -> None:
    """Under ``churn_at: scheduled`` their MRR is already 0 in the record; the risk still says what
    leaves with them. Only the scheduled subscription counts."""
    observations = [
        CREATED,
        _seen(_sub(sub_id="sub_2"), T0, "created"),
        _seen(_sub(cancel_at_period_end=True, canceled_at=T0 + DAY), T0 + DAY),
    ]
    for policy in (DEFAULT_POLICY, RevenuePolicy(churn_at="scheduled")):
        risk = _risk(observations, T0 + DAY, policy)
        assert (risk["cancel_scheduled_at"], risk["mrr_at_risk"]) == (T0 + DAY, 4900)


_STATES = [
    {"status": "active"},
    {"status": "past_due"},
    {"status": "unpaid"},
    {"status": "active", "cancel_at_period_end": True, "canceled_at": T0 + DAY},
    {"status": "trialing", "trial_end": T0 + 40 * DAY},
]


@st.composite
def _story(draw: Any) -> list[Observation]:
    """A subscription moving through dunning, scheduled cancellations and trials, a day apart, or
    several things in one second (Stripe's order within it then comes from the lifecycle step)."""
    story = [_seen(_sub(**draw(st.sampled_from(_STATES))), T0, "created")]
    at = T0
    for _ in range(draw(st.integers(0, 6))):
        at += draw(st.sampled_from([DAY, 2 * DAY, 10 * DAY]))
        story.append(_seen(_sub(**draw(st.sampled_from(_STATES))), at))
    return story


@settings(max_examples=200, deadline=None)
@given(story=_story(), data=st.data(), now_days=st.integers(0, 80))
def test_signals_do_not_depend_on_order_or_duplicates(
    story: list[Observation], data: Any, now_days: int
) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(story), max_size=len(story)))
    shuffled = data.draw(st.permutations(story + duplicates))
    now = T0 + now_days * DAY
    for policy in (DEFAULT_POLICY, RevenuePolicy(churn_after_days=15)):
        assert _risk(list(shuffled), now, policy) == _risk(story, now, policy)
