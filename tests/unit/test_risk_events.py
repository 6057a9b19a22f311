"""``Customer Risk Changed`` (docs/contracts.md, "Revenue policy and risk signals"): its detail, and
through the write path at most once per change and never for one that did not happen, whatever the
order, the duplicates and the races between workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.changes import risk_change
from revsync.domain.events import Observation
from revsync.domain.record import CustomerRecord, derive_record
from revsync.domain.risk import NO_RISK
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.state import CustomerObjects
from revsync.domain.stored_state import StateWrite
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeFeed, FakeStripe, FakeTenants

T0 = 1_750_000_000
DAY = 86_400
NOW = T0 + 30 * DAY  # every delivery handled then: the order alone differs
TENANTS = FakeTenants({"acme": Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")})


def _customer(at: int, delinquent: bool = False) -> Observation:
    raw = S.customer("cus_1", delinquent=delinquent)
    return Observation(snapshot=parse_customer(raw), observed_at=at, source="updated", event_id=None)


def _subscription(at: int, sub_id: str = "sub_1", quantity: int = 1, **kwargs: Any) -> Observation:
    item = {**S.subscription_item(S.price(1000), quantity=quantity), "id": f"si_{sub_id}"}
    raw = S.subscription("cus_1", [item], id=sub_id, created=T0, **kwargs)
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source="updated", event_id=None)


def _record(*observations: Observation) -> CustomerRecord:
    objects = CustomerObjects("cus_1")
    for observation in observations:
        objects = objects.with_observation(observation)
    return derive_record("acme", objects, "id")


# --- the detail -----------------------------------------------------------------------------------


def test_the_detail_names_each_changed_signal_before_and_after() -> None:
    before = _record(_subscription(T0))
    after = _record(_subscription(T0 + DAY, status="past_due", cancel_at_period_end=True))

    assert risk_change(before, after, T0 + DAY) == {
        "tenant_id": "acme",
        "external_id": "cus_1",
        "stripe_customer_id": "cus_1",
        "observed_at": T0 + DAY,
        "changed": {
            "in_dunning": {"before": False, "after": True},
            "cancel_scheduled_at": {"before": None, "after": T0 + DAY},
            "mrr_at_risk": {"before": 0, "after": 1000},
        },
    }


def test_no_detail_when_no_signal_changed() -> None:
    before = _record(_subscription(T0))
    assert risk_change(before, _record(_subscription(T0 + DAY, quantity=2)), T0 + DAY) is None
    assert risk_change(None, before, T0) is None  # a new customer without a signal


def test_a_new_customer_s_signals_change_from_none() -> None:
    record = _record(_customer(T0, delinquent=True))
    detail = risk_change(None, record, T0)
    assert detail is not None
    assert detail["changed"] == {"in_dunning": {"before": False, "after": True}}


# --- through the write path -----------------------------------------------------------------------

# A customer's risk over a month: dunning, a scheduled cancellation, then neither; and a second
# subscription trialing to an end a few days after NOW.
STORY = [
    _customer(T0),
    _subscription(T0 + 1),
    _subscription(T0 + 2 * DAY, status="past_due"),
    _customer(T0 + 3 * DAY, delinquent=True),
    _subscription(T0 + 5 * DAY, cancel_at_period_end=True, canceled_at=T0 + 5 * DAY),
    _customer(T0 + 6 * DAY),
    _subscription(T0 + 8 * DAY, sub_id="sub_2", status="trialing", trial_end=NOW + 3 * DAY),
    _subscription(T0 + 9 * DAY),
]


@dataclass
class _Racing(FakeCustomers):
    """The store, with another worker's delivery saved between a load and the save that follows it
    (that save is refused, and the write path loads again): ``racers`` in turn, one a save."""

    racers: list[Callable[[], None]] = field(default_factory=list)
    _racing: bool = False

    def save(self, write: StateWrite) -> int:
        if self.racers and not self._racing:
            self._racing = True
            try:
                self.racers.pop(0)()
            finally:
                self._racing = False
        return super().save(write)


def _deliver(observation: Observation, customers: FakeCustomers, feed: FakeFeed) -> None:
    apply_observation(
        "acme",
        observation,
        tenants=TENANTS,
        customers=customers,
        stripe=FakeStripe(),
        clock=lambda: NOW,
        changes=feed,
    )


def _chained(feed: FakeFeed, final: dict[str, Any]) -> None:
    """Each signal's published changes chain from none to the final value, each a real change: so
    each change is published once, and none that did not happen."""
    values = dict(NO_RISK)
    for detail in feed.risk_changes:
        assert detail["changed"], detail
        for name, change in detail["changed"].items():
            assert change["before"] == values[name] != change["after"], (name, feed.risk_changes)
            values[name] = change["after"]
    assert values == final


@settings(max_examples=60)
@given(data=st.data())
def test_risk_events_are_published_once_per_change_in_any_order_duplicated_and_raced(data: Any) -> None:
    order = data.draw(st.permutations(range(len(STORY))))
    repeats = data.draw(st.lists(st.sampled_from(range(len(STORY))), max_size=6))
    racing = data.draw(st.lists(st.sampled_from(range(len(STORY))), max_size=4))
    customers, feed = _Racing(), FakeFeed()
    customers.racers = [lambda i=i: _deliver(STORY[i], customers, feed) for i in racing]  # type: ignore[misc]

    for index in [*order, *repeats]:
        _deliver(STORY[index], customers, feed)

    final = customers.records[("acme", "cus_1")]
    assert final["risk"] == {**NO_RISK, "trial_ends_at": NOW + 3 * DAY}
    _chained(feed, dict(final["risk"]))
    # Delivered all again: nothing changes, nothing is published.
    published = len(feed.published)
    for observation in STORY:
        _deliver(observation, customers, feed)
    assert len(feed.published) == published


def test_in_order_each_change_is_published_when_it_happens() -> None:
    customers, feed = FakeCustomers(), FakeFeed()
    for observation in STORY:
        _deliver(observation, customers, feed)
    assert [(d["observed_at"], sorted(d["changed"])) for d in feed.risk_changes] == [
        (T0 + 2 * DAY, ["dunning_since", "in_dunning"]),
        (T0 + 5 * DAY, ["cancel_scheduled_at", "dunning_since", "mrr_at_risk"]),
        (T0 + 6 * DAY, ["in_dunning"]),
        (T0 + 8 * DAY, ["trial_ends_at"]),
        (T0 + 9 * DAY, ["cancel_scheduled_at", "mrr_at_risk"]),
    ]
    _chained(feed, {**NO_RISK, "trial_ends_at": NOW + 3 * DAY})
