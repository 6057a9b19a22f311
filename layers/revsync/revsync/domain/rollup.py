"""A tenant's monthly revenue kept as a rollup, off the request path (README "Revenue analytics").

A customer's MRR timeline may be kept in pieces, each on an item of the sync table; a tenant's
months are the sum over its customers' pieces of what each piece's movements add to each month
(``history.contributions``). Every change of an item holding a piece (a stream record with the
item's old and new images) therefore changes the tenant's months by what the new piece adds minus
what the old one added: applied once per record, the rollup equals the sum over the pieces.

Periods: each month (``YYYY-MM``) and, so that a month's opening MRR is read from a few items
whatever the tenant's age, each year (``YYYY``) is kept, summed.

A stream batch is applied in groups of consecutive records, each group one all-or-nothing write
under a marker keyed by its first record (and, for one record too big for one write, its part): a
retried batch starts at a group's first record (Lambda retries from the batch's start, or from the
record reported as failed, which is always a group's first), finds the marker and skips what it
covers, so every record is applied exactly once however often and however cut it is delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from revsync.domain.history import (
    FROM_NOTHING,
    Contribution,
    Timeline,
    TimelineStart,
    contributions,
    movements,
)

# A transaction writes at most 100 items: the group's marker and this many periods.
MAX_PERIODS_PER_GROUP = 99


class Piece(NamedTuple):
    """A piece of a customer's MRR timeline as an item holds it, and the tenant whose months count it."""

    tenant_id: str
    timeline: Timeline
    start: TimelineStart = FROM_NOTHING


class RollupKey(NamedTuple):
    tenant_id: str
    currency: str
    period: str  # YYYY-MM, or YYYY: the year's months summed


class RevenuePeriods(NamedTuple):
    """A tenant's totals as the rollup keeps them, up to a month: currency -> period -> totals, whole
    years before the first month asked, then months (``YYYY`` sorts before ``YYYY-MM``, so
    ``history.revenue_months`` sums what comes before a month from either alike)."""

    totals: dict[str, dict[str, Contribution]]
    as_of: int | None  # when the newest change counted in them was made (None: none)


class PieceChange(NamedTuple):
    """One stream record of an item holding a piece: its old and new piece (None: none counted)."""

    event_id: str  # unique in the stream
    sequence: int  # ordered within the stream's shard, which holds a whole batch
    changed_at: int  # when the item changed (Unix seconds)
    old: Piece | None
    new: Piece | None


Changes = dict[RollupKey, Contribution]


def piece_contributions(piece: Piece) -> dict[tuple[str, str], Contribution]:
    """(currency, month) -> what the piece's movements add to that month."""
    return contributions(movements(piece.timeline, piece.start))


def change_of(old: Piece | None, new: Piece | None) -> Changes:
    """What replacing ``old`` by ``new`` adds to each of its tenant's periods (nothing left at zero)."""
    if old == new:
        return {}
    sums: dict[RollupKey, list[int]] = {}
    for sign, piece in ((-1, old), (1, new)):
        if piece is None:
            continue
        for (currency, month), part in piece_contributions(piece).items():
            for period in (month, month[:4]):
                fields = sums.setdefault(RollupKey(piece.tenant_id, currency, period), [0] * len(part))
                for index, value in enumerate(part):
                    fields[index] += sign * value
    return {key: Contribution(*fields) for key, fields in sums.items() if any(fields)}


def combined(parts: Sequence[Mapping[RollupKey, Contribution]]) -> Changes:
    """The sum of several changes (periods left at zero dropped)."""
    total: Changes = {}
    for changes in parts:
        for key, value in changes.items():
            total[key] = total.get(key, Contribution()) + value
    return {key: value for key, value in total.items() if any(value)}


class Group(NamedTuple):
    """Consecutive records applied together, or one part of a record too big for one write."""

    event_id: str  # the first record's: with ``part``, the key of the group's marker
    part: int
    parts: int  # more than one only for a record whose own changes exceed one write
    through: int  # the last record's sequence number
    end: int  # the index after the group's last record
    changes: Changes
    as_of: int  # the newest record's time


def plan_group(
    records: Sequence[PieceChange],
    changes: Sequence[Changes],
    begin: int,
    part: int = 0,
    limit: int = MAX_PERIODS_PER_GROUP,
) -> Group:
    """The group starting at ``records[begin]`` (its ``part``): as many consecutive records as fit in
    ``limit`` periods. A function of the records from ``begin`` on, so a retry plans it again alike."""
    first = records[begin]
    own = changes[begin]
    if len(own) > limit:
        keys = sorted(own)
        chunks = [keys[i : i + limit] for i in range(0, len(keys), limit)]
        return Group(
            first.event_id,
            part,
            len(chunks),
            first.sequence,
            begin + 1,
            {key: own[key] for key in chunks[part]},
            first.changed_at,
        )
    periods = set(own)
    end = begin + 1
    while end < len(records):
        more = periods | changes[end].keys()
        if len(more) > limit:
            break
        periods = more
        end += 1
    group = records[begin:end]
    return Group(
        first.event_id,
        0,
        1,
        group[-1].sequence,
        end,
        combined(changes[begin:end]),
        max(record.changed_at for record in group),
    )
