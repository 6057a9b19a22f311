"""The revenue rollup (revsync.domain.rollup, revsync.services.rollup): every stream record applied
exactly once, however the stream's batches are cut, failed (before or after a write landed), retried
whole, from the record reported, shorter, longer or split in two, and however the webhooks before
them were shuffled or repeated: the months always equal the recomputation from the stored timelines."""

from __future__ import annotations

import calendar
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation
from revsync.domain.history import (
    FROM_NOTHING,
    Contribution,
    TimelineStart,
    contributions,
    movements,
    revenue_months,
)
from revsync.domain.rollup import (
    WHOLE_RECORD,
    Group,
    Piece,
    PieceChange,
    Position,
    RollupKey,
    change_of,
    plan_group,
)
from revsync.domain.snapshots import parse_subscription
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.revenue import revenue
from revsync.services.rollup import RollupInterrupted, apply_changes, seed
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeRollup, FakeStripe, FakeTenants

JAN = calendar.timegm((2025, 1, 1, 0, 0, 0))
DAY = 86_400


def _months(rollup: FakeRollup, tenant_id: str) -> dict[str, dict[str, Contribution]]:
    """The rollup's month items (zeros left out), as currency -> month -> totals."""
    found: dict[str, dict[str, Contribution]] = {}
    for (tenant, currency, period), total in rollup.periods_kept.items():
        if tenant == tenant_id and len(period) == 7 and any(total):
            found.setdefault(currency, {})[period] = total
    return found


def _recomputed(customers: FakeCustomers, tenant_id: str) -> dict[str, dict[str, Contribution]]:
    return {
        currency: {month: total for month, total in months.items() if any(total)}
        for currency, months in customers.revenue_totals(tenant_id).items()
        if any(any(total) for total in months.values())
    }


def _years_sum_their_months(rollup: FakeRollup) -> None:
    years: dict[tuple[str, str, str], Contribution] = {}
    for (tenant, currency, period), total in rollup.periods_kept.items():
        if len(period) == 7:
            key = (tenant, currency, period[:4])
            years[key] = years.get(key, Contribution()) + total
    kept = {key: total for key, total in rollup.periods_kept.items() if len(key[2]) == 4}
    assert {k: v for k, v in kept.items() if any(v)} == {k: v for k, v in years.items() if any(v)}


# --- one record ---------------------------------------------------------------------------------


WHOLE = (
    (JAN + DAY, "usd", 1000),
    (JAN + 40 * DAY, "usd", 2500),
    (JAN + 200 * DAY, "usd", 0),
    (JAN + 400 * DAY, "usd", 1500),
    (JAN + 500 * DAY, "eur", 1400),
)


def _as_periods(tenant_id: str, pieces: Sequence[Piece]) -> dict[RollupKey, Contribution]:
    total: dict[RollupKey, Contribution] = {}
    for piece in pieces:
        for (currency, month), part in contributions(movements(piece.timeline, piece.start)).items():
            for period in (month, month[:4]):
                key = RollupKey(tenant_id, currency, period)
                total[key] = total.get(key, Contribution()) + part
    return {key: value for key, value in total.items() if any(value)}


def _summed(changes: Sequence[dict[RollupKey, Contribution]]) -> dict[RollupKey, Contribution]:
    total: dict[RollupKey, Contribution] = {}
    for change in changes:
        for key, value in change.items():
            total[key] = total.get(key, Contribution()) + value
    return {key: value for key, value in total.items() if any(value)}


def test_a_records_change_is_the_new_pieces_months_minus_the_old_ones() -> None:
    versions = [WHOLE[:cut] for cut in range(len(WHOLE) + 1)]
    pieces = [Piece("t", version) for version in versions]
    steps = [change_of(None, pieces[0])] + [change_of(a, b) for a, b in pairwise(pieces)]
    assert _summed(steps) == _as_periods("t", [pieces[-1]])
    assert change_of(pieces[3], pieces[3]) == {}  # a state write that moves no MRR adds nothing
    assert _summed([change_of(None, pieces[-1]), change_of(pieces[-1], None)]) == {}  # an item deleted


def test_moving_old_history_into_another_piece_changes_no_month() -> None:
    """The history archive's move (helper "history"): the older points into an archive item, the
    state keeping the rest from where they ended (TimelineStart). Both records together add nothing,
    in either order, and the archive's alone is a transient double count undone by the state's."""
    whole = Piece("t", WHOLE)
    archive = Piece("t", WHOLE[:3])
    rest = Piece("t", WHOLE[3:], TimelineStart("usd", 0, ever_paid=True))
    assert _summed([change_of(None, archive), change_of(whole, rest)]) == {}
    assert _as_periods("t", [archive, rest]) == _as_periods("t", [whole])


def test_a_piece_written_before_the_rollup_counts_from_its_next_write() -> None:
    """An old image without ``rollup_tenant`` is no piece (store.rollup.piece_of): the record adds
    the new piece whole, which is what the rollup never counted."""
    later = Piece("t", WHOLE)
    assert _summed([change_of(None, later)]) == _as_periods("t", [later])
    assert change_of(None, Piece("t", ())) == {}


def test_periods_are_the_month_and_its_year() -> None:
    change = change_of(None, Piece("t", ((JAN + 40 * DAY, "usd", 4900),)))
    assert change == {
        RollupKey("t", "usd", "2025-02"): Contribution(new=4900, new_customers=1),
        RollupKey("t", "usd", "2025"): Contribution(new=4900, new_customers=1),
    }


# --- groups ---------------------------------------------------------------------------------------


def _record(sequence: int, old: Piece | None, new: Piece | None, at: int = 0) -> PieceChange:
    return PieceChange(f"ev-{sequence}", sequence, at or sequence, old, new)


def _monthly(tenant: str, month_index: int, mrr: int) -> Piece:
    return Piece(tenant, ((JAN + month_index * 31 * DAY, "usd", mrr),))


def test_a_group_takes_records_until_its_periods_would_not_fit_one_write() -> None:
    records = [_record(i + 1, None, _monthly(f"t{i}", i, 100)) for i in range(60)]  # 2 periods each
    changes = [change_of(r.old, r.new) for r in records]

    first = plan_group(records, changes, 0)
    second = plan_group(records, changes, first.end)

    assert len(first.changes) <= 99
    assert (first.start, first.through, first.end) == (Position(1, 0), Position(49, WHOLE_RECORD), 49)
    assert (second.start, second.through, second.end) == (Position(50, 0), Position(60, WHOLE_RECORD), 60)
    assert first.as_of == 49


def test_a_record_too_big_for_one_write_is_applied_in_parts() -> None:
    # Ten years of monthly changes of one customer: 120 months and 10 years, 130 periods.
    long = Piece("t", tuple((JAN + i * 31 * DAY, "usd", 1000 + i) for i in range(120)))
    records = [_record(1, None, long), _record(2, None, _monthly("u", 0, 5))]
    changes = [change_of(r.old, r.new) for r in records]
    parts = [plan_group(records, changes, 0, part) for part in (0, 1)]
    assert [(g.start, g.through, g.parts) for g in parts] == [
        (Position(1, 0), Position(1, 0), 2),
        (Position(1, 1), Position(1, WHOLE_RECORD), 2),
    ]
    assert sum(len(g.changes) for g in parts) == len(changes[0]) > 99

    rollup = FakeRollup()
    outcome = apply_changes("shard-1", records, rollup, now=0)
    assert (outcome.written, outcome.skipped) == (3, 0)
    assert apply_changes("shard-1", records, rollup, now=0).skipped == 1  # again: found applied at once
    assert rollup.periods_kept == _summed(changes)
    # Interrupted after its first part: the rest is applied from there, once.
    halfway = FakeRollup()
    with pytest.raises(RollupInterrupted):
        apply_changes("shard-1", records, Flaky(halfway, fail={1}), now=0)
    assert apply_changes("shard-1", records, halfway, now=0).written == 2
    assert halfway.periods_kept == rollup.periods_kept


# --- deliveries: Lambda's mapping over one shard, with failures ----------------------------------


@dataclass
class Flaky:
    """The rollup, with its n-th write (from 0) failing before it lands (``fail``) or after it
    landed, its answer lost (``lost``: a timeout after DynamoDB committed)."""

    inner: FakeRollup
    fail: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    calls: int = 0

    def apply(self, shard_id: str, group: Group, expires_at: int) -> Position | None:
        call, self.calls = self.calls, self.calls + 1
        if call in self.fail:
            raise TimeoutError("write failed")
        found = self.inner.apply(shard_id, group, expires_at)
        if call in self.lost:
            raise TimeoutError("answer lost")
        return found


def deliver(
    records: Sequence[PieceChange], writer: Any, sizes: Sequence[int], retry: str, limit: int = 99
) -> int:
    """What Lambda's DynamoDB mapping does with one shard: a batch from the checkpoint (its size the
    next of ``sizes``: a retried batch may be cut shorter or longer); the checkpoint moves past it on
    success, and on failure: to the reported record (``retry="report"``: ReportBatchItemFailures),
    nowhere (``"whole"``: the function raised, the batch again) or, ``"bisect"``, the batch split in
    two, each half retried on its own (BisectBatchOnFunctionError). Returns the batches invoked."""
    position = invocations = 0
    halves: list[tuple[int, int]] = []
    while position < len(records):
        start, stop = halves.pop(0) if halves else (position, position + sizes[invocations % len(sizes)])
        batch = records[start:stop]
        invocations += 1
        try:
            apply_changes("shard-1", batch, writer, now=0, limit=limit)
        except RollupInterrupted as exc:
            if retry == "report":
                position = next(i for i, r in enumerate(records) if r.sequence == exc.sequence)
            elif retry == "bisect":  # a batch of one is retried as it is
                middle = start + max(1, len(batch) // 2)
                halves = (
                    [(start, middle), (middle, stop), *halves] if len(batch) > 1 else [(start, stop), *halves]
                )
            continue
        position = max(position, start + len(batch))
    return invocations


def _story_records() -> list[PieceChange]:
    """Several customers' timelines growing one point at a time (each record the state's previous
    and new piece), with writes that move nothing in between."""
    rng = random.Random(5)
    current: dict[str, Piece | None] = {}
    records: list[PieceChange] = []
    for step in range(120):
        customer = f"cus_{rng.randrange(8)}"
        before = current.get(customer)
        points = before.timeline if before else ()
        if rng.random() < 0.3:
            after = before  # e.g. a paid invoice: the state is written, its timeline is not changed
        else:
            at = JAN + step * 9 * DAY
            after = Piece("t", (*points, (at, "usd", rng.choice([0, 1000, 2500, 4000]))))
        current[customer] = after
        records.append(_record(step + 1, before, after, at=JAN + step * 9 * DAY))
    return records


@pytest.mark.parametrize("retry", ["report", "whole", "bisect"])
@pytest.mark.parametrize(
    ("fail", "lost", "sizes"),
    [
        (set(), set(), [1000]),
        ({0}, set(), [1000]),  # the first write fails: nothing landed
        ({2, 5}, set(), [50, 7, 1000]),  # a failure after two groups landed, retried in a shorter batch
        (set(), {0, 3}, [1000]),  # a write landed but its answer was lost: retried, found, skipped
        ({4}, {1, 2}, [13, 40, 1]),
    ],
)
def test_retried_batches_apply_every_record_once(
    fail: set[int], lost: set[int], sizes: list[int], retry: str
) -> None:
    records = _story_records()
    rollup = FakeRollup()
    # Groups of at most 9 periods (the service's own limit is 99): several to a batch, so that a
    # failure lands between two of them.
    deliver(records, Flaky(rollup, fail, lost), sizes, retry, limit=9)
    assert {k: v for k, v in rollup.periods_kept.items() if any(v)} == _summed(
        [change_of(r.old, r.new) for r in records]
    )


def test_records_delivered_again_from_anywhere_add_nothing() -> None:
    records = _story_records()
    rollup = FakeRollup()
    first = apply_changes("shard-1", records, rollup, now=0, limit=9)
    kept = dict(rollup.periods_kept)
    assert first.skipped == 0
    assert first.written > 3
    for start in (0, 1, 17, 64, len(records) - 1):  # from a group's start or from inside one
        again = apply_changes("shard-1", records[start:], rollup, now=0, limit=9)
        assert (again.written, again.skipped) == (0, 1)  # found applied at once, through its end
    assert rollup.periods_kept == kept
    more = [*records, _record(999, None, _monthly("t", 3, 700))]  # retried with a record after them
    assert apply_changes("shard-1", more[50:], rollup, now=0, limit=9).written == 1
    assert rollup.periods_kept[RollupKey("t", "usd", "2025")] == kept[
        RollupKey("t", "usd", "2025")
    ] + Contribution(new=700, new_customers=1)
    # Another shard's records have positions of their own.
    other = apply_changes("shard-2", [_record(5, None, _monthly("t", 4, 100))], rollup, now=0)
    assert other.written == 1


# --- the whole path: webhooks in any order, then the stream in any cut, with failures --------------

_STEPS: list[tuple[str, dict[str, Any]]] = [
    ("created", {}),
    ("updated", {"quantity": 3}),
    ("updated", {"quantity": 2}),
    ("deleted", {"status": "canceled"}),
    ("updated", {"status": "active"}),
]


def _observation(customer: int, subscription: str, step: int, at: int) -> Observation:
    source, change = _STEPS[step]
    currency = "eur" if customer == 2 else "usd"
    raw = S.subscription(
        f"cus_{customer}",
        [
            S.subscription_item(
                S.price(1000 + 500 * customer, currency=currency), quantity=change.get("quantity", 1)
            )
        ],
        id=f"sub_{customer}_{subscription}",
        status=change.get("status", "active"),
        currency=currency,
    )
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)  # type: ignore[typeddict-item]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from("ab"), st.integers(0, len(_STEPS) - 1)),
        min_size=1,
        max_size=14,
    ),
    st.randoms(use_true_random=False),
    st.lists(st.integers(1, 12), min_size=1, max_size=4),
    st.sets(st.integers(0, 30), max_size=4),
    st.sets(st.integers(0, 30), max_size=4),
    st.sampled_from(["report", "whole", "bisect"]),
    st.sampled_from([3, 9, 99]),
)
def test_any_history_any_delivery_gives_the_recomputed_months(
    steps: list[tuple[int, str, int]],
    rng: random.Random,
    sizes: list[int],
    fail: set[int],
    lost: set[int],
    retry: str,
    limit: int,
) -> None:
    """Random subscription histories of three customers (one in euros) over two years, their
    webhooks shuffled and partly repeated, through the write path; then the stream of its state
    writes through the rollup in batches of random sizes, writes failing before or after landing,
    batches retried whole, from the record reported or split. The rollup's months, its years and the
    ``/revenue`` answer equal the recomputation from the stored timelines."""
    events = [
        _observation(customer, subscription, step, JAN + index * 23 * DAY + customer)
        for index, (customer, subscription, step) in enumerate(steps)
    ]
    shuffled = [*events, *rng.sample(events, k=len(events) // 2)]
    rng.shuffle(shuffled)
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    customers = FakeCustomers()
    for observation in shuffled:
        apply_observation(
            "acme",
            observation,
            tenants=FakeTenants({"acme": tenant}),
            customers=customers,
            stripe=FakeStripe(),
        )

    rollup = FakeRollup()
    deliver(customers.stream, Flaky(rollup, fail - lost, lost), sizes, retry, limit)

    assert _months(rollup, "acme") == _recomputed(customers, "acme")
    _years_sum_their_months(rollup)
    recomputed = customers.revenue_totals("acme")
    for first, last in (("2025-01", "2026-12"), ("2026-02", "2026-07")):
        answer = revenue("acme", {"from": first, "to": last}, totals=rollup, now=JAN)
        if answer["currency"] is not None:
            assert answer["months"] == revenue_months(recomputed.get(answer["currency"], {}), first, last)


# --- seeding ------------------------------------------------------------------------------------


@dataclass
class _Pages:
    pages: list[int]
    asked: list[str | None] = field(default_factory=list)

    def count_page(self, tenant_id: str, cursor: str | None) -> tuple[int, str | None]:
        self.asked.append(cursor)
        index = 0 if cursor is None else int(cursor)
        following = None if index + 1 >= len(self.pages) else str(index + 1)
        return self.pages[index], following


def test_seeding_goes_page_by_page_and_stops_in_time_with_its_cursor() -> None:
    pieces = _Pages([3, 0, 2, 5])
    clock = iter([False, True])
    first = seed("acme", pieces, None, lambda: next(clock))
    assert first == {"tenant_id": "acme", "counted": 3, "cursor": "2"}
    rest = seed("acme", pieces, first["cursor"], lambda: False)
    assert rest == {"tenant_id": "acme", "counted": 7, "cursor": None}
    assert pieces.asked == [None, "1", "2", "3"]


def test_empty_timeline_pieces_and_nothing_counted_start_nowhere() -> None:
    assert change_of(None, None) == {}
    assert Piece("t", ()).start == FROM_NOTHING


def test_the_settings_page_says_how_recent_the_figures_are() -> None:
    from revsync.services.settings_page import revenue_section

    month = {"month": "2026-01", "mrr_start": 0, "new": 4900, "expansion": 0, "reactivation": 0}
    month |= {"contraction": 0, "churn": 0, "mrr_end": 4900, "customers_start": 0, "customers_end": 1}
    shown = revenue_section({"currency": "usd", "months": [month], "as_of": 1_767_225_600})
    assert '<p id="mrr-as-of">Includes changes made up to 2026-01-01 00:00:00 UTC.</p>' in shown
    assert "mrr-as-of" not in revenue_section({"currency": "usd", "months": [month], "as_of": None})
    assert "mrr-as-of" in revenue_section({"currency": None, "months": [], "as_of": 1_767_225_600})
