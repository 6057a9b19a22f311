"""A tenant's monthly revenue kept as a rollup, off the request path (README "Revenue analytics").

A customer's MRR timeline may be kept in pieces, each on an item of the sync table; a tenant's
months are the sum over its customers' pieces of what each piece's movements add to each month
(``history.contributions``). Every change of an item holding a piece (a stream record with the
item's old and new images) therefore changes the tenant's months by what the new piece adds minus
what the old one added: applied once per record, the rollup equals the sum over the pieces.

Periods: each month (``YYYY-MM``) and, so that a month's opening MRR is read from a few items
whatever the tenant's age, each year (``YYYY``) is kept, summed.

A stream batch (one shard's records, in order) is applied in groups of consecutive records, each
group one all-or-nothing write together with its shard's position (how far the shard's records are
applied), conditional on the position being before the group: a record delivered again, in a batch
retried whole, from a reported record, cut shorter or longer, is found applied and skipped, so every
record is applied exactly once however often and however cut it is delivered.
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

# A transaction writes at most 100 items: the shard's position and this many periods.
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
    sequence: int  # ordered within the stream's shard (a batch is one shard's)
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


# A position's part when the whole record is applied.
WHOLE_RECORD = 9999


class Position(NamedTuple):
    """How far a shard's records are applied: every record before ``sequence``, and that record's
    parts up to ``part`` (``WHOLE_RECORD``: all of it)."""

    sequence: int
    part: int

    def key(self) -> str:
        """Sortable as text (a sequence number has up to 40 digits, more than a DynamoDB number)."""
        return f"{self.sequence:040d}#{self.part:04d}"

    @classmethod
    def from_key(cls, key: str) -> Position:
        sequence, part = key.split("#")
        return cls(int(sequence), int(part))


class Group(NamedTuple):
    """Consecutive records of a shard applied together, or one part of a record too big for one write."""

    start: Position  # where it starts: its first record, part ``part`` (0 unless a record's later part)
    through: Position  # how far its shard is applied once it is
    parts: int  # more than one only for a record whose own changes exceed one write
    end: int  # the index after the group's last record, once all its parts are applied
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
    ``limit`` periods; a record that does not fit alone, in parts of ``limit`` periods."""
    first = records[begin]
    own = changes[begin]
    if len(own) > limit:
        keys = sorted(own)
        chunks = [keys[i : i + limit] for i in range(0, len(keys), limit)]
        last = part + 1 == len(chunks)
        return Group(
            Position(first.sequence, part),
            Position(first.sequence, WHOLE_RECORD if last else part),
            len(chunks),
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
        Position(first.sequence, 0),
        Position(group[-1].sequence, WHOLE_RECORD),
        1,
        end,
        combined(changes[begin:end]),
        max(record.changed_at for record in group),
    )
