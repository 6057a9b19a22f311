"""The risk signals read from failed invoices, subscription schedules and the default payment method's
card (revsync.domain.risk): each raised and cleared by the Stripe events that cause it, through the
state's ``apply`` (revsync.domain.state), whatever order the events arrive in and however often; and
``next_risk_change``, the time the signals next change with time alone."""

from __future__ import annotations

import calendar
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source
from revsync.domain.policy import DAY, DEFAULT_POLICY, RevenuePolicy
from revsync.domain.risk import NO_RISK, Risk, card_expiry, derive_risk, next_risk_change
from revsync.domain.snapshots import (
    parse_customer,
    parse_invoice,
    parse_payment_method,
    parse_subscription,
    parse_subscription_schedule,
)
from revsync.domain.state import MAX_FAILED_INVOICES, CustomerObjects, apply

from local import stripe_shapes as S

T0 = 1_767_225_600  # 2026-01-01
PLAN = S.price(4900, id="price_pro")
SEATS = S.price(1000, id="price_seat")
RENEWAL = T0 + 30 * DAY  # sub_1's period end


def _seen(snapshot: Any, at: int, source: Source = "updated") -> Observation:
    return Observation(snapshot=snapshot, observed_at=at, source=source, event_id=None)


def _sub(status: str = "active", **fields: Any) -> Observation:
    items = [{**S.subscription_item(PLAN, period_start=T0, period_end=RENEWAL), "id": "si_1"}]
    raw = S.subscription("cus_1", items, id="sub_1", status=status, created=T0, period_end=RENEWAL, **fields)
    return _seen(parse_subscription(raw), T0, "created")


def _customer(at: int, default: str | None = "pm_1", **fields: Any) -> Observation:
    raw = {**S.customer("cus_1", **fields), "invoice_settings": {"default_payment_method": default}}
    return _seen(parse_customer(raw), at)


def _invoice(at: int, status: str = "open", attempts: int = 1, invoice_id: str = "in_1") -> Observation:
    raw = S.invoice("cus_1", "sub_1", status=status, amount_paid=4900, id=invoice_id, paid_at=at)
    raw.update(attempt_count=attempts, amount_remaining=0 if status == "paid" else 4900)
    raw["next_payment_attempt"] = at + 3 * DAY if status == "open" else None
    return _seen(parse_invoice(raw), at)


def _schedule(at: int, status: str = "active", quantity: int = 3, starts: int = T0 + 20 * DAY) -> Observation:
    phases = [
        S.schedule_phase(PLAN, T0, starts),
        S.schedule_phase(SEATS, starts, starts + 30 * DAY, quantity=quantity),
    ]
    raw = S.subscription_schedule("cus_1", phases, status=status, subscription="sub_1", id="sub_sched_1")
    if status != "active":
        raw["current_phase"] = None
    source: Source = "created" if status == "not_started" else "updated"
    return _seen(parse_subscription_schedule(raw), at, source)


def _card(
    at: int, exp: tuple[int, int] = (2025, 12), *, detached: bool = False, source: Source = "updated"
) -> Observation:
    raw = S.payment_method("cus_1", exp_year=exp[0], exp_month=exp[1], id="pm_1")
    return _seen(parse_payment_method(raw, detached=detached), at, "deleted" if detached else source)


def _objects(observations: list[Observation]) -> CustomerObjects:
    objects = CustomerObjects("cus_1")
    for observation in observations:
        outcome = apply(objects, observation)
        assert outcome.decision.action != "refetch", outcome.decision
        objects = outcome.objects
    return objects


def _risk(observations: list[Observation], now: int, currency: str | None = "usd") -> Risk:
    return derive_risk(_objects(observations), currency, now)


DEC_2025_ENDS = calendar.timegm((2026, 1, 1, 0, 0, 0))  # T0: before the renewal


@pytest.mark.parametrize(
    ("observations", "raised"),
    [
        # a failed payment: its attempts, when the latest failed, what is due; dunning from the first
        (
            [_sub(), _invoice(T0 + DAY)],
            {
                "in_dunning": True,
                "dunning_since": T0 + DAY,
                "failed_payment_attempts": 1,
                "last_payment_failed_at": T0 + DAY,
                "amount_due": 4900,
            },
        ),
        (
            [_sub(), _invoice(T0 + DAY), _invoice(T0 + 4 * DAY, attempts=2)],
            {
                "in_dunning": True,
                "dunning_since": T0 + DAY,
                "failed_payment_attempts": 2,
                "last_payment_failed_at": T0 + 4 * DAY,
                "amount_due": 4900,
            },
        ),
        # ... and a later read of the same attempt does not move when it failed
        (
            [_sub(), _invoice(T0 + DAY), _invoice(T0 + 2 * DAY)],
            {
                "in_dunning": True,
                "dunning_since": T0 + DAY,
                "failed_payment_attempts": 1,
                "last_payment_failed_at": T0 + DAY,
                "amount_due": 4900,
            },
        ),
        # cleared when paid, voided or given up on (uncollectible)
        ([_sub(), _invoice(T0 + DAY), _invoice(T0 + 4 * DAY, "paid", 2)], {}),
        ([_sub(), _invoice(T0 + DAY), _invoice(T0 + 4 * DAY, "void")], {}),
        # ... and a closed one stays closed, even under an open observation stamped later (a read)
        ([_sub(), _invoice(T0 + DAY), _invoice(T0 + 4 * DAY, "void"), _invoice(T0 + 5 * DAY)], {}),
        ([_sub(), _invoice(T0 + DAY), _invoice(T0 + 4 * DAY, "uncollectible", 2)], {}),
        # an invoice not attempted yet is no failure
        ([_sub(), _invoice(T0 + DAY, attempts=0)], {}),
        # a past-due run that began before the failure was seen dates the dunning
        (
            [_seen(_sub("past_due")["snapshot"], T0 + DAY), _invoice(T0 + 2 * DAY)],
            {
                "in_dunning": True,
                "dunning_since": T0 + 2 * DAY,  # (undated past-due run here: no history replay)
                "failed_payment_attempts": 1,
                "last_payment_failed_at": T0 + 2 * DAY,
                "amount_due": 4900,
            },
        ),
        # a schedule's next phase: when, and its MRR (3 seats of 1000); cleared when it ends
        ([_sub(), _schedule(T0 + DAY)], {"scheduled_change_at": T0 + 20 * DAY, "scheduled_mrr": 3000}),
        (
            [_sub(), _schedule(T0 + DAY, quantity=1)],
            {"scheduled_change_at": T0 + 20 * DAY, "scheduled_mrr": 1000},
        ),
        ([_sub(), _schedule(T0 + DAY), _schedule(T0 + 2 * DAY, "released")], {}),
        ([_sub(), _schedule(T0 + DAY), _schedule(T0 + 2 * DAY, "canceled")], {}),
        # ... and when the subscription it manages ends, or (the schedule's end missed) stops naming it
        (
            [
                _sub(),
                _schedule(T0 + DAY),
                _seen(_sub("canceled", ended_at=T0 + 2 * DAY)["snapshot"], T0 + 2 * DAY, "deleted"),
            ],
            {},
        ),
        ([_sub(), _schedule(T0 + DAY), _seen(_sub()["snapshot"], T0 + 2 * DAY)], {}),
        # the default card expiring before the renewal: the end of its month; cleared when renewed,
        # detached, or no longer the default
        ([_sub(), _customer(T0), _card(T0)], {"card_expires_at": DEC_2025_ENDS}),
        ([_sub(), _customer(T0), _card(T0), _card(T0 + DAY, (2029, 1))], {}),
        ([_sub(), _customer(T0), _card(T0), _card(T0 + DAY, detached=True)], {}),
        ([_sub(), _customer(T0), _card(T0), _customer(T0 + DAY, default="pm_2")], {}),
        # ... no renewal to fail: none
        (
            [_sub(cancel_at_period_end=True), _customer(T0), _card(T0)],
            {"cancel_scheduled_at": T0, "mrr_at_risk": 4900},
        ),
        # a customer deleted in Stripe has none
        (
            [
                _sub(),
                _customer(T0),
                _card(T0),
                _invoice(T0 + DAY),
                _schedule(T0 + DAY),
                _seen(parse_customer(S.customer("cus_1"), deleted=True), T0 + 2 * DAY, "deleted"),
            ],
            {},
        ),
    ],
)
def test_each_signal_is_raised_and_cleared_by_the_events_that_cause_it(
    observations: list[Observation], raised: dict[str, Any]
) -> None:
    expected = {**NO_RISK, **raised}
    assert _risk(observations, T0 + 5 * DAY) == expected
    assert _risk(list(reversed(observations)) * 2, T0 + 5 * DAY) == expected


def test_a_scheduled_change_is_one_while_it_is_to_come() -> None:
    objects = _objects([_sub(), _schedule(T0 + DAY)])
    assert derive_risk(objects, "usd", T0 + 20 * DAY - 1)["scheduled_change_at"] == T0 + 20 * DAY
    assert derive_risk(objects, "usd", T0 + 20 * DAY)["scheduled_change_at"] is None
    # In another currency than the record's, its MRR is not comparable: none.
    assert derive_risk(objects, "eur", T0)["scheduled_mrr"] is None


def test_a_scheduled_phase_counts_the_customers_discount_as_of_its_start() -> None:
    """A repeating 50% customer coupon ending before the phase starts takes nothing off it; a forever
    one does (and a policy of list prices takes neither)."""
    half = S.coupon(percent_off=50, duration="repeating", duration_in_months=1, id="co_half")
    ending = S.discount(half, customer="cus_1", start=T0, end=T0 + 10 * DAY)
    forever = S.discount(S.coupon(percent_off=50, id="co_forever"), customer="cus_1", start=T0)
    for discount, mrr in ((ending, 3000), (forever, 1500)):
        objects = _objects([_sub(), _customer(T0, the_discount=discount), _schedule(T0 + DAY)])
        assert derive_risk(objects, "usd", T0)["scheduled_mrr"] == mrr
        list_price = derive_risk(objects, "usd", T0, RevenuePolicy(discounts="none"))
        assert list_price["scheduled_mrr"] == 3000


def test_a_webhooks_schedule_prices_named_by_id_are_filled_from_known_prices_or_read() -> None:
    """Stripe sends a schedule's phase prices as ids: known ones (the subscription's) are filled in;
    another is read from Stripe (the write path's refetch, which expands them)."""
    raw = S.subscription_schedule(
        "cus_1",
        [
            S.schedule_phase("price_pro", T0, T0 + 20 * DAY),
            S.schedule_phase("price_pro", T0 + 20 * DAY, T0 + 50 * DAY, quantity=2),
        ],
        subscription="sub_1",
        id="sub_sched_1",
    )
    known = apply(_objects([_sub()]), _seen(parse_subscription_schedule(raw), T0 + DAY))
    assert known.changed
    assert derive_risk(known.objects, "usd", T0)["scheduled_mrr"] == 9800
    other = S.subscription_schedule(
        "cus_1",
        [
            S.schedule_phase("price_pro", T0, T0 + 20 * DAY),
            S.schedule_phase("price_new", T0 + 20 * DAY, T0 + 50 * DAY),
        ],
        subscription="sub_1",
        id="sub_sched_1",
    )
    unknown = apply(_objects([_sub()]), _seen(parse_subscription_schedule(other), T0 + DAY))
    assert (unknown.decision.action, unknown.decision.reason) == ("refetch", "phase_prices_unexpanded")
    # The read's own snapshot (expanded) is kept; one Stripe could not expand is kept unpriced.
    read = _seen(parse_subscription_schedule(other), T0 + DAY, "fetched")
    assert derive_risk(apply(_objects([_sub()]), read).objects, "usd", T0)["scheduled_mrr"] is None


def test_a_customer_read_with_its_default_card_keeps_the_card_apart() -> None:
    """A backfill's customers come with their default payment method expanded: one observation, two
    objects (the customer without the card, the card as a payment method)."""
    card = S.payment_method("cus_1", exp_year=2025, exp_month=12, id="pm_1")
    raw = {**S.customer("cus_1"), "invoice_settings": {"default_payment_method": card}}
    outcome = apply(_objects([_sub()]), _seen(parse_customer(raw), T0, "fetched"))
    assert outcome.changed
    assert outcome.objects.customer is not None
    assert "default_payment_method_object" not in outcome.objects.customer["snapshot"]
    assert outcome.objects.default_payment_method == "pm_1"
    assert derive_risk(outcome.objects, "usd", T0)["card_expires_at"] == DEC_2025_ENDS
    # The same read again changes nothing.
    assert not apply(outcome.objects, _seen(parse_customer(raw), T0, "fetched")).changed


def test_failed_invoices_are_kept_bounded_open_ones_first() -> None:
    many = [_invoice(T0 + n, invoice_id=f"in_{n}") for n in range(MAX_FAILED_INVOICES + 2)]
    closed = _invoice(T0 + 99, "void", invoice_id="in_closed")
    objects = _objects([_sub(), *many, closed])
    assert len(objects.failed_invoices) == MAX_FAILED_INVOICES
    assert "in_closed" not in objects.failed_invoices  # the newest open ones are kept before it
    assert derive_risk(objects, "usd", T0)["failed_payment_attempts"] == MAX_FAILED_INVOICES


def test_card_expiry_is_the_first_second_after_the_expiry_month() -> None:
    assert card_expiry(2026, 1) == calendar.timegm((2026, 2, 1, 0, 0, 0))
    assert card_expiry(2026, 12) == calendar.timegm((2027, 1, 1, 0, 0, 0))


# --- any order, any repetition ------------------------------------------------------------------------


@st.composite
def _story(draw: Any) -> tuple[list[Observation], dict[str, Any]]:
    """A customer's failed payment, schedule and default card, each object's events at distinct
    seconds (a same-second tie of one object is settled by a read: tests/unit/test_state.py), and
    what the signals must say once all are in."""
    at = iter(range(T0 + DAY, T0 + 1000 * DAY, DAY))
    story = [_sub(), _customer(next(at))]
    expected: dict[str, Any] = {}
    attempts = draw(st.integers(1, 3))
    for attempt in range(1, attempts + 1):
        story.append(_invoice(next(at), attempts=attempt))
    ending = draw(st.sampled_from([None, "paid", "void", "uncollectible"]))
    if ending is not None:
        story.append(_invoice(next(at), ending, attempts))
    else:
        expected["failed_payment_attempts"] = attempts
    quantities = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
    story += [_schedule(next(at), quantity=q) for q in quantities]
    if draw(st.booleans()):
        story.append(_schedule(next(at), draw(st.sampled_from(["released", "canceled", "completed"]))))
    else:
        expected["scheduled_mrr"] = 1000 * quantities[-1]
    exps = draw(st.lists(st.sampled_from([(2026, 1), (2027, 6), (2025, 12)]), min_size=1, max_size=3))
    story += [_card(next(at), exp, source="created" if i == 0 else "updated") for i, exp in enumerate(exps)]
    if draw(st.booleans()):
        story.append(_card(next(at), exps[-1], detached=True))
    else:
        expires = card_expiry(*exps[-1])
        expected["card_expires_at"] = expires if expires <= RENEWAL else None
    return story, expected


@settings(max_examples=150, deadline=None)
@given(story=_story(), data=st.data())
def test_signals_depend_on_the_set_of_events_not_their_order_or_repetition(
    story: tuple[list[Observation], dict[str, Any]], data: Any
) -> None:
    observations, expected = story
    now = T0 + DAY
    in_order = _objects(observations)
    duplicates = data.draw(st.lists(st.sampled_from(observations), max_size=len(observations)))
    shuffled = _objects(data.draw(st.permutations(observations + duplicates)))
    assert shuffled == in_order
    risk = derive_risk(shuffled, "usd", now)
    assert risk == derive_risk(in_order, "usd", now)
    assert risk["failed_payment_attempts"] == expected.get("failed_payment_attempts", 0)
    assert risk["in_dunning"] is ("failed_payment_attempts" in expected)
    assert risk["scheduled_mrr"] == expected.get("scheduled_mrr")
    assert risk["card_expires_at"] == expected.get("card_expires_at")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_failed_invoices_observations_merge_the_same_in_any_order_even_in_one_second(data: Any) -> None:
    """Failed invoices need no read for a tie: every field is a newest-wins, a maximum or a minimum."""
    seconds = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=5))
    observations = [_invoice(T0 + s, attempts=n + 1) for n, s in enumerate(sorted(seconds))]
    if data.draw(st.booleans()):
        observations.append(_invoice(T0 + max(seconds), "void", len(observations)))
    shuffled = data.draw(st.permutations(observations + observations[:2]))
    assert _objects(list(shuffled)) == _objects(observations)


# --- when time alone changes them ------------------------------------------------------------------


def test_the_next_change_is_a_trial_window_or_a_scheduled_start() -> None:
    trial = _seen(_sub("trialing", trial_end=T0 + 20 * DAY)["snapshot"], T0, "created")
    objects = _objects([trial])
    assert next_risk_change(objects, T0) == T0 + 13 * DAY  # the trial's last 7 days begin
    assert next_risk_change(objects, T0 + 13 * DAY) == T0 + 20 * DAY + 1  # and end
    assert next_risk_change(objects, T0 + 20 * DAY + 1) is None
    scheduled = _objects([_sub(), _schedule(T0 + DAY)])
    assert next_risk_change(scheduled, T0 + DAY) == T0 + 20 * DAY
    assert next_risk_change(scheduled, T0 + 20 * DAY) is None
    # A card's expiry is compared with the renewal, not with now: no time of its own.
    assert next_risk_change(_objects([_sub(), _customer(T0), _card(T0)]), T0) is None


def test_the_next_change_counts_what_mrr_at_risk_reads_as_of_now() -> None:
    """A subscription scheduled to end: a repeating discount ending, the policy's past-due limit."""
    coupon = S.coupon(percent_off=50, duration="repeating", duration_in_months=1, id="co_half")
    discount = S.discount(coupon, customer="cus_1", start=T0, end=T0 + 10 * DAY)
    leaving = _seen(_sub(cancel_at_period_end=True)["snapshot"], T0, "created")
    objects = _objects([leaving, _customer(T0, the_discount=discount)])
    assert next_risk_change(objects, T0) == T0 + 10 * DAY
    assert next_risk_change(objects, T0, RevenuePolicy(discounts="none")) is None
    past_due = _objects([_seen(_sub("past_due", cancel_at_period_end=True)["snapshot"], T0, "created")])
    limit = RevenuePolicy(churn_after_days=15)
    assert next_risk_change(past_due, T0, limit, {"sub_1": T0}) == T0 + 15 * DAY
    assert derive_risk(past_due, "usd", T0 + 15 * DAY - 1, limit, {"sub_1": T0})["mrr_at_risk"] == 4900
    assert derive_risk(past_due, "usd", T0 + 15 * DAY, limit, {"sub_1": T0})["mrr_at_risk"] == 0


_STORIES = st.sampled_from(
    [
        [_seen(_sub("trialing", trial_end=T0 + 20 * DAY)["snapshot"], T0, "created")],
        [_sub(), _schedule(T0 + DAY), _customer(T0), _card(T0), _invoice(T0 + DAY)],
        [
            _seen(_sub("past_due", cancel_at_period_end=True)["snapshot"], T0, "created"),
            _customer(
                T0,
                the_discount=S.discount(
                    S.coupon(amount_off=1000, duration="repeating", duration_in_months=1, id="co_1"),
                    customer="cus_1",
                    start=T0,
                    end=T0 + 9 * DAY,
                ),
            ),
            _schedule(T0 + DAY, starts=T0 + 25 * DAY),
        ],
    ]
)


@settings(max_examples=150, deadline=None)
@given(story=_STORIES, now_days=st.integers(0, 40), data=st.data())
def test_the_signals_stay_as_they_are_until_the_next_change(
    story: list[Observation], now_days: int, data: Any
) -> None:
    objects = _objects(story)
    now = T0 + now_days * DAY + data.draw(st.integers(0, DAY - 1))
    policy = data.draw(st.sampled_from([DEFAULT_POLICY, RevenuePolicy(churn_after_days=12)]))
    since = {"sub_1": T0}
    change = next_risk_change(objects, now, policy, since)
    later = data.draw(st.integers(now, (change or now + 60 * DAY) - 1))
    assert derive_risk(objects, "usd", later, policy, since) == derive_risk(
        objects, "usd", now, policy, since
    )
    if change is not None:
        assert change > now
