"""A tenant's revenue policy (revsync.domain.policy): the document, and each option against worked
examples derived from the published definitions of the revenue tools tenants compare revsync with.
The default policy gives exactly today's records and timelines (a property over generated
histories)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source
from revsync.domain.history import mrr_timeline, replay
from revsync.domain.policy import DAY, DEFAULT_POLICY, PolicyError, RevenuePolicy
from revsync.domain.record import CustomerRecord, derive_record
from revsync.domain.snapshots import parse_subscription
from revsync.domain.state import CustomerObjects, apply
from revsync.errors import InvalidInput

from local import stripe_shapes as S
from tests.unit.test_history_replay import _histories

T0 = 1_767_225_600  # 2026-01-01
PLAN = S.price(4900, id="price_pro")


# --- the document ---------------------------------------------------------------------------------


def test_the_default_document_is_todays_rules_and_round_trips() -> None:
    document = {
        "past_due": {"churn_after_days": None},
        "churn_at": "ended",
        "discounts": "active",
        "metered": "excluded",
    }
    assert DEFAULT_POLICY.to_json() == document
    assert RevenuePolicy.from_json(document) == DEFAULT_POLICY == RevenuePolicy.from_json({})
    chosen = RevenuePolicy(
        churn_after_days=30, churn_at="scheduled", discounts="forever_only", metered="last_invoice"
    )
    assert RevenuePolicy.from_json(chosen.to_json()) == chosen
    assert RevenuePolicy.from_json({"discounts": "none"}) == replace(DEFAULT_POLICY, discounts="none")


@pytest.mark.parametrize(
    ("document", "names"),
    [
        (None, "object"),
        ([], "object"),
        ("ended", "object"),
        ({"churn": "ended"}, "unknown policy keys: churn"),
        ({"past_due": 30}, "past_due"),
        ({"past_due": {"days": 30}}, "past_due"),
        ({"past_due": {"churn_after_days": 0}}, "churn_after_days"),
        ({"past_due": {"churn_after_days": 91}}, "churn_after_days"),
        ({"past_due": {"churn_after_days": 30.5}}, "churn_after_days"),
        ({"past_due": {"churn_after_days": "30"}}, "churn_after_days"),
        ({"past_due": {"churn_after_days": True}}, "churn_after_days"),
        ({"churn_at": "cancelled"}, "churn_at"),
        ({"churn_at": None}, "churn_at"),
        ({"discounts": ["active"]}, "discounts"),
        ({"discounts": "Active"}, "discounts"),
        ({"metered": "included"}, "metered"),
    ],
)
def test_a_bad_document_is_invalid_input_naming_the_key(document: Any, names: str) -> None:
    with pytest.raises(PolicyError, match=names) as raised:
        RevenuePolicy.from_json(document)
    assert isinstance(raised.value, InvalidInput)
    assert raised.value.code == "invalid_policy"


# --- worked examples ------------------------------------------------------------------------------


def _subscription(status: str = "active", **fields: Any) -> Any:
    items = fields.pop("items", None) or [{**S.subscription_item(PLAN), "id": "si_1"}]
    return parse_subscription(S.subscription("cus_1", items, id="sub_1", status=status, created=T0, **fields))


def _seen(snapshot: Any, at: int, source: Source = "updated") -> Observation:
    return Observation(snapshot=snapshot, observed_at=at, source=source, event_id=None)


def _record(
    observations: list[Observation], policy: RevenuePolicy, as_of: int | None = None
) -> CustomerRecord:
    """The record the observations give, with the past-due runs the history replay dates."""
    objects = CustomerObjects("cus_1")
    for observation in observations:
        objects = apply(objects, observation).objects
    _, [checkpoint] = replay(observations, cuts=[as_of or objects.newest_observation + 1], policy=policy)
    return derive_record(
        "t", objects, "id", policy, past_due_since=dict(checkpoint.past_due_since), as_of=as_of
    )


CHARTMOGUL_15 = RevenuePolicy(churn_after_days=15)
BAREMETRICS = RevenuePolicy(churn_after_days=30)
PAST_DUE = [
    _seen(_subscription("active"), T0, "created"),
    _seen(_subscription("past_due"), T0 + 31 * DAY),  # the renewal failed
    _seen(_subscription("past_due"), T0 + 40 * DAY, "fetched"),  # a catch-up read: the run goes on
]


@pytest.mark.parametrize(
    ("policy", "days_past_due", "mrr", "churned_at"),
    [
        (DEFAULT_POLICY, 89, 4900, None),
        (CHARTMOGUL_15, 14, 4900, None),
        (CHARTMOGUL_15, 15, 0, T0 + 46 * DAY),
        (BAREMETRICS, 29, 4900, None),
        (BAREMETRICS, 30, 0, T0 + 61 * DAY),
        (RevenuePolicy(churn_after_days=90), 89, 4900, None),
    ],
)
def test_past_due_counts_until_the_policys_days_then_churns(
    policy: RevenuePolicy, days_past_due: int, mrr: int, churned_at: int | None
) -> None:
    """ChartMogul, https://help.chartmogul.com/article/303-handling-past-due-subscriptions: "A
    subscription is automatically churned after it has been past due for the specified number of
    days (1-90)"; by default "A subscription remains past due and keeps contributing to MRR until
    ChartMogul receives a cancellation event". Baremetrics churns past due after 30 days (issue 26;
    its own page is not in the stored references). Days count from the first observation of the
    current past_due run (here day 31), not from a later re-read of it (day 40)."""
    record = _record(PAST_DUE, policy, as_of=T0 + (31 + days_past_due) * DAY)
    assert (record["mrr"], record["churned"], record["churned_at"]) == (
        mrr,
        churned_at is not None,
        churned_at,
    )


def test_the_history_churns_a_long_past_due_subscription_and_reactivates_it_when_paid() -> None:
    """The same rule in the timeline: the churn shows at the first observation after the limit (MRR is
    derived as of the newest observation, as with a repeating discount's end), and a recovered
    subscription comes back; the default policy keeps counting it."""
    paid = _seen(_subscription("active"), T0 + 70 * DAY)
    later = _seen(_subscription("past_due"), T0 + 65 * DAY)  # observed again past due after the limit
    observations = [*PAST_DUE, later, paid]
    assert mrr_timeline("cus_1", observations) == [(T0, "usd", 4900)]
    assert mrr_timeline("cus_1", observations, BAREMETRICS) == [
        (T0, "usd", 4900),
        (T0 + 65 * DAY, "usd", 0),
        (T0 + 70 * DAY, "usd", 4900),
    ]
    assert mrr_timeline("cus_1", list(reversed(observations)) * 2, BAREMETRICS) == mrr_timeline(
        "cus_1", observations, BAREMETRICS
    )


SCHEDULED = RevenuePolicy(churn_at="scheduled")
CANCEL = [
    _seen(_subscription("active"), T0, "created"),
    _seen(_subscription("active", cancel_at_period_end=True, canceled_at=T0 + 10 * DAY), T0 + 10 * DAY),
]


@pytest.mark.parametrize(
    ("policy", "mrr", "churned_at"),
    [(DEFAULT_POLICY, 4900, None), (SCHEDULED, 0, T0 + 10 * DAY)],
)
def test_churn_when_the_cancellation_is_scheduled_or_when_the_subscription_ends(
    policy: RevenuePolicy, mrr: int, churned_at: int | None
) -> None:
    """ChartMogul, https://help.chartmogul.com/article/242-churn-recognition: "As soon as a customer
    schedules cancellation ... This option gives you a real-time view of your forward-looking MRR".
    ProfitWell (the default), https://learn.profitwell.com/article/3xteyrvof6-why-are-my-metrics-in-profit-well-different-than-chargify:
    "When a customer cancels their subscription, we recognize the MRR of a customer until the end of
    their billing cycle"."""
    record = _record(CANCEL, policy)
    assert (record["mrr"], record["churned"], record["churned_at"]) == (
        mrr,
        churned_at is not None,
        churned_at,
    )


def test_an_unscheduled_cancellation_reactivates_and_the_end_changes_nothing_more() -> None:
    resumed = _seen(_subscription("active"), T0 + 12 * DAY)
    ended = _seen(
        _subscription("canceled", canceled_at=T0 + 40 * DAY, ended_at=T0 + 40 * DAY), T0 + 40 * DAY, "deleted"
    )
    assert mrr_timeline("cus_1", [*CANCEL, resumed], SCHEDULED) == [
        (T0, "usd", 4900),
        (T0 + 10 * DAY, "usd", 0),
        (T0 + 12 * DAY, "usd", 4900),
    ]
    assert mrr_timeline("cus_1", [*CANCEL, ended], SCHEDULED) == [
        (T0, "usd", 4900),
        (T0 + 10 * DAY, "usd", 0),
    ]
    assert mrr_timeline("cus_1", [*CANCEL, ended]) == [(T0, "usd", 4900), (T0 + 40 * DAY, "usd", 0)]
    assert _record([*CANCEL, ended], SCHEDULED)["churned_at"] == T0 + 40 * DAY


def _discounted() -> Any:
    forever = S.discount(S.coupon(percent_off=20, id="co_forever"), start=T0)
    repeating = S.discount(
        S.coupon(percent_off=50, duration="repeating", duration_in_months=3, id="co_rep"),
        start=T0,
        end=T0 + 90 * DAY,
    )
    once = S.discount(S.coupon(percent_off=90, duration="once", id="co_once"), start=T0)
    items = [{**S.subscription_item(S.price(10000, id="price_team")), "id": "si_1"}]
    discounts = [{**d, "id": f"di_{i}"} for i, d in enumerate((forever, repeating, once))]
    return _subscription("active", items=items, discounts=discounts)


@pytest.mark.parametrize(
    ("policy", "during_repeating", "after_repeating"),
    [
        (DEFAULT_POLICY, 4000, 8000),  # 10000 - 20% - 50%, then the repeating one ends
        (RevenuePolicy(discounts="forever_only"), 8000, 8000),
        (RevenuePolicy(discounts="none"), 10000, 10000),
    ],
)
def test_discounts_reduce_mrr_as_the_policy_says(
    policy: RevenuePolicy, during_repeating: int, after_repeating: int
) -> None:
    """Stripe, https://support.stripe.com/questions/billing-analytics: "If you apply a coupon with a
    forever duration, the discount will apply to your MRR. If you apply a coupon with a finite
    duration (i.e. once or repeating) to a subscription, your MRR is unaffected." ChartMogul (the
    default) counts discounts while they last; ``none`` is the list price. A ``once`` coupon never
    counts."""
    subscription = _discounted()
    assert _record([_seen(subscription, T0 + DAY)], policy)["mrr"] == during_repeating
    assert _record([_seen(subscription, T0 + 91 * DAY)], policy)["mrr"] == after_repeating
    timeline = mrr_timeline(
        "cus_1", [_seen(subscription, T0 + DAY), _seen(subscription, T0 + 91 * DAY)], policy
    )
    expected = (
        [during_repeating] if during_repeating == after_repeating else [during_repeating, after_repeating]
    )
    assert [mrr for _, _, mrr in timeline] == expected


@pytest.mark.parametrize("policy", [DEFAULT_POLICY, SCHEDULED, BAREMETRICS, RevenuePolicy(discounts="none")])
def test_metered_items_and_unpaid_subscriptions_count_nothing(policy: RevenuePolicy) -> None:
    """Stripe, https://docs.stripe.com/billing/subscriptions/analytics/glossary: "MRR calculations
    exclude subscriptions in trial periods, any taxes applied to the subscription, any subscribers on
    free plans, and any metered (usage based) products", and "When a subscriber's subscription is
    canceled or marked as unpaid, then the subscription is considered churn and no longer counts
    towards MRR"."""
    metered = {**S.subscription_item(S.price(25, usage_type="metered", id="price_calls")), "id": "si_2"}
    items = [{**S.subscription_item(PLAN), "id": "si_1"}, metered]
    assert _record([_seen(_subscription("active", items=items), T0)], policy)["mrr"] == 4900
    assert _record([_seen(_subscription("unpaid", items=items), T0)], policy)["mrr"] == 0


# --- the default policy is today's rules ----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(observations=_histories)
def test_the_default_policy_gives_todays_records_and_timelines(observations: list[Observation]) -> None:
    objects = CustomerObjects("cus_1")
    for observation in observations:
        if str(observation["source"]) != "imported":
            objects = apply(objects, observation).objects
    _, [checkpoint] = replay(observations, cuts=[objects.newest_observation + 1])
    stated = RevenuePolicy.from_json(DEFAULT_POLICY.to_json())
    since = dict(checkpoint.past_due_since)
    by_policy = derive_record("t", objects, "id", stated, past_due_since=since)
    assert by_policy == derive_record("t", objects, "id", past_due_since=since)
    # The past-due runs date only the risk signal dunning_since under the default policy.
    today = derive_record("t", objects, "id")
    assert {**by_policy, "risk": today["risk"], "traits": today["traits"]} == today
    assert {k: v for k, v in by_policy["traits"].items() if not k.startswith("stripe.risk.")} == {
        k: v for k, v in today["traits"].items() if not k.startswith("stripe.risk.")
    }
    assert mrr_timeline("cus_1", observations, stated) == mrr_timeline("cus_1", observations)


_POLICIES = st.builds(
    RevenuePolicy,
    churn_after_days=st.sampled_from([None, 1, 2]),
    churn_at=st.sampled_from(["ended", "scheduled"]),
    discounts=st.sampled_from(["active", "forever_only", "none"]),
)


@settings(max_examples=150, deadline=None)
@given(observations=_histories, policy=_POLICIES, scheduled=st.data())
def test_the_timeline_is_the_record_by_the_same_policy_at_each_second(
    observations: list[Observation], policy: RevenuePolicy, scheduled: Any
) -> None:
    """The history and the record agree under any policy: MRR(t) is the record derived (as of the
    newest observation) from the observations up to t, with the past-due runs dated up to t."""
    # Spread over days (a past-due limit passes), some active subscriptions scheduled to cancel.
    observations = [
        {
            **o,
            "observed_at": T0 + (o["observed_at"] - T0) * 30,
            "snapshot": {**o["snapshot"], "cancel_at_period_end": scheduled.draw(st.booleans())}
            if o["snapshot"]["object"] == "subscription" and o["snapshot"]["status"] == "active"
            else o["snapshot"],
        }
        for o in observations
        if str(o["source"]) != "imported"
    ]
    ordered = sorted(observations, key=lambda o: o["observed_at"])
    expected: list[tuple[int, str | None, int]] = []
    current: tuple[str | None, int] = (None, 0)
    for at in sorted({o["observed_at"] for o in ordered}):
        upto = [o for o in observations if o["observed_at"] <= at]
        _, [checkpoint] = replay(upto, cuts=[at + 1], policy=policy)
        objects = CustomerObjects("cus_1")
        for observation in _replay_order(upto):
            objects = apply(objects, observation).objects
        record = derive_record("t", objects, None, policy, past_due_since=dict(checkpoint.past_due_since))
        now = (record["currency"], record["mrr"])
        if now != current and (now[1] or current[1]):
            expected.append((at, *now))
        current = now
    assert mrr_timeline("cus_1", observations, policy) == expected


def _replay_order(observations: list[Observation]) -> list[Observation]:
    rank = {"created": 0, "updated": 1, "fetched": 1, "deleted": 2}
    return sorted(
        observations,
        key=lambda o: (o["observed_at"], rank[o["source"]], json.dumps(o["snapshot"], sort_keys=True)),
    )
