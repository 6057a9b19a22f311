"""The ordering contract for one object: newest wins, terminal stays terminal, ties are resolved."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source
from revsync.domain.snapshots import parse_customer, parse_invoice, parse_subscription
from revsync.domain.state import CustomerObjects, apply, decide

from local import stripe_shapes as S


def sub_obs(status: str, at: int, source: Source = "updated", quantity: int = 1) -> Observation:
    item = {**S.subscription_item(S.price(1000, id="price_1"), quantity=quantity), "id": "si_1"}
    raw = S.subscription("cus_1", [item], id="sub_1", status=status)
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)


def cus_obs(name: str, at: int, source: Source = "updated", deleted: bool = False) -> Observation:
    return Observation(
        snapshot=parse_customer(S.customer("cus_1", name=name), deleted=deleted),
        observed_at=at,
        source=source,
        event_id=None,
    )


@pytest.mark.parametrize(
    ("current", "incoming", "action", "reason"),
    [
        (None, sub_obs("active", 10), "apply", "new"),
        (sub_obs("active", 10), sub_obs("active", 10), "keep", "duplicate"),
        (sub_obs("active", 10), sub_obs("active", 20), "apply", "newer_identical"),
        (sub_obs("active", 20), sub_obs("past_due", 10), "keep", "older"),
        (sub_obs("active", 10), sub_obs("past_due", 20), "apply", "newer"),
        (sub_obs("canceled", 10, "deleted"), sub_obs("active", 20), "keep", "terminal"),
        (sub_obs("active", 20), sub_obs("canceled", 10, "deleted"), "apply", "became_terminal"),
        (
            sub_obs("incomplete", 10, "created"),
            sub_obs("active", 10, "updated"),
            "apply",
            "later_in_lifecycle",
        ),
        (
            sub_obs("active", 10, "updated"),
            sub_obs("incomplete", 10, "created"),
            "keep",
            "earlier_in_lifecycle",
        ),
        (sub_obs("active", 10), sub_obs("past_due", 10), "refetch", "same_second"),
        (sub_obs("active", 10, "fetched"), sub_obs("past_due", 10), "refetch", "tie_with_fetched"),
        (sub_obs("active", 10), sub_obs("past_due", 10, "fetched"), "apply", "fetched"),
        (cus_obs("a", 50, "deleted", deleted=True), cus_obs("b", 60), "keep", "terminal"),
        (cus_obs("a", 50), cus_obs("a", 40, "deleted", deleted=True), "apply", "became_terminal"),
    ],
)
def test_decide(current: Observation | None, incoming: Observation, action: str, reason: str) -> None:
    decision = decide(current, incoming)
    assert (decision.action, decision.reason) == (action, reason)


def test_unpaid_invoice_is_not_stored() -> None:
    raw = S.invoice("cus_1", "sub_1", status="open")
    outcome = apply(
        CustomerObjects("cus_1"),
        Observation(snapshot=parse_invoice(raw), observed_at=1, source="updated", event_id=None),
    )
    assert not outcome.changed
    assert outcome.decision.reason == "invoice_not_paid"
    assert outcome.objects.invoices == {}


def test_paid_invoice_is_counted_once() -> None:
    invoice = parse_invoice(S.invoice("cus_1", "sub_1", id="in_1"))
    first = apply(
        CustomerObjects("cus_1"),
        Observation(snapshot=invoice, observed_at=5, source="updated", event_id="e1"),
    )
    again = apply(
        first.objects, Observation(snapshot=invoice, observed_at=5, source="updated", event_id="e2")
    )
    assert first.changed
    assert not again.changed
    assert list(again.objects.invoices) == ["in_1"]


# Property: for one object, the stored state after a set of observations does not depend on their
# order or repetition, when same-second ties are settled by a fetch returning the truth.

_STATUSES = ["incomplete", "trialing", "active", "past_due", "unpaid", "canceled"]


@st.composite
def histories(draw: Any) -> list[Observation]:
    """A subscription's true history: strictly ordered states, several sharing a second."""
    length = draw(st.integers(min_value=1, max_value=6))
    statuses = draw(st.lists(st.sampled_from(_STATUSES[:-1]), min_size=length, max_size=length))
    if draw(st.booleans()):
        statuses.append("canceled")
    at, history = 100, []
    for index, status in enumerate(statuses):
        at += draw(st.integers(min_value=0, max_value=2))
        source: Source = "created" if index == 0 else ("deleted" if status == "canceled" else "updated")
        history.append(sub_obs(status, at, source, quantity=index + 1))  # quantity makes each state distinct
    return history


def _replay(observations: list[Observation], truth: Observation) -> Observation | None:
    objects = CustomerObjects("cus_1")
    for observation in observations:
        outcome = apply(objects, observation)
        if outcome.decision.action == "refetch":
            fetched = Observation(
                snapshot=truth["snapshot"],
                observed_at=truth["observed_at"] + 1,
                source="fetched",
                event_id=None,
            )
            outcome = apply(objects, fetched)
        objects = outcome.objects
    return objects.subscriptions.get("sub_1")


@settings(max_examples=200, deadline=None)
@given(history=histories(), data=st.data())
def test_end_state_is_independent_of_order_and_duplicates(history: list[Observation], data: Any) -> None:
    truth = history[-1]
    shuffled = data.draw(st.permutations(history + data.draw(st.lists(st.sampled_from(history), max_size=4))))
    end = _replay(list(shuffled), truth)
    assert end is not None
    assert end["snapshot"] == truth["snapshot"]


def test_every_permutation_of_a_same_second_burst_ends_at_the_truth() -> None:
    burst = [
        sub_obs("incomplete", 100, "created", 1),
        sub_obs("active", 100, "updated", 2),
        sub_obs("past_due", 100, "updated", 3),
    ]
    for order in itertools.permutations(burst):
        end = _replay(list(order), burst[-1])
        assert end is not None
        assert end["snapshot"] == burst[-1]["snapshot"]


def test_a_state_that_returns_within_a_second_still_ends_at_the_truth() -> None:
    # active -> past_due -> active, all in one second (found by the order-independence property).
    created, middle, back = (
        sub_obs("active", 100, "created", 1),
        sub_obs("past_due", 100, "updated", 1),
        sub_obs("active", 100, "updated", 1),
    )
    for order in itertools.permutations([created, middle, back]):
        end = _replay(list(order), back)
        assert end is not None
        assert end["snapshot"] == back["snapshot"]


def test_identical_content_later_in_the_lifecycle_moves_the_watermark() -> None:
    decision = decide(sub_obs("active", 100, "created"), sub_obs("active", 100, "updated"))
    assert (decision.action, decision.reason) == ("apply", "newer_identical")
