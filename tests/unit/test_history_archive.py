"""A customer's MRR history kept in pieces (revsync.domain.history_archive), as pure rules.

Random stories of a few subscriptions and the customer over months (quantity changes, cancellations,
a customer discount, imports that enter years back) are kept one observation at a time, in order or
shuffled with duplicates (late observations then fall into archived periods), through the same JSON
the store writes. At every step the state holds fewer than ``SPILL_AT`` seconds; at the end the pieces
give the timeline of the whole set, start where the previous piece ended, and add up to its months;
in order, every chunk is written once, and shuffled, a chunk is rewritten only by an observation
that falls before its end.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source
from revsync.domain.history import (
    Contribution,
    HistoryLog,
    TimelineStart,
    contributions,
    history_entries,
    movements,
    mrr_timeline,
    piece_end,
)
from revsync.domain.history_archive import (
    KEEP_FEWEST,
    KEEP_MOST,
    SPILL_AT,
    HistoryChunk,
    KeptHistory,
    history_after,
    needs_archive,
    whole_timeline,
    without_archived,
)
from revsync.domain.snapshots import parse_customer, parse_subscription

from local import stripe_shapes as S

T0 = 1_767_225_600
DAY = 86_400


def _sub(
    sub_id: str, at: int, quantity: int, status: str = "active", source: Source = "updated"
) -> Observation:
    raw = S.subscription(
        "cus_1",
        [{**S.subscription_item(S.price(1000, id="price_1"), quantity=quantity), "id": f"si_{sub_id}"}],
        id=sub_id,
        status=status,
        created=T0 - 400 * DAY,  # an import enters it there, long before the chunks' start
        ended_at=at if status == "canceled" else None,
    )
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)


def _customer(at: int, percent_off: int | None) -> Observation:
    coupon = S.coupon(percent_off=percent_off, id=f"co_{percent_off}") if percent_off else None
    discount = {**S.discount(coupon, customer="cus_1"), "id": f"di_{percent_off}"} if coupon else None
    raw = S.customer("cus_1", the_discount=discount)
    return Observation(snapshot=parse_customer(raw), observed_at=at, source="updated", event_id=None)


@st.composite
def stories(draw: Any) -> list[tuple[Observation, bool]]:
    """(observation, imported) in the order they happened."""
    found: list[tuple[Observation, bool]] = []
    at = T0
    for _ in range(draw(st.integers(10, 60))):
        at += draw(st.sampled_from([1, 3_600, DAY, DAY, 2 * DAY, 9 * DAY]))
        kind = draw(st.sampled_from(["a", "a", "a", "a", "b", "b", "customer", "import"]))
        if kind == "customer":
            found.append((_customer(at, draw(st.sampled_from([None, 10, 50]))), False))
        elif kind == "import":  # a backfill reads the subscription: it also enters at its start
            found.append((_sub("sub_old", at, draw(st.integers(1, 3)), source="fetched"), True))
        else:
            status = draw(st.sampled_from(["active", "active", "active", "past_due", "canceled"]))
            found.append((_sub(f"sub_{kind}", at, draw(st.integers(1, 6)), status), False))
    if draw(st.booleans()):  # a backfill at the end: its start is in the oldest chunk
        found.append((_sub("sub_old", at + DAY, draw(st.integers(1, 3)), source="fetched"), True))
    return found


def _as_stored(kept: KeptHistory) -> KeptHistory:
    """Through the JSON the store writes (the document, the timeline and start attributes)."""
    document = json.loads(json.dumps(kept.to_json()))
    timeline = None
    if kept.timeline is not None:
        timeline = tuple((int(at), c, int(mrr)) for at, c, mrr in json.loads(json.dumps(kept.timeline)))
    currency, mrr, ever_paid = json.loads(json.dumps(kept.checkpoint.start))
    return KeptHistory.from_json(document, timeline, TimelineStart(currency, mrr, ever_paid))


class Customer:
    """The store's part, in memory: the state's history and the chunks, written as the store would."""

    def __init__(self) -> None:
        self.kept = KeptHistory()
        self.chunks: dict[int, HistoryChunk] = {}
        self.writes: Counter[int] = Counter()
        self.full_reads = 0
        self.late_rewrites_ok = True

    def keep(self, observation: Observation, imported: bool) -> None:
        """As the write path does: an addition before the boundary reads the chunk holding its time,
        and the whole archive only if that chunk does not hold it already."""
        additions = history_entries(observation, imported=imported)
        archive = None
        if needs_archive(self.kept, additions):
            holding = [self.chunks[n] for n in range(1, self.kept.archived + 1)]  # a superset suffices
            left = without_archived(self.kept, additions, holding)
            if left is None:
                archive = list(self.chunks.values())
                self.full_reads += 1
            else:
                additions = left
        update = history_after(self.kept, additions, archive)
        if update is None:
            return
        for chunk in update.chunks:
            if chunk.number in self.chunks:  # a rewrite: only what an addition before its end changes
                earliest = min(at for at, _, _ in additions)
                self.late_rewrites_ok &= earliest < self.chunks[chunk.number].until
                assert chunk.until == self.chunks[chunk.number].until
            else:
                assert chunk.number == len(self.chunks) + 1
            self.chunks[chunk.number] = chunk._replace(
                log=HistoryLog.from_json(json.loads(json.dumps(chunk.log.to_json())))
            )
            self.writes[chunk.number] += 1
        self.kept = _as_stored(update.kept)
        assert len({e.at for e in self.kept.log.entries}) < SPILL_AT

    def pieces(self) -> list[tuple[TimelineStart, tuple[tuple[int, str | None, int], ...]]]:
        ordered = [self.chunks[n] for n in range(1, self.kept.archived + 1)]
        assert self.kept.timeline is not None
        return [(c.start, c.timeline) for c in ordered] + [(self.kept.checkpoint.start, self.kept.timeline)]


def _check(customer: Customer, story: list[tuple[Observation, bool]]) -> None:
    everything = HistoryLog().with_entries(
        e for o, imported in story for e in history_entries(o, imported=imported)
    )
    whole = mrr_timeline("cus_1", everything.observations())
    assert whole_timeline(customer.kept, list(customer.chunks.values())) == tuple(whole)
    _check_pieces(customer, tuple(whole))


def _check_pieces(customer: Customer, whole: tuple[tuple[int, str | None, int], ...]) -> None:
    summed: dict[Any, Contribution] = {}
    previous = TimelineStart()
    for start, piece in customer.pieces():
        assert start == previous  # each piece starts where the one before it ended
        for key, part in contributions(movements(piece, start)).items():
            summed[key] = summed.get(key, Contribution()) + part
        previous = piece_end(piece, start)
    assert summed == contributions(movements(whole))


@settings(max_examples=60, deadline=None)
@given(stories(), st.randoms(use_true_random=False))
def test_pieces_give_the_whole_timeline_in_order_or_not(
    story: list[tuple[Observation, bool]], rng: random.Random
) -> None:
    in_order = Customer()
    for observation, imported in story:
        in_order.keep(observation, imported)
    _check(in_order, story)
    if not any(imported for _, imported in story):  # an import enters years back: before the chunks
        assert set(in_order.writes.values()) <= {1}  # in order, each chunk is written once
    assert in_order.late_rewrites_ok

    shuffled = [*story, *rng.sample(story, k=len(story) // 3)]
    rng.shuffle(shuffled)
    late = Customer()
    for observation, imported in shuffled:
        late.keep(observation, imported)
    _check(late, story)
    assert late.late_rewrites_ok

    # Everything delivered again (Stripe's retries, a catch-up): archived ones are found where they
    # are, and nothing is written or read whole.
    reads, kept, chunks = late.full_reads, late.kept, dict(late.chunks)
    for observation, imported in story:
        late.keep(observation, imported)
    assert (late.full_reads, late.kept, late.chunks) == (reads, kept, chunks)


def test_a_long_history_keeps_a_small_state() -> None:
    """Five years of daily quantity changes: the state never holds more than SPILL_AT seconds, each
    chunk is written once, and the pieces give the whole timeline."""
    customer, story = Customer(), []
    for day in range(5 * 365):
        story.append((_sub("sub_a", T0 + day * DAY, 1 + day % 7), False))
        customer.keep(*story[-1])
        if customer.kept.archived:
            assert len({e.at for e in customer.kept.log.entries}) >= KEEP_FEWEST
    _check(customer, story)
    assert set(customer.writes.values()) == {1}
    assert customer.kept.archived == len(customer.chunks) > 100


def test_a_state_of_the_previous_format_spills_at_its_next_save() -> None:
    """A state holding its whole history (written before chunks) moves all but its newest seconds
    into chunks of at most CHUNK_SECONDS at its next save, even one that adds nothing."""
    log = HistoryLog().with_entries(
        e for day in range(300) for e in history_entries(_sub("sub_a", T0 + day * DAY, 1 + day % 5))
    )
    timeline = tuple(mrr_timeline("cus_1", log.observations()))
    legacy = KeptHistory.from_json(log.to_json(), timeline, TimelineStart())
    update = history_after(legacy, [])
    assert update is not None
    assert len(update.chunks) == 5  # 296 seconds in chunks of 64
    assert len({e.at for e in update.kept.log.entries}) <= KEEP_MOST
    spilled = Customer()
    spilled.kept, spilled.chunks = update.kept, {c.number: c for c in update.chunks}
    assert whole_timeline(spilled.kept, update.chunks) == timeline
    _check_pieces(spilled, timeline)
