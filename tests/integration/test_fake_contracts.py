"""Each in-memory fake in tests/fakes.py behaves like the adapter it stands for: the same contract,
run against both (the adapter on moto). A unit test that passes on a fake then says something
about the deployed code."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import stripe
from botocore.exceptions import ClientError
from revsync.domain.at_risk import KINDS as RISK_KINDS
from revsync.domain.backfill import Run, Segment, allowance, new_totals, plan
from revsync.domain.events import (
    Envelope,
    Observation,
    ParkedEvent,
    observation_of,
    parse_event,
    parse_queue_message,
)
from revsync.domain.history import (
    Checkpoint,
    Contribution,
    HistoryLog,
    Timeline,
    TimelineStart,
    history_entries,
    mrr_timeline,
    revenue_totals,
)
from revsync.domain.history_archive import HistoryChunk, HistoryUpdate, KeptHistory, history_after
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.reconcile import CatchUpJob, PendingWindow, QueuedJob, RecomputeJob, RunEnd, queued_job
from revsync.domain.record import derive_record
from revsync.domain.risk import NO_RISK, derive_risk
from revsync.domain.rollup import WHOLE_RECORD, Group, Piece, Position, RevenuePeriods, RollupKey
from revsync.domain.routing import TenantRoute
from revsync.domain.state import CustomerObjects, apply
from revsync.domain.stored_state import (
    INLINE_INVOICES,
    INLINE_REFUNDS,
    ConcurrentUpdate,
    InvoiceBook,
    RefundBook,
    StateWrite,
)
from revsync.domain.tenancy import Connection, Recompute, SealedSecrets, Tenant
from revsync.errors import CursorRejected
from revsync.infra.secrets import PlatformSecrets, SealedSecretError, WebhookSecretSource
from revsync.services.receive import TenantDirectory
from revsync.store.customer_state import kept_invoice
from revsync.store.rollup import stream_batch
from revsync.store.tenants import ConfigChanged
from revsync.stripe_api.client import SUBSCRIPTION_EXPANSIONS, StripeAccounts
from revsync.stripe_api.pacing import LocalBudget
from revsync.stripe_api.results import KeyCheck, OAuthGrant, StripeAccessError

from local import streams
from local import stripe_shapes as S
from local.environment import REGION
from local.http import http as sandbox_http
from local.inprocess import InProcessStack
from local.stripe_sandbox.server import serve
from local.template import LocalNames
from tests.conftest import FROZEN_NOW
from tests.e2e.conftest import free_port
from tests.fakes import (
    FakeBackfillRuns,
    FakeCatchUpQueue,
    FakeCustomers,
    FakeDirectory,
    FakeEventsProgress,
    FakeQueue,
    FakeRollup,
    FakeSecrets,
    FakeStripe,
    FakeTenants,
)
from tests.integration.conftest import DynamoCustomers, legacy_tenant_secret

pytestmark = pytest.mark.integration

ACCOUNT = "acct_contract"
T0 = FROZEN_NOW - 30 * 86_400


def _fake_or_adapter(
    request: pytest.FixtureRequest, fake: Callable[[], Any], adapter: Callable[[InProcessStack], Any]
) -> Iterator[Any]:
    """The fake, or the adapter as a function's composition root builds it on a fresh stack."""
    if request.param == "fake":
        yield fake()
        return
    with InProcessStack(clock=lambda: FROZEN_NOW) as stack:
        yield adapter(stack)


@pytest.fixture(params=["fake", "dynamodb"])
def customers(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _fake_or_adapter(request, FakeCustomers, lambda _: DynamoCustomers(clock=lambda: FROZEN_NOW))


@pytest.fixture(params=["fake", "dynamodb"])
def progress(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _fake_or_adapter(
        request, FakeEventsProgress, lambda stack: stack.graph("ReconcilerFunction").progress
    )


@pytest.fixture(params=["fake", "dynamodb"])
def tenants(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _fake_or_adapter(request, FakeTenants, lambda stack: stack.graph("TenantApiFunction").tenants)


def _observed(event: dict[str, Any]) -> Observation:
    observation = observation_of(parse_event(json.dumps(event).encode()))
    assert observation is not None
    return observation


def _story() -> list[Observation]:
    """A customer, its subscription, and a paid invoice of it, as webhooks deliver them."""
    customer = S.customer("cus_c", email="c@example.com", metadata={"app_id": "u-c"}, created=T0)
    item = S.subscription_item(S.price(4900, id="price_c"), period_start=T0, period_end=T0 + 30 * 86_400)
    subscription = S.subscription(
        "cus_c", [item], id="sub_c", status="active", created=T0, period_start=T0, period_end=T0 + 30 * 86_400
    )
    invoice = S.invoice(
        "cus_c",
        "sub_c",
        amount_paid=4900,
        paid_at=T0 + 2,
        id="in_c",
        period_start=T0,
        period_end=T0 + 30 * 86_400,
    )
    return [
        _observed(S.event("customer.created", customer, created=T0, account=ACCOUNT)),
        _observed(S.event("customer.subscription.created", subscription, created=T0 + 1, account=ACCOUNT)),
        _observed(S.event("invoice.paid", invoice, created=T0 + 2, account=ACCOUNT)),
    ]


def _save_story(customers: Any) -> tuple[CustomerObjects, KeptHistory, int]:
    """Save the story one observation at a time, as the write path does; the last version."""
    version = 0
    history = KeptHistory()
    for observation in _story():
        stored = customers.load("t", "cus_c")
        objects = stored.objects.with_observation(observation)
        update = history_after(stored.history, history_entries(observation))
        history = update.kept if update is not None else stored.history
        version = customers.save(StateWrite("t", stored, objects, observation, "u-c", 3, history=update))
    return objects, history, version


# --- customers ------------------------------------------------------------------------------------


def test_an_unknown_customer_loads_empty(customers: Any) -> None:
    stored = customers.load("t", "cus_none")
    assert stored.objects == CustomerObjects(customer_id="cus_none")
    assert (stored.version, stored.external_id, stored.config_version, stored.record_version) == (
        None,
        None,
        0,
        None,
    )
    assert stored.history == KeptHistory()
    assert customers.timeline("t", "cus_none") is None


def test_what_is_saved_is_what_loads(customers: Any) -> None:
    objects, history, version = _save_story(customers)

    stored = customers.load("t", "cus_c")

    assert version == 3
    assert (stored.version, stored.external_id, stored.config_version, stored.record_version) == (
        3,
        "u-c",
        3,
        3,
    )
    assert stored.objects.customer == objects.customer
    assert stored.objects.subscriptions == objects.subscriptions
    # A paid invoice loads as its item keeps it: the same snapshot, no event id.
    assert stored.objects.invoices == {"in_c": kept_invoice(objects.invoices["in_c"])}
    assert stored.objects.invoices["in_c"]["snapshot"] == objects.invoices["in_c"]["snapshot"]
    # The record derives the same from what loads as from what was saved.
    trait = "metadata.app_id"
    assert derive_record("t", stored.objects, trait) == derive_record("t", objects, trait)
    assert stored.history == history
    assert customers.timeline("t", "cus_c") == history.timeline
    assert history.timeline == tuple(mrr_timeline("cus_c", _story()[:2])) != ()


def test_what_risk_signals_read_is_saved_and_loads_the_same(customers: Any) -> None:
    """Failed invoices, schedules and payment methods travel in the state item (a few of each)."""
    failed = S.invoice("cus_r", "sub_r", status="open", id="in_failed")
    failed.update(attempt_count=2, amount_remaining=4900, next_payment_attempt=T0 + 3 * 86_400)
    card = S.payment_method("cus_r", exp_month=3, exp_year=2027, id="pm_r")
    customer = {**S.customer("cus_r"), "invoice_settings": {"default_payment_method": "pm_r"}}
    phases = [S.schedule_phase(S.price(4900, id="price_r"), T0, T0 + 30 * 86_400, quantity=2)]
    schedule = S.subscription_schedule("cus_r", phases, status="not_started", id="sub_sched_r")
    metered = S.invoice("cus_r", "sub_r", id="in_metered")  # (and the policy's metered: last_invoice)
    metered["lines"]["data"][0]["pricing"] = {"type": "price_details", "price_details": {"price": "price_m"}}
    objects, stored = CustomerObjects("cus_r"), customers.load("t", "cus_r")
    for at, (event_type, raw) in enumerate(
        [
            ("customer.created", customer),
            ("payment_method.attached", card),
            ("invoice.payment_failed", failed),
            ("subscription_schedule.created", schedule),
            ("invoice.paid", metered),
        ]
    ):
        observation = _observed(S.event(event_type, raw, created=T0 + at, account=ACCOUNT))
        objects = apply(stored.objects, observation).objects
        customers.save(StateWrite("t", stored, objects, observation, "u-r", 3))
        stored = customers.load("t", "cus_r")

    # (A paid invoice is kept compactly, without its event id: what the record reads of it.)
    assert replace(stored.objects, invoices={}) == replace(objects, invoices={})
    assert (len(objects.failed_invoices), len(objects.schedules), len(objects.payment_methods)) == (1, 1, 1)
    assert list(stored.objects.usage) == ["sub_r"]
    assert derive_risk(stored.objects, "usd", T0) == derive_risk(objects, "usd", T0)


def test_a_save_from_a_stale_load_is_refused_and_changes_nothing(customers: Any) -> None:
    _save_story(customers)
    stale = customers.load("t", "cus_c")
    customers.save(StateWrite("t", stale, stale.objects, None, "u-c", 3))

    with pytest.raises(ConcurrentUpdate):
        customers.save(StateWrite("t", stale, stale.objects, None, "u-other", 4))
    assert (customers.load("t", "cus_c").version, customers.load("t", "cus_c").external_id) == (4, "u-c")


def test_a_first_save_is_refused_when_another_saved_first(customers: Any) -> None:
    empty = customers.load("t", "cus_new")
    customers.save(StateWrite("t", empty, empty.objects, None, "stripe:cus_new", 0))

    with pytest.raises(ConcurrentUpdate):
        customers.save(StateWrite("t", empty, empty.objects, None, "stripe:cus_new", 0))


def test_an_unchanged_record_keeps_deriving_from_its_version(customers: Any) -> None:
    _save_story(customers)
    stored = customers.load("t", "cus_c")

    customers.save(StateWrite("t", stored, stored.objects, None, "u-c", 3, record_changed=False))
    carried = customers.load("t", "cus_c")
    customers.save(StateWrite("t", carried, carried.objects, None, "u-c", 3, record_changed=True))

    assert (carried.version, carried.record_version) == (4, 3)
    assert customers.load("t", "cus_c").record_version == 5


def test_the_policy_and_time_a_record_was_derived_with_load_back(customers: Any) -> None:
    _save_story(customers)
    saved_before = customers.load("t", "cus_c")  # saved before policies and risk: the default, unjudged
    assert (saved_before.policy, saved_before.judged_at) == (DEFAULT_POLICY, None)
    policy = RevenuePolicy(churn_after_days=30, churn_at="scheduled", discounts="forever_only")
    stored = customers.load("t", "cus_c")
    customers.save(StateWrite("t", stored, stored.objects, None, "u-c", 4, policy=policy, judged_at=T0 + 9))
    loaded = customers.load("t", "cus_c")
    assert (loaded.policy, loaded.judged_at) == (policy, T0 + 9)
    customers.save(StateWrite("t", loaded, loaded.objects, None, "u-c", 5, judged_at=T0 + 10))
    assert (customers.load("t", "cus_c").policy, customers.load("t", "cus_c").judged_at) == (
        DEFAULT_POLICY,
        T0 + 10,
    )


def _save_review(customers: Any, tenant_id: str, customer_id: str, review_at: int | None) -> None:
    stored = customers.load(tenant_id, customer_id)
    customers.save(StateWrite(tenant_id, stored, stored.objects, None, customer_id, 1, review_at=review_at))


def test_the_customers_due_for_review_are_listed_longest_due_first(customers: Any) -> None:
    for customer_id, review_at in (("cus_a", T0 + 5), ("cus_b", T0 + 1), ("cus_c", None), ("cus_d", T0 + 10)):
        _save_review(customers, "t", customer_id, review_at)
    _save_review(customers, "other", "cus_o", T0)

    assert customers.load("t", "cus_a").review_at == T0 + 5
    assert customers.due_for_review("t", T0 + 5, 10) == ["cus_b", "cus_a"]
    assert customers.due_for_review("t", T0 + 5, 1) == ["cus_b"]
    assert customers.due_for_review("t", T0, 10) == []
    _save_review(customers, "t", "cus_b", None)  # reviewed: nothing due any more
    _save_review(customers, "t", "cus_a", T0 + 20)
    assert customers.due_for_review("t", T0 + 10, 10) == ["cus_d"]
    assert customers.due_for_review("other", T0 + 10, 10) == ["cus_o"]


def test_the_customer_ids_of_a_tenants_records_page_by_cursor(customers: Any) -> None:
    for external_id, customer_id in (("u-1", "cus_x"), ("u-2", "cus_y"), ("u-3", "cus_z")):
        customers.project({**_record(external_id), "stripe_customer_id": customer_id}, 1, None, repair=False)
    customers.project({**_record("u-9"), "tenant_id": "other"}, 1, None, repair=False)

    first, cursor = customers.customer_ids("t", None, 2)
    assert (first, cursor is not None) == (["cus_x", "cus_y"], True)
    rest, end = customers.customer_ids("t", cursor, 2)
    assert (rest, end) == (["cus_z"], None)
    assert customers.customer_ids("t", None, 10) == (["cus_x", "cus_y", "cus_z"], None)
    assert customers.customer_ids("nobody", None, 10) == ([], None)


def test_a_record_that_waits_derives_from_no_version_until_it_is_written(customers: Any) -> None:
    empty = customers.load("t", "cus_w")
    customers.save(StateWrite("t", empty, empty.objects, None, None, 0, record_waits=True))
    waiting = customers.load("t", "cus_w")
    customers.save(StateWrite("t", waiting, waiting.objects, None, "u-w", 0))

    assert (waiting.version, waiting.external_id, waiting.record_version) == (1, None, 0)
    assert customers.load("t", "cus_w").record_version == 2


def test_paid_invoices_past_the_inline_ones_are_kept_as_the_store_keeps_them(customers: Any) -> None:
    """The fifth paid invoice moves the four inline ones to an archive: both load them all back, and
    keep the same book of where each is (what the next save's spill is computed from)."""
    paid = [
        _observed(
            S.event(
                "invoice.paid",
                S.invoice("cus_i", "sub_i", amount_paid=100 * n, paid_at=T0 + n, id=f"in_{n}"),
                created=T0 + n,
                account=ACCOUNT,
            )
        )
        for n in range(1, INLINE_INVOICES + 2)
    ]
    for observation in paid:
        stored = customers.load("t", "cus_i")
        objects = stored.objects.with_observation(observation)
        customers.save(StateWrite("t", stored, objects, observation, "u-i", 0))

    loaded = customers.load("t", "cus_i")

    assert loaded.objects.invoices == {o["snapshot"]["id"]: kept_invoice(o) for o in paid}
    archived = frozenset(f"in_{n}" for n in range(1, INLINE_INVOICES + 1))
    assert loaded.invoices == InvoiceBook(1, (f"in_{INLINE_INVOICES + 1}",), archived)


def test_refunds_past_the_inline_ones_are_kept_as_the_store_keeps_them(customers: Any) -> None:
    """The fifth charge moves the four inline ones to an archive; the first, refunded again, is
    inline again: both load each one's newest observation, and keep the same book."""
    charges = [
        _observed(
            S.event(
                "charge.refunded",
                S.charge("cus_r", amount=1000, amount_refunded=refunded, payment_intent="pi_r", id=f"ch_{n}"),
                created=T0 + at,
                account=ACCOUNT,
            )
        )
        for n, refunded, at in [(n, 10, n) for n in range(1, INLINE_REFUNDS + 2)] + [(1, 500, 99)]
    ]
    for observation in charges:
        stored = customers.load("t", "cus_r")
        objects = stored.objects.with_observation(observation)
        customers.save(StateWrite("t", stored, objects, observation, "u-r", 0))

    loaded = customers.load("t", "cus_r")

    assert loaded.objects.refunds == {o["snapshot"]["id"]: o for o in charges}  # ch_1's newest
    assert loaded.refunds == RefundBook(1, ("ch_1", f"ch_{INLINE_REFUNDS + 1}"))


JAN, FEB = 1_767_225_600, 1_769_904_000  # 2026-01-01, 2026-02-01


def _timeline(points: Timeline) -> HistoryUpdate:
    return HistoryUpdate(KeptHistory(timeline=points))


def test_revenue_totals_sum_the_saved_timelines_of_the_tenant(customers: Any) -> None:
    first = ((JAN, "usd", 4900),)
    second = ((JAN, "usd", 4900), (JAN + 86_400, "usd", 5000), (FEB, "usd", 0))
    stored = customers.load("t", "cus_r")
    customers.save(StateWrite("t", stored, stored.objects, None, "u-r", 0, history=_timeline(first)))
    with pytest.raises(ConcurrentUpdate):  # a stale save changes nothing
        customers.save(StateWrite("t", stored, stored.objects, None, "u-r", 0, history=_timeline(second)))
    assert customers.revenue_totals("t") == {"usd": {"2026-01": Contribution(new=4900, new_customers=1)}}
    customers.save(
        StateWrite(
            "t", customers.load("t", "cus_r"), stored.objects, None, "u-r", 0, history=_timeline(second)
        )
    )
    again = customers.load("t", "cus_r")
    assert again.history.timeline == second
    customers.save(
        StateWrite("t", again, again.objects, None, "u-r", 0)
    )  # no history given: the stored one stays
    other = customers.load("t", "cus_s")
    customers.save(
        StateWrite("t", other, other.objects, None, "u-s", 0, history=_timeline(((FEB, "eur", 300),)))
    )
    never_paid = customers.load("t", "cus_none")
    customers.save(StateWrite("t", never_paid, never_paid.objects, None, "u-n", 0, history=_timeline(())))
    elsewhere = customers.load("other", "cus_r")
    customers.save(StateWrite("other", elsewhere, stored.objects, None, "u-r", 0, history=_timeline(first)))

    assert customers.revenue_totals("t") == {
        "usd": {
            "2026-01": Contribution(new=4900, expansion=100, new_customers=1),
            "2026-02": Contribution(churn=5000, churned_customers=1),
        },
        "eur": {"2026-02": Contribution(new=300, new_customers=1)},
    }
    assert customers.load("t", "cus_none").history.timeline == ()
    assert customers.revenue_totals("nobody") == {}


def _piece(number: int, until: int, start: TimelineStart, points: Timeline) -> HistoryChunk:
    return HistoryChunk(number, until, HistoryLog(), start, points)


def test_a_timeline_in_pieces_is_saved_with_its_state_and_summed_whole(customers: Any) -> None:
    """History archives are written with the state that counts them, or not at all; the timeline and
    the months are those of the pieces put together (a piece without points is out of the index)."""
    day = 86_400
    chunks = (
        _piece(1, JAN + 10 * day, TimelineStart(), ((JAN, "usd", 1000), (JAN + day, "usd", 3000))),
        _piece(2, FEB, TimelineStart("usd", 3000, True), ()),
    )
    recent: Timeline = ((FEB + day, "usd", 0), (FEB + 2 * day, "usd", 500))
    kept = KeptHistory(
        timeline=recent,
        checkpoint=Checkpoint(start=TimelineStart("usd", 3000, True)),
        boundary=FEB,
        archived=2,
    )
    stored = customers.load("t", "cus_p")
    customers.save(
        StateWrite("t", stored, stored.objects, None, "u-p", 0, history=HistoryUpdate(KeptHistory()))
    )
    with pytest.raises(ConcurrentUpdate):  # a stale save writes neither its state nor its chunks
        customers.save(
            StateWrite("t", stored, stored.objects, None, "u-p", 0, history=HistoryUpdate(kept, chunks))
        )
    assert customers.history_archive("t", "cus_p") == []

    current = customers.load("t", "cus_p")
    customers.save(
        StateWrite("t", current, current.objects, None, "u-p", 0, history=HistoryUpdate(kept, chunks))
    )
    loaded = customers.load("t", "cus_p")
    assert loaded.history == kept
    assert sorted(customers.history_archive("t", "cus_p")) == list(chunks)
    # The archive holding a time: the first that ends after it (none after the last).
    assert customers.history_chunk("t", "cus_p", JAN) == chunks[0]
    assert customers.history_chunk("t", "cus_p", JAN + 10 * day) == chunks[1]
    assert customers.history_chunk("t", "cus_p", FEB) is None
    whole = chunks[0].timeline + recent
    assert customers.timeline("t", "cus_p") == whole
    assert customers.revenue_totals("t") == revenue_totals([whole])
    assert customers.revenue_totals("t")["usd"]["2026-02"] == Contribution(
        churn=3000, reactivation=500, churned_customers=1, reactivated_customers=1
    )
    # A rewritten piece (a late observation), with the state: the new content counts.
    rewritten = chunks[0]._replace(timeline=((JAN, "usd", 2000), (JAN + day, "usd", 3000)))
    customers.save(
        StateWrite("t", loaded, loaded.objects, None, "u-p", 0, history=HistoryUpdate(kept, (rewritten,)))
    )
    assert customers.timeline("t", "cus_p") == rewritten.timeline + recent
    assert customers.revenue_totals("t")["usd"]["2026-01"] == Contribution(
        new=2000, expansion=1000, new_customers=1
    )


def _record(external_id: str, mrr: int = 4900) -> Any:
    """The story's record at ``external_id`` (``mrr`` tells one derivation from another)."""
    objects = CustomerObjects(customer_id="cus_c")
    for observation in _story():
        objects = objects.with_observation(observation)
    # A record derived without risk signals reads back with ``risk`` null (one derived with them, its own).
    record = {"risk": None, **derive_record("t", objects, "metadata.app_id")}
    return {**record, "external_id": external_id, "mrr": mrr}


def test_a_record_is_written_only_by_a_newer_derivation_or_a_repair(customers: Any) -> None:
    assert customers.project(_record("u-c", 4900), 2, None, repair=False) is True
    assert customers.projected_version("t", "u-c", "cus_c") == 2

    assert customers.project(_record("u-c", 1), 1, None, repair=False) is False  # older
    assert customers.project(_record("u-c", 2), 2, None, repair=False) is False  # the same version
    assert customers.get_record("t", "u-c")["mrr"] == 4900
    assert customers.project(_record("u-c", 3), 2, None, repair=True) is True  # a repair rewrites it
    assert customers.project(_record("u-c", 4), 3, None, repair=False) is True

    assert customers.get_record("t", "u-c") == _record("u-c", 4)
    assert customers.projected_version("t", "u-c", "cus_c") == 3
    assert customers.projected_version("t", "u-c", "cus_other") is None
    assert customers.projected_version("t", "u-none", "cus_c") is None
    assert customers.get_record("t", "u-none") is None


def test_a_records_risk_reads_back_whole_raised_or_at_rest(customers: Any) -> None:
    at_risk = _record("u-c")
    at_risk["risk"] = {**at_risk["risk"], "in_dunning": True, "dunning_since": T0, "mrr_at_risk": 4900}
    customers.project(at_risk, 1, None, repair=False)
    assert customers.get_record("t", "u-c") == at_risk
    customers.project(_record("u-c"), 2, None, repair=False)  # every signal back at rest
    assert customers.get_record("t", "u-c") == _record("u-c")


@pytest.mark.parametrize("old_key", ["stripe:cus_c", "u-old"])
def test_a_record_that_moves_leaves_nothing_at_its_old_key(customers: Any, old_key: str) -> None:
    customers.project(_risky(old_key, in_dunning=True, dunning_since=T0), 1, None, repair=False)

    assert customers.project(_risky("u-c", in_dunning=True, dunning_since=T0), 2, old_key, repair=False)

    assert customers.get_record("t", old_key) is None
    assert customers.projected_version("t", old_key, "cus_c") is None
    assert customers.get_record("t", "u-c") == _risky("u-c", in_dunning=True, dunning_since=T0)
    assert [c["external_id"] for c in customers.at_risk("t", RISK_KINDS["dunning"], None, 10)[0]] == ["u-c"]


# --- customers at risk ----------------------------------------------------------------------------


def _risky(external_id: str, tenant_id: str = "t", mrr: int = 4900, **signals: Any) -> Any:
    """The story's record at ``external_id`` carrying ``signals`` (the rest of the risk map clear)."""
    record = {**_record(external_id, mrr), "tenant_id": tenant_id, "risk": {**NO_RISK, **signals}}
    return {**record, "stripe_customer_id": f"cus_{external_id}"} if external_id.startswith("p-") else record


def _listed(customers: Any, kind: str, tenant_id: str = "t") -> list[dict[str, Any]]:
    page, following = customers.at_risk(tenant_id, RISK_KINDS[kind], None, 100)
    assert following is None
    return list(page)


SIGNALS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # kind, the record's signals, and what the kind's list shows of the customer
    ("dunning", {"in_dunning": True, "dunning_since": T0}, {"mrr": 4900, "since": T0}),
    (
        "cancel_scheduled",
        {"cancel_scheduled_at": T0 + 1, "mrr_at_risk": 2500},
        {"mrr": 2500, "since": T0 + 1},
    ),
    (
        "change_scheduled",
        {"scheduled_change_at": T0 + 2, "scheduled_mrr": 900},
        {"mrr": 4900, "since": T0 + 2, "scheduled_mrr": 900},
    ),
    ("trial_ending", {"trial_ends_at": T0 + 3}, {"mrr": 4900, "since": T0 + 3}),
    ("card_expiring", {"card_expires_at": T0 + 4}, {"mrr": 4900, "since": T0 + 4}),
]


@pytest.mark.parametrize(("kind", "signals", "shown"), SIGNALS, ids=[s[0] for s in SIGNALS])
def test_a_signal_lists_the_customer_under_its_kind_only_until_it_clears(
    customers: Any, kind: str, signals: dict[str, Any], shown: dict[str, Any]
) -> None:
    customers.project(_risky("u-c"), 1, None, repair=False)
    assert not any(_listed(customers, k) for k in RISK_KINDS)

    customers.project(_risky("u-c", **signals), 2, None, repair=False)
    entry = {"external_id": "u-c", "stripe_customer_id": "cus_c", "currency": "usd", **shown}
    assert {k: _listed(customers, k) for k in RISK_KINDS} == {
        k: [entry] if k == kind else [] for k in RISK_KINDS
    }
    assert customers.get_record("t", "u-c")["risk"] == {**NO_RISK, **signals}

    customers.project(_risky("u-c", mrr=1000), 3, None, repair=False)  # cleared
    assert not any(_listed(customers, k) for k in RISK_KINDS)


def test_dunning_without_a_date_keeps_the_one_listed_else_the_failed_payment_else_when_first_recorded(
    customers: Any,
) -> None:
    def since() -> list[int]:
        return [c["since"] for c in _listed(customers, "dunning")]

    customers.project(_risky("u-c", in_dunning=True, dunning_since=T0), 1, None, repair=False)
    customers.project(_risky("u-c", in_dunning=True), 2, None, repair=False)  # past due became unpaid
    assert since() == [T0]
    customers.project(_risky("u-c"), 3, None, repair=False)
    customers.project(_risky("u-c", in_dunning=True, last_payment_failed_at=T0 + 9), 4, None, repair=False)
    assert since() == [T0 + 9]
    customers.project(_risky("u-c"), 5, None, repair=False)
    customers.project(_risky("u-c", in_dunning=True), 6, None, repair=False)  # delinquent, nothing dated
    assert since() == [FROZEN_NOW]  # the store's clock


def test_pages_list_each_customer_once_newest_first_and_only_the_tenants_own(customers: Any) -> None:
    times = {"p-1": T0 + 3, "p-2": T0 + 1, "p-3": T0 + 3, "p-4": T0 + 2, "p-5": T0 + 1, "p-6": T0}
    for version, (external_id, at) in enumerate(times.items(), start=1):
        customers.project(_risky(external_id, cancel_scheduled_at=at), version, None, repair=False)
    customers.project(_risky("p-9", "u", cancel_scheduled_at=T0 + 5), 9, None, repair=False)

    pages, after = [], None
    while True:
        page, after = customers.at_risk("t", RISK_KINDS["cancel_scheduled"], after, 2)
        pages.append([c["external_id"] for c in page])
        if after is None:
            break
        assert after == (page[-1]["since"], page[-1]["external_id"])
    assert [len(page) for page in pages] == [2, 2, 2]  # the last full page knows it is the last
    listed = [external_id for page in pages for external_id in page]
    assert sorted(listed) == sorted(times)  # each once, whatever the order of equal times
    assert [times[e] for e in listed] == sorted(times.values(), reverse=True)
    assert [c["external_id"] for c in _listed(customers, "cancel_scheduled", "u")] == ["p-9"]


# --- events progress ------------------------------------------------------------------------------


def test_events_progress_starts_empty(progress: Any) -> None:
    state = progress.get("t")
    assert (state.last_event_at, state.reconciled_through, state.last_reconciled_at) == (None, None, None)
    assert (state.recovered, state.running_since, state.backfill_needed) == (0, 0, False)


def test_the_watermark_only_moves_forward(progress: Any) -> None:
    progress.advance_watermark("t", 100)
    progress.advance_watermark("t", 50)
    assert progress.get("t").last_event_at == 100
    progress.advance_watermark("t", 200)
    assert progress.get("t").last_event_at == 200
    assert progress.get("other").last_event_at is None


def test_one_reconcile_runs_at_a_time_until_it_finishes_or_goes_stale(progress: Any) -> None:
    claimed = progress.claim("t", 1000, stale_after=900)
    assert claimed is not None
    assert claimed.running_since == 1000
    assert progress.claim("t", 1500, stale_after=900) is None
    assert progress.claim("t", 1901, stale_after=900) is not None  # the first claim went stale

    progress.finish(
        "t", RunEnd(2000, recovered=3, reconciled_through=1990, backfill_needed=True, pending=None)
    )
    progress.finish(
        "t", RunEnd(2100, recovered=2, reconciled_through=None, backfill_needed=False, pending=None)
    )

    state = progress.get("t")
    assert (state.running_since, state.last_reconciled_at, state.recovered) == (0, 2100, 5)
    assert (state.reconciled_through, state.backfill_needed) == (1990, False)  # a cut-short run keeps it
    assert progress.claim("t", 2101, stale_after=900) is not None
    progress.release("t")
    assert progress.get("t").running_since == 0
    assert progress.get("t").last_reconciled_at == 2100  # a claim let go ran nothing


def test_a_pending_window_is_kept_with_its_cursor_until_a_run_lists_it_to_the_end(progress: Any) -> None:
    first = PendingWindow(1000, 5000, "evt_9", listed=100, recovered=4, gap_too_old=True)
    progress.claim("t", 5000, stale_after=900)
    progress.checkpoint("t", first)
    assert progress.get("t").pending == first
    assert progress.get("t").running_since == 5000  # a checkpoint keeps the claim

    going_on = first._replace(cursor="evt_5", listed=180, continuation="abc", continued_at=5100)
    progress.finish(
        "t", RunEnd(5100, recovered=6, reconciled_through=None, backfill_needed=True, pending=going_on)
    )
    state = progress.claim("t", 5200, stale_after=900)  # the claim gives back what it found
    assert state is not None
    assert (state.pending, state.running_since) == (going_on, 5200)

    progress.finish(
        "t", RunEnd(5300, recovered=1, reconciled_through=5000, backfill_needed=False, pending=None)
    )
    state = progress.get("t")
    assert (state.pending, state.reconciled_through, state.recovered) == (None, 5000, 7)


# --- tenants ----------------------------------------------------------------------------------------


def test_a_saved_tenant_reads_back_the_same(tenants: Any) -> None:
    tenant = Tenant("acme", Connection("connected", "oauth", ACCOUNT, livemode=False, connected_at=T0))
    tenant = tenant.with_config("metadata.app_id")

    tenants.save(tenant, FROZEN_NOW)

    assert tenants.get("acme") == tenant
    assert tenants.get("acme", min_config_version=tenant.config_version) == tenant
    assert tenants.get("nobody") is None


def test_a_policy_and_its_recompute_read_back_the_same_and_a_tenant_without_one_has_the_default(
    tenants: Any,
) -> None:
    tenant = Tenant("acme", Connection("connected", "oauth", ACCOUNT, connected_at=T0))
    tenants.save(tenant, FROZEN_NOW)
    assert tenants.get("acme").policy == DEFAULT_POLICY

    policy = RevenuePolicy(churn_after_days=30, churn_at="scheduled", discounts="none")
    changed = tenant.with_policy(policy)
    changed = replace(changed, recompute=Recompute(changed.config_version, T0, updated_at=T0))
    tenants.change_policy(changed, FROZEN_NOW)

    assert tenants.get("acme") == changed
    assert (changed.config_version, changed.policy) == (tenant.config_version + 1, policy)


def test_a_policy_change_writes_only_the_policy_and_only_over_the_config_it_read(tenants: Any) -> None:
    tenant = Tenant("acme", Connection("connected", "oauth", ACCOUNT, connected_at=T0))
    tenant = replace(tenant.with_config("metadata.app_id"), backfill={"state": "succeeded"})
    tenants.save(tenant, FROZEN_NOW)
    changed = tenant.with_policy(RevenuePolicy(discounts="forever_only"))
    changed = replace(changed, recompute=Recompute(changed.config_version, FROZEN_NOW, updated_at=FROZEN_NOW))

    tenants.change_policy(changed, FROZEN_NOW)

    assert tenants.get("acme") == changed
    # Read before it (config version 1): another change came first.
    late = tenant.with_policy(RevenuePolicy(discounts="none"))
    with pytest.raises(ConfigChanged):
        tenants.change_policy(late, FROZEN_NOW)
    with pytest.raises(ConfigChanged):
        tenants.change_policy(Tenant("nobody").with_policy(RevenuePolicy()), FROZEN_NOW)
    assert tenants.get("acme") == changed
    assert tenants.get("nobody") is None


def test_a_config_change_writes_only_the_config_and_a_save_never_undoes_one(tenants: Any) -> None:
    tenant = Tenant("acme", Connection("connected", "oauth", ACCOUNT, connected_at=T0))
    tenants.save(replace(tenant, backfill={"state": "succeeded"}), FROZEN_NOW)
    read = tenants.get("acme")
    configured = read.with_config("metadata.app_id")

    tenants.change_config(configured, FROZEN_NOW)

    assert tenants.get("acme") == configured
    with pytest.raises(ConfigChanged):  # read before it: another change came first
        tenants.change_config(read.with_config("email"), FROZEN_NOW)
    # A save of the tenant as read before the change (a connection's, say) would undo it: refused.
    with pytest.raises(ConfigChanged):
        tenants.save(replace(read, connection=replace(read.connection, scope="read_only")), FROZEN_NOW)
    policy = configured.with_policy(RevenuePolicy(discounts="none"))
    tenants.change_policy(policy, FROZEN_NOW)
    with pytest.raises(ConfigChanged):
        tenants.save(configured, FROZEN_NOW)
    assert tenants.get("acme") == policy
    # Saved over the config it read, it goes through.
    moved = replace(policy, connection=replace(policy.connection, scope="read_only"))
    tenants.save(moved, FROZEN_NOW)
    assert tenants.get("acme") == moved


def test_a_recompute_advances_only_from_where_it_is(tenants: Any) -> None:
    started = Recompute(config_version=2, started_at=T0, updated_at=T0)
    tenants.save(replace(Tenant("acme"), config_version=2, recompute=started), FROZEN_NOW)
    page = started._replace(cursor="cus_b", customers_done=2, updated_at=T0 + 1)

    assert tenants.advance_recompute("acme", started, page)
    assert not tenants.advance_recompute("acme", started, page)  # a run of it that moved on already
    assert not tenants.advance_recompute("acme", started._replace(config_version=1, cursor="cus_b"), page)
    finished = page._replace(cursor=None, customers_done=3, finished_at=T0 + 2, updated_at=T0 + 2)
    assert tenants.advance_recompute("acme", page, finished)
    assert not tenants.advance_recompute("acme", finished, finished)  # finished: nothing moves it
    assert tenants.get("acme").recompute == finished
    assert not tenants.advance_recompute("nobody", started, page)


# --- the kept backfill run ---------------------------------------------------------------------------


@pytest.fixture(params=["fake", "dynamodb"])
def backfill_runs(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _fake_or_adapter(request, FakeBackfillRuns, lambda stack: stack.graph("ImporterFunction").runs)


def test_a_kept_run_reads_back_the_same_until_cleared(backfill_runs: Any) -> None:
    assert backfill_runs.load("acme") is None
    segments = plan(allowance(25.0, dict.fromkeys(RISK_KINDS, 25.0), 1.0, 40), config_version=3)
    segments[0] = Segment(**{**segments[0], "cursor": "cus_1", "imported": 100, "requests": 1, "busy": 0.5})
    run = Run(
        totals=new_totals(),
        allowance=allowance(100.0, dict.fromkeys(RISK_KINDS, 25.0), 0.4, 150),
        history=1_234,
        generation=2,
        started_at=T0,
        config_version=3,
    )
    backfill_runs.save("acme", run, segments)
    assert backfill_runs.load("acme") == (run, segments)
    assert backfill_runs.load("other") is None
    backfill_runs.save("acme", run, segments[1:])  # the next round's replaces it
    assert backfill_runs.load("acme") == (run, segments[1:])
    backfill_runs.clear("acme")
    assert backfill_runs.load("acme") is None


# --- Stripe -------------------------------------------------------------------------------------
# FakeStripe holds Stripe's objects as the adapter reads them (a subscription with the expansions it
# asks for); StripeAccounts reads the same account from the local Stripe sandbox over HTTP.

KEY = "sk_test_fake_contract"


@pytest.fixture(scope="module")
def stripe_account() -> Iterator[dict[str, Any]]:
    """A sandbox account with a discounted subscription and its paid invoice; its objects' ids."""
    server, app = serve(free_port())
    url = f"http://127.0.0.1:{server.server_port}"
    client = stripe.StripeClient(KEY, base_addresses={"api": url, "connect": url}, max_network_retries=0)

    def call(method: str, path: str, **params: Any) -> Any:
        return client.raw_request(method, path, **params).data

    try:
        product = call("post", "/v1/products", name="Pro")
        recurring = {"interval": "month"}
        price = call(
            "post", "/v1/prices", product=product["id"], unit_amount=4900, currency="usd", recurring=recurring
        )
        coupon = call("post", "/v1/coupons", percent_off=20, duration="forever")
        customer = call("post", "/v1/customers", email="f@example.com", metadata={"app_id": "u-f"})
        items = [{"price": price["id"], "quantity": 2}]
        discounts = [{"coupon": coupon["id"]}]
        subscription = call(
            "post", "/v1/subscriptions", customer=customer["id"], items=items, discounts=discounts
        )
        (invoice,) = call("get", "/v1/invoices", customer=customer["id"])["data"]
        newer = call("post", "/v1/customers", metadata={"app_id": "u-g"})
        gone = call("post", "/v1/customers", metadata={"app_id": "u-gone"})
        call("delete", f"/v1/customers/{gone['id']}")
        expand = {"expand": SUBSCRIPTION_EXPANSIONS}
        # What was given back: a credit note on the paid invoice, a refund of a charge of the customer.
        note = call("post", "/v1/credit_notes", invoice=invoice["id"], amount=100)
        intent = call(
            "post",
            "/v1/payment_intents",
            amount=700,
            currency="usd",
            customer=customer["id"],
            payment_method="pm_card_visa",
            confirm="true",
        )
        refund = call("post", "/v1/refunds", payment_intent=intent["id"], amount=200)
        test_clock = call("post", "/v1/test_helpers/test_clocks", frozen_time=1767225600)
        call("post", f"/v1/test_helpers/test_clocks/{test_clock['id']}/advance", frozen_time=1767312000)
        # What risk signals read: the customer's default card, a schedule's next phase (its prices
        # expanded by the read), an invoice whose payment failed (another customer's declined card).
        card = call("post", "/v1/payment_methods/pm_card_visa/attach", customer=customer["id"])
        default = {"default_payment_method": card["id"]}
        call("post", f"/v1/customers/{customer['id']}", invoice_settings=default)
        phases = [
            {"items": [{"price": price["id"], "quantity": 1}], "iterations": 1},
            {"items": [{"price": price["id"], "quantity": 3}], "iterations": 1},
        ]
        schedule = call("post", "/v1/subscription_schedules", customer=customer["id"], phases=phases)
        declined = call(
            "post",
            "/v1/customers",
            metadata={"app_id": "u-declined"},
            payment_method="pm_card_chargeCustomerFail",
            invoice_settings={"default_payment_method": "pm_card_chargeCustomerFail"},
        )
        call("post", "/v1/subscriptions", customer=declined["id"], items=[{"price": price["id"]}])
        (failed,) = call("get", "/v1/invoices", customer=declined["id"])["data"]
        objects = {
            note["id"]: call("get", f"/v1/credit_notes/{note['id']}"),
            refund["charge"]: call("get", f"/v1/charges/{refund['charge']}"),
            customer["id"]: call("get", f"/v1/customers/{customer['id']}"),
            subscription["id"]: call("get", f"/v1/subscriptions/{subscription['id']}", **expand),
            invoice["id"]: call("get", f"/v1/invoices/{invoice['id']}"),
            coupon["id"]: call("get", f"/v1/coupons/{coupon['id']}"),
            newer["id"]: call("get", f"/v1/customers/{newer['id']}"),
            gone["id"]: call("get", f"/v1/customers/{gone['id']}"),
            test_clock["id"]: call("get", f"/v1/test_helpers/test_clocks/{test_clock['id']}"),
            card["id"]: call("get", f"/v1/payment_methods/{card['id']}"),
            schedule["id"]: call("get", f"/v1/subscription_schedules/{schedule['id']}"),
            price["id"]: call("get", f"/v1/prices/{price['id']}"),
            failed["id"]: call("get", f"/v1/invoices/{failed['id']}"),
            declined["id"]: call("get", f"/v1/customers/{declined['id']}"),
        }
        events = list(reversed(call("get", "/v1/events", limit=100)["data"]))  # oldest first
        account = call("get", "/v1/account")
        yield {
            "url": url,
            "objects": objects,
            "events": events,
            "account": account["id"],
            "created": account["created"],
        }
    finally:
        server.shutdown()
        app.stop()


@pytest.fixture(params=["fake", "sandbox"])
def stripe_reads(request: pytest.FixtureRequest, stripe_account: dict[str, Any]) -> Any:
    if request.param == "fake":
        return FakeStripe(
            objects=dict(stripe_account["objects"]),
            valid_keys={KEY: stripe_account["account"]},
            events=list(stripe_account["events"]),
            account_opened=stripe_account["created"],
        )
    return StripeAccounts(
        platform_key=lambda: KEY, tenant_api_key=lambda _: KEY, api_base=stripe_account["url"]
    )


def _api_key_tenant() -> Tenant:
    return Tenant("f", Connection("connected", "api_key", None, secret_name="revsync/f/stripe"))


def _id_of(stripe_account: dict[str, Any], kind: str) -> str:
    return next(str(i) for i, o in stripe_account["objects"].items() if o["object"] == kind)


@pytest.mark.parametrize(
    "kind",
    [
        "customer",
        "subscription",
        "invoice",
        "credit_note",
        "charge",
        "subscription_schedule",
        "payment_method",
    ],
)
def test_a_fetch_reads_the_object_as_stripe_has_it(
    stripe_reads: Any, stripe_account: dict[str, Any], kind: str
) -> None:
    object_id = _id_of(stripe_account, kind)

    snapshot = stripe_reads.fetch(_api_key_tenant(), kind, object_id)

    assert snapshot is not None
    assert (snapshot["object"], snapshot["id"]) == (kind, object_id)
    if kind == "subscription":  # its discount read whole: the coupon's terms, not just an id
        (discount,) = snapshot["discounts"]
        assert Decimal(discount["coupon"]["percent_off"]) == 20
    if kind == "customer":  # its default payment method read whole: the card's expiry
        assert snapshot["default_payment_method_object"]["exp_year"] is not None
    if kind == "subscription_schedule":  # its next phase's prices read whole: their amounts
        (item,) = snapshot["next_phase"]["items"]
        assert (item["quantity"], item["price"]["unit_amount"]) == (3, "4900")
    assert snapshot == FakeStripe(objects=dict(stripe_account["objects"])).fetch(
        _api_key_tenant(), kind, object_id
    )
    assert stripe_reads.fetch(_api_key_tenant(), kind, f"{object_id}_gone") is None


def test_a_failed_invoice_reads_its_attempts(stripe_reads: Any, stripe_account: dict[str, Any]) -> None:
    failed = next(
        o for o in stripe_account["objects"].values() if o["object"] == "invoice" and o["status"] == "open"
    )

    snapshot = stripe_reads.fetch(_api_key_tenant(), "invoice", failed["id"])

    assert snapshot is not None
    assert snapshot["object"] == "invoice"
    assert (snapshot["attempt_count"], snapshot["amount_remaining"]) == (1, 4900)
    assert snapshot == FakeStripe(objects=dict(stripe_account["objects"])).fetch(
        _api_key_tenant(), "invoice", failed["id"]
    )


def test_a_test_clock_reads_its_frozen_time(stripe_reads: Any, stripe_account: dict[str, Any]) -> None:
    clock_id = _id_of(stripe_account, "test_helpers.test_clock")

    assert stripe_reads.test_clock_time(_api_key_tenant(), clock_id) == 1767312000  # as advanced
    assert stripe_reads.test_clock_time(_api_key_tenant(), "clock_gone") is None


def test_lists_and_coupons_read_the_same(stripe_reads: Any, stripe_account: dict[str, Any]) -> None:
    tenant, reference = _api_key_tenant(), FakeStripe(objects=dict(stripe_account["objects"]))
    subscription_id, invoice_id = _id_of(stripe_account, "subscription"), _id_of(stripe_account, "invoice")
    coupon_id = _id_of(stripe_account, "coupon")

    items = stripe_reads.subscription_items(tenant, subscription_id)
    lines = stripe_reads.invoice_lines(tenant, invoice_id)
    coupons = stripe_reads.coupons(tenant, {coupon_id, "coupon_gone"})

    assert [item["quantity"] for item in items] == [2]
    assert items == reference.subscription_items(tenant, subscription_id)
    assert [line["subscription"] for line in lines.lines] == [subscription_id]
    # The current shape names a line's price by id only: it may bill usage (its subscription tells).
    assert [line["subscription"] for line in lines.usage] == [subscription_id]
    assert lines == reference.invoice_lines(tenant, invoice_id)
    assert set(coupons) == {coupon_id}
    assert coupons == reference.coupons(tenant, {coupon_id})


def test_events_list_newest_first_filtered_by_time_and_type(
    stripe_reads: Any, stripe_account: dict[str, Any]
) -> None:
    events = stripe_account["events"]
    types = ("customer.created", "invoice.paid")

    page, more = stripe_reads.list_events(
        _api_key_tenant(), created_gte=events[0]["created"], types=types, starting_after=None
    )

    assert more is False
    assert [e["type"] for e in page] == [
        "customer.created",  # the declined card's
        "invoice.paid",  # the schedule's first phase
        "customer.created",
        "customer.created",
        "invoice.paid",
        "customer.created",
    ]
    assert [e["id"] for e in page] == [e["id"] for e in reversed(events) if e["type"] in types]
    after, _ = stripe_reads.list_events(
        _api_key_tenant(), created_gte=events[0]["created"], types=types, starting_after=page[1]["id"]
    )
    assert [e["id"] for e in after] == [e["id"] for e in page[2:]]
    with pytest.raises(CursorRejected):  # a cursor naming an event Stripe does not have
        stripe_reads.list_events(
            _api_key_tenant(), created_gte=events[0]["created"], types=types, starting_after="evt_gone"
        )


def test_an_api_key_is_checked_the_same(stripe_reads: Any, stripe_account: dict[str, Any]) -> None:
    assert stripe_reads.check_api_key(KEY) == KeyCheck(account_id=stripe_account["account"], livemode=False)
    with pytest.raises(StripeAccessError) as refused:
        stripe_reads.check_api_key("not_a_key")
    assert refused.value.code == "invalid_api_key"


def test_the_accounts_start_reads_as_stripe_has_it(stripe_reads: Any, stripe_account: dict[str, Any]) -> None:
    """The backfill's lower bound: the account's ``created``, for Connect the connected account's."""
    assert stripe_reads.account_created(_api_key_tenant()) == stripe_account["created"]

    connected = f"acct_opened{id(stripe_reads) % 1000:03d}"
    code = _authorization_code(stripe_account["url"], connected)
    if isinstance(stripe_reads, FakeStripe):
        stripe_reads.grants[code] = connected
    stripe_reads.oauth_exchange(code)
    # Its history begins a year before the platform's account opened: the account is older still.
    first = stripe_account["created"] - 400 * 86_400
    sandbox_http(
        "POST",
        f"{stripe_account['url']}/_sandbox/seed",
        {"customers": 1, "start": first, "end": first + 60},
        {"Authorization": f"Bearer {KEY}", "Stripe-Account": connected},
    )
    if isinstance(stripe_reads, FakeStripe):
        stripe_reads.account_opened = first - 30 * 86_400
    opened = stripe_reads.account_created(Tenant("c", Connection("connected", "oauth", connected)))
    assert opened is not None
    assert opened < first < stripe_account["created"]


class _RecordingBudget(LocalBudget):
    def __init__(self, rate: float = 0.0) -> None:
        super().__init__(rate=rate, clock=lambda: float(FROZEN_NOW))
        self.reserved: list[str | None] = []

    def reserve(self, endpoint: str | None) -> float:
        self.reserved.append(endpoint)
        return super().reserve(endpoint)


def _budgeted(url: str, budget: LocalBudget) -> StripeAccounts:
    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"waited {seconds} s")

    return StripeAccounts(
        platform_key=lambda: KEY,
        tenant_api_key=lambda _: KEY,
        api_base=url,
        budget=lambda account, rate: budget,
        clock=lambda: float(FROZEN_NOW),
        sleep=no_sleep,
    )


def test_the_accounts_start_is_one_read_within_the_accounts_budget(stripe_account: dict[str, Any]) -> None:
    budget = _RecordingBudget()

    _budgeted(stripe_account["url"], budget).account_created(_api_key_tenant())

    assert budget.reserved == ["GET /v1/account", None]  # its endpoint's clock, then the account's


def test_a_busy_budget_leaves_the_accounts_start_unknown_rather_than_waiting(
    stripe_account: dict[str, Any],
) -> None:
    budget = _RecordingBudget(rate=0.01)  # a slot each 100 s
    budget.reserve(None)  # taken: the next is 100 s away

    accounts = _budgeted(stripe_account["url"], budget)
    assert accounts.account_created(_api_key_tenant()) is None  # the backfill plans without it


# --- the events queue and its dead letters -----------------------------------------------------------


class Queues(NamedTuple):
    """The receiver's queue ports, and what a consumer of each queue receives."""

    events: Any  # EventQueue
    dead_letters: Any  # ParkedEvents
    sent: Callable[[], list[Any]]
    parked: Callable[[], list[Any]]


def _received(stack: InProcessStack, logical_id: str) -> list[Any]:
    messages = stack.client("sqs").receive_message(
        QueueUrl=stack.queue_url(logical_id), MaxNumberOfMessages=10
    )
    return [parse_queue_message(m["Body"]) for m in messages.get("Messages", [])]


@pytest.fixture(params=["fake", "sqs"])
def queues(request: pytest.FixtureRequest) -> Iterator[Queues]:
    if request.param == "fake":
        fake = FakeQueue()
        yield Queues(fake, fake, lambda: list(fake.sent), lambda: list(fake.parked))
        return
    with InProcessStack(clock=lambda: FROZEN_NOW) as stack:
        receiver = stack.graph("WebhookFunction")
        yield Queues(
            receiver.queue,
            receiver.parked,
            lambda: _received(stack, "EventsQueue"),
            lambda: _received(stack, "EventsDeadLetterQueue"),
        )


def test_a_queued_event_is_received_once_however_often_stripe_retries(queues: Queues) -> None:
    observation = _story()[0]
    envelope = Envelope(
        v=1,
        tenant_id="t",
        event_id="evt_once",
        event_type="customer.created",
        livemode=False,
        observation=observation,
        account=ACCOUNT,
    )

    queues.events.send(envelope)
    queues.events.send(envelope)  # Stripe's retry of the same event: FIFO deduplicates it by id

    assert queues.sent() == [envelope]


def test_another_tenants_event_with_the_same_id_is_its_own(queues: Queues) -> None:
    """Deduplication is per message group (the queue's DeduplicationScope), and a group is one tenant's."""
    observation = _story()[0]
    envelopes = [
        Envelope(
            v=1,
            tenant_id=tenant,
            event_id="evt_shared",
            event_type="customer.created",
            livemode=False,
            observation=observation,
            account=ACCOUNT,
        )
        for tenant in ("t", "u")
    ]

    for envelope in envelopes:
        queues.events.send(envelope)

    assert sorted(queues.sent(), key=lambda e: e["tenant_id"]) == envelopes


def test_a_parked_delivery_is_received_whole(queues: Queues) -> None:
    parked = ParkedEvent(v=1, parked=True, tenant_id=None, body="bm90IGpzb24=", reason="not_json")

    queues.dead_letters.park(parked)

    assert queues.parked() == [parked]
    assert queues.sent() == []


def _authorization_code(sandbox_url: str, account_id: str) -> str:
    """What the browser brings back from Stripe's authorize page: the sandbox approves at once."""
    query = {"client_id": "ca_contract", "redirect_uri": "https://p.example/cb", "stripe_account": account_id}
    connection = http.client.HTTPConnection(urlsplit(sandbox_url).netloc, timeout=30)
    connection.request("GET", f"/oauth/authorize?{urlencode(query)}")
    location = connection.getresponse().getheader("Location") or ""
    connection.close()
    return dict(parse_qsl(urlsplit(location).query))["code"]


def test_connect_sends_the_browser_to_the_same_authorization(
    stripe_reads: Any, stripe_account: dict[str, Any]
) -> None:
    url = urlsplit(stripe_reads.oauth_authorize_url("ca_contract", "st.ate", "https://p.example/cb?x=1"))

    assert url.path == "/oauth/authorize"
    assert dict(parse_qsl(url.query)) == {
        "client_id": "ca_contract",
        "response_type": "code",
        "scope": "read_write",
        "state": "st.ate",
        "redirect_uri": "https://p.example/cb?x=1",
    }


def test_an_authorization_code_is_exchanged_once(stripe_reads: Any, stripe_account: dict[str, Any]) -> None:
    account_id = f"acct_contract{len(stripe_account['events'])}{id(stripe_reads) % 1000:03d}"
    code = _authorization_code(stripe_account["url"], account_id)
    if isinstance(stripe_reads, FakeStripe):
        stripe_reads.grants[code] = account_id

    assert stripe_reads.oauth_exchange(code) == OAuthGrant(
        account_id=account_id, livemode=False, scope="read_write"
    )
    with pytest.raises(StripeAccessError) as refused:
        stripe_reads.oauth_exchange(code)
    assert refused.value.code == "invalid_code"
    stripe_reads.oauth_deauthorize("ca_contract", account_id)
    stripe_reads.oauth_deauthorize("ca_contract", account_id)  # already gone: nothing to undo, no error


def test_a_sample_is_the_newest_customers_deleted_ones_left_out(
    stripe_reads: Any, stripe_account: dict[str, Any]
) -> None:
    sample = stripe_reads.sample_customers(_api_key_tenant(), 10)

    assert [c["metadata"]["app_id"] for c in sample] == ["u-declined", "u-g", "u-f"]
    newest = stripe_reads.sample_customers(_api_key_tenant(), 1)
    assert [c["metadata"]["app_id"] for c in newest] == ["u-declined"]


# --- the receiver's tenant directory ------------------------------------------------------------------


class _SavingDirectory:
    """The receiver's directory on DynamoDB, with tenants saved the way the tenant routes save them."""

    def __init__(self, stack: InProcessStack) -> None:
        self.store = stack.graph("TenantApiFunction").tenants
        self.directory: TenantDirectory = stack.graph("WebhookFunction").tenants

    def save(self, tenant: Tenant) -> None:
        self.store.save(tenant, FROZEN_NOW)

    def by_account(self, account_id: str) -> TenantRoute | None:
        return self.directory.by_account(account_id)

    def by_tenant(self, tenant_id: str) -> TenantRoute | None:
        return self.directory.by_tenant(tenant_id)


@pytest.fixture(params=["fake", "dynamodb"])
def directory(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _fake_or_adapter(request, FakeDirectory, _SavingDirectory)


def test_a_connect_tenant_is_routed_by_its_account_and_an_api_key_tenant_by_its_path(directory: Any) -> None:
    directory.save(Tenant("acme", Connection("connected", "oauth", ACCOUNT, livemode=True)))
    directory.save(Tenant("direct", Connection("connected", "api_key", secret_name="revsync/direct")))
    sealed = SealedSecrets(b"sealed key", b"sealed webhook secret")
    directory.save(Tenant("sealed", Connection("connected", "api_key", sealed=sealed)))

    assert directory.by_account(ACCOUNT) == TenantRoute("acme", "connected", True, "oauth")
    assert directory.by_tenant("acme") == TenantRoute("acme", "connected", True, "oauth")
    assert directory.by_tenant("direct") == TenantRoute(
        "direct", "connected", False, "api_key", "revsync/direct"
    )
    # The webhook secret's ciphertext comes with the route (no second read); the key's does not.
    assert directory.by_tenant("sealed") == TenantRoute(
        "sealed", "connected", False, "api_key", sealed_webhook_secret=b"sealed webhook secret"
    )
    assert (directory.by_account("acct_nobody"), directory.by_tenant("nobody")) == (None, None)


def test_a_tenant_that_moves_leaves_its_old_account_unrouted(directory: Any) -> None:
    directory.save(Tenant("acme", Connection("connected", "oauth", ACCOUNT)))
    directory.save(Tenant("acme", Connection("connected", "oauth", "acct_next")))
    assert directory.by_account(ACCOUNT) is None
    assert directory.by_account("acct_next") == TenantRoute("acme", "connected", False, "oauth")

    directory.save(Tenant("acme", Connection("connected", "api_key", secret_name="revsync/acme")))
    assert directory.by_account("acct_next") is None
    assert directory.by_tenant("acme") == TenantRoute("acme", "connected", False, "api_key", "revsync/acme")


def test_a_revoked_connection_is_routed_as_revoked(directory: Any) -> None:
    directory.save(Tenant("acme", Connection("connected", "oauth", ACCOUNT)))
    directory.save(Tenant("acme", Connection("revoked", "oauth", ACCOUNT)))

    assert directory.by_account(ACCOUNT) == TenantRoute("acme", "revoked", False, "oauth")
    assert directory.by_tenant("acme") == TenantRoute("acme", "revoked", False, "oauth")


# --- webhook signing secrets ----------------------------------------------------------------------


LEGACY = "revsync/local/tenants/legacy"


@pytest.fixture(params=["fake", "aws"])
def signing_secrets(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """The receiver's secrets port and the tenant API's sealing. A tenant saved before sealed secrets
    has a Secrets Manager secret (``LEGACY``) being rolled: two webhook secrets at once."""
    if request.param == "fake":
        fake = FakeSecrets(["whsec_local"], {LEGACY: ["whsec_old", "whsec_new"]})
        yield fake, fake
        return
    with InProcessStack(clock=lambda: FROZEN_NOW) as stack:  # the platform's secret: whsec_local, in SSM
        assert legacy_tenant_secret("legacy", "rk_test_legacy", "whsec_old, whsec_new") == LEGACY
        # The receiver's port around the tenant API's sealing (one object, as the fake is: a value
        # retired is forgotten by the same cache that kept it).
        sealer = stack.graph("TenantApiFunction").secrets
        platform = PlatformSecrets(
            webhook_secret=stack.graph("WebhookFunction").settings.webhook_secret_param
        )
        yield WebhookSecretSource(platform, sealer), sealer


def _sealed_route(tenant_id: str, sealed: bytes) -> TenantRoute:
    return TenantRoute(tenant_id, "connected", False, "api_key", sealed_webhook_secret=sealed)


def test_the_secrets_that_may_sign_a_webhook(signing_secrets: tuple[Any, Any]) -> None:
    secrets, sealer = signing_secrets
    sealed = sealer.seal("direct", "rk_test_direct", "whsec_old, whsec_new")

    assert secrets.platform() == ["whsec_local"]
    assert secrets.tenant(_sealed_route("direct", sealed.webhook_secret)) == ["whsec_old", "whsec_new"]
    assert secrets.tenant(TenantRoute("legacy", "connected", False, "api_key", LEGACY)) == [
        "whsec_old",
        "whsec_new",
    ]
    assert secrets.tenant(TenantRoute("acme", "connected", False, "oauth")) == []


# --- the catch-up queue -----------------------------------------------------------------------------


class CatchUps(NamedTuple):
    queue: Any  # CatchUpQueue
    received: Callable[[], list[QueuedJob]]


def _received_jobs(stack: InProcessStack) -> list[QueuedJob]:
    jobs: list[QueuedJob] = []
    sqs, url = stack.client("sqs"), stack.queue_url("ReconcileQueue")
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            jobs.append(queued_job(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return jobs


@pytest.fixture(params=["fake", "sqs"])
def catch_ups(request: pytest.FixtureRequest) -> Iterator[CatchUps]:
    if request.param == "fake":
        fake = FakeCatchUpQueue()
        yield CatchUps(fake, lambda: list(iter(fake.take, None)))
        return
    with InProcessStack(clock=lambda: FROZEN_NOW) as stack:
        yield CatchUps(stack.graph("ReconcilerFunction").queue, lambda: _received_jobs(stack))


def test_the_schedule_queues_a_tenant_once_a_period_and_each_tenant_in_its_order(catch_ups: CatchUps) -> None:
    period = 900
    now = period * 2_000_000
    jobs = [CatchUpJob(f"t{n}", "schedule", now) for n in range(12)]  # more than one batch of 10
    catch_ups.queue.send(jobs)
    catch_ups.queue.send([CatchUpJob("t3", "schedule", now + 60)])  # a retried schedule, same period
    catch_ups.queue.send([CatchUpJob("t3", "continue", now + 61, "tok")])  # a run's continuation

    received = catch_ups.received()

    assert sorted(received) == sorted([*jobs, CatchUpJob("t3", "continue", now + 61, "tok")])
    t3 = [job for job in received if job.tenant_id == "t3"]
    assert [job.reason for job in t3] == ["schedule", "continue"]  # one tenant's jobs in order


def test_a_recompute_job_is_queued_once_and_in_its_tenants_order(catch_ups: CatchUps) -> None:
    now = 900 * 2_000_000
    jobs: list[QueuedJob] = [
        CatchUpJob("t1", "schedule", now),
        RecomputeJob("t1", 4, now + 1, None, "a1"),
        RecomputeJob("t1", 4, now + 2, "cus_" + "x" * 200, "a2"),  # a cursor of any length
        CatchUpJob("t2", "schedule", now),
    ]
    catch_ups.queue.send(jobs)
    catch_ups.queue.send([jobs[2]])  # its sender's retry
    catch_ups.queue.send([jobs[2]._replace(queued_at=now + 3, token="a3")])  # another job of that page

    received = catch_ups.received()

    assert [job for job in received if job.tenant_id == "t1"] == [
        *jobs[:3],
        jobs[2]._replace(queued_at=now + 3, token="a3"),
    ]
    assert [job for job in received if job.tenant_id == "t2"] == [jobs[3]]


def test_a_sealed_secret_opens_only_for_its_tenant_and_kind(signing_secrets: tuple[Any, Any]) -> None:
    secrets, sealer = signing_secrets
    sealed = sealer.seal("direct", "rk_test_direct", "whsec_direct")
    assert secrets.tenant(_sealed_route("direct", sealed.webhook_secret)) == ["whsec_direct"]
    # Copied to another tenant's item (opened for direct just now: the cache must not answer), or
    # the API key's ciphertext put where the webhook secret goes.
    for route in (_sealed_route("other", sealed.webhook_secret), _sealed_route("direct", sealed.api_key)):
        with pytest.raises(SealedSecretError):
            secrets.tenant(route)


def test_a_retired_secret_is_gone_and_retiring_it_again_is_harmless(signing_secrets: tuple[Any, Any]) -> None:
    secrets, sealer = signing_secrets
    route = TenantRoute("legacy", "connected", False, "api_key", LEGACY)
    assert secrets.tenant(route) == ["whsec_old", "whsec_new"]
    sealer.retire(LEGACY)
    sealer.retire(LEGACY)
    # Secrets Manager's ResourceNotFoundException (a ClientError), or the fake's LookupError: the
    # receiver answers either with a 503, as for any failure to read a secret.
    with pytest.raises((ClientError, LookupError)):
        secrets.tenant(route)


# --- the revenue rollup: the stream of the store's saves, and the revenue table -------------------


def _saved_pieces(customers: Any) -> list[tuple[Piece | None, Piece | None]]:
    """Each save's old and new piece, as the rollup reads them from the sync table's stream (from
    DynamoDB's stream on moto, through the event Lambda's mapping would deliver)."""
    if isinstance(customers, FakeCustomers):
        changes = customers.stream
    else:
        events: list[dict[str, Any]] = []

        def capture(function: str, event: dict[str, Any]) -> dict[str, Any]:
            events.append(event)
            return {"state": {}, "batchItemFailures": []}

        streams.mapping("RollupFunction", LocalNames(region=REGION, queue_urls={}), capture, REGION).drain()
        changes = [change for event in events for change in stream_batch(event).changes]
    return [(c.old, c.new) for c in changes if (c.old, c.new) != (None, None)]


def _timeline_only(timeline: Timeline) -> HistoryUpdate:
    return HistoryUpdate(KeptHistory(timeline=timeline))


def test_the_stream_of_saves_holds_each_saves_old_and_new_piece(customers: Any) -> None:
    first = ((JAN, "usd", 4900),)
    second = ((JAN, "usd", 4900), (FEB, "usd", 0))
    stored = customers.load("t", "cus_p")
    customers.save(StateWrite("t", stored, stored.objects, None, "u-p", 0, history=_timeline_only(first)))
    with pytest.raises(ConcurrentUpdate):  # a stale save is no change: nothing in the stream
        customers.save(
            StateWrite("t", stored, stored.objects, None, "u-p", 0, history=_timeline_only(second))
        )
    again = customers.load("t", "cus_p")
    customers.save(StateWrite("t", again, again.objects, None, "u-p", 0))  # the timeline kept: old == new
    latest = customers.load("t", "cus_p")
    customers.save(StateWrite("t", latest, again.objects, None, "u-p", 0, history=_timeline_only(second)))
    never = customers.load("u", "cus_n")
    customers.save(StateWrite("u", never, never.objects, None, "u-n", 0, history=_timeline_only(())))

    assert _saved_pieces(customers) == [
        (None, Piece("t", first)),
        (Piece("t", first), Piece("t", first)),
        (Piece("t", first), Piece("t", second)),
        (None, Piece("u", ())),
    ]


def test_a_spill_streams_the_archived_piece_and_the_states_with_where_each_starts(customers: Any) -> None:
    """History in pieces (revsync.domain.history_archive): the archive's piece and the state's,
    each with its start, so the rollup counts the two as it counted the whole."""
    head, tail = ((JAN, "usd", 4900),), ((FEB, "usd", 0),)
    stored = customers.load("t", "cus_s")
    customers.save(
        StateWrite("t", stored, stored.objects, None, "u-s", 0, history=_timeline_only(head + tail))
    )
    start = TimelineStart("usd", 4900, True)
    kept = KeptHistory(timeline=tail, checkpoint=Checkpoint(start=start), boundary=FEB, archived=1)
    chunk = HistoryChunk(1, FEB, HistoryLog(), TimelineStart(), head)
    spilled = customers.load("t", "cus_s")
    customers.save(
        StateWrite("t", spilled, spilled.objects, None, "u-s", 0, history=HistoryUpdate(kept, (chunk,)))
    )

    pieces = _saved_pieces(customers)

    assert pieces[0] == (None, Piece("t", head + tail))
    assert sorted(pieces[1:], key=repr) == sorted(
        [(None, Piece("t", head)), (Piece("t", head + tail), Piece("t", tail, start))], key=repr
    )


@pytest.fixture(params=["fake", "dynamodb"])
def rollup(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _fake_or_adapter(request, FakeRollup, lambda stack: stack.graph("RollupFunction").rollup)


def _group(first: int, last: int, changes: dict[RollupKey, Contribution], as_of: int) -> Group:
    return Group(Position(first, 0), Position(last, WHOLE_RECORD), 1, 0, changes, as_of)


NEW = Contribution(new=4900, new_customers=1)
CHURN = Contribution(churn=4900, churned_customers=1)


def test_a_group_is_applied_once_with_its_shards_position(rollup: Any) -> None:
    january = {RollupKey("t", "usd", "2026-01"): NEW, RollupKey("t", "usd", "2026"): NEW}
    group = _group(10, 12, january, JAN + 5)

    assert rollup.apply("shard-a", group, FROZEN_NOW) is None
    assert rollup.apply("shard-a", group, FROZEN_NOW) == Position(12, WHOLE_RECORD)  # again: found
    inside = _group(11, 11, january, JAN + 6)  # a batch retried from inside the group
    assert rollup.apply("shard-a", inside, FROZEN_NOW) == Position(12, WHOLE_RECORD)
    part = Group(Position(13, 0), Position(13, 0), 2, 0, {RollupKey("t", "usd", "2026-02"): CHURN}, FEB)
    assert rollup.apply("shard-a", part, FROZEN_NOW) is None
    assert rollup.apply("shard-a", part, FROZEN_NOW) == Position(13, 0)  # its next part may follow
    assert rollup.apply("shard-b", group, FROZEN_NOW) is None  # another shard's position is its own

    periods = rollup.periods("t", "2026-01", "2026-03")
    assert periods.totals == {
        "usd": {"2026-01": Contribution(*(2 * v for v in NEW)), "2026-02": CHURN},
    }
    assert periods.as_of == FEB
    assert rollup.periods("nobody", "2026-01", "2026-03") == RevenuePeriods({}, None)


def test_periods_are_years_before_the_first_month_then_months_up_to_the_last(rollup: Any) -> None:
    changes: dict[RollupKey, Contribution] = {}
    for currency in ("usd", "eur"):
        for period in ("2024-05", "2024", "2025-11", "2025", "2026-01", "2026-04", "2026-07", "2026"):
            changes[RollupKey("t", currency, period)] = NEW
    changes[RollupKey("other", "usd", "2025")] = NEW
    rollup.apply("shard-a", _group(1, 1, changes, JAN), FROZEN_NOW)

    found = rollup.periods("t", "2026-03", "2026-04")

    expected = {"2024": NEW, "2025": NEW, "2026-01": NEW, "2026-04": NEW}
    assert found.totals == {"usd": expected, "eur": expected}
    assert found.as_of == JAN
