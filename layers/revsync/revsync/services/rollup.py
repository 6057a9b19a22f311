"""The revenue rollup's consumer: a batch of the sync table's stream records applied exactly once
(revsync.domain.rollup), and the one-off seeding of pieces written before the rollup existed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from revsync.domain.rollup import (
    MAX_PERIODS_PER_GROUP,
    WHOLE_RECORD,
    Group,
    PieceChange,
    Position,
    change_of,
    plan_group,
)
from revsync.errors import RetryLater

# A shard's position outlives every redelivery of its records: a stream keeps a record 24 hours.
POSITION_SECONDS = 2 * 86_400


class RollupWriter(Protocol):
    def apply(self, shard_id: str, group: Group, expires_at: int) -> Position | None:
        """Apply the group and move its shard's position to ``group.through``, all or nothing, if the
        position is before ``group.start``: None; else (applied already) the position found."""
        ...


class RollupInterrupted(RetryLater):
    """A group could not be written: the batch is to be retried from the group's first record."""

    def __init__(self, sequence: int) -> None:
        super().__init__(f"rollup interrupted at sequence number {sequence}", "rollup_interrupted")
        self.sequence = sequence


class RollupOutcome(NamedTuple):
    records: int
    written: int  # groups written now
    skipped: int  # groups found applied already (records delivered again)
    oldest_change: int | None  # the time of the batch's oldest record


def apply_changes(
    shard_id: str,
    records: Sequence[PieceChange],
    rollup: RollupWriter,
    now: int,
    limit: int = MAX_PERIODS_PER_GROUP,
) -> RollupOutcome:
    """Apply a batch of one shard's records, in order, one group (of at most ``limit`` periods) at a
    time. A group found applied already tells how far the shard is: planning resumes from there. A
    failure raises ``RollupInterrupted`` with the failed group's first record: whatever Lambda
    delivers again from there (or from anywhere before) is applied once."""
    ordered = sorted(records, key=lambda record: record.sequence)
    sequences = [record.sequence for record in ordered]
    changes = [change_of(record.old, record.new) for record in ordered]
    begin = part = written = skipped = 0
    while begin < len(ordered):
        group = plan_group(ordered, changes, begin, part, limit)
        if not group.changes:  # nothing to add: applying it again is harmless, so no write at all
            begin, part = group.end, 0
            continue
        try:
            found = rollup.apply(shard_id, group, now + POSITION_SECONDS)
        except Exception as exc:
            raise RollupInterrupted(ordered[begin].sequence) from exc
        if found is None:
            written += 1
            found = group.through
        else:
            skipped += 1
        at = (begin, part)
        if found.part == WHOLE_RECORD:
            begin, part = bisect_right(sequences, found.sequence), 0
        else:  # a record applied in parts, up to this one
            begin = bisect_left(sequences, found.sequence)
            part = found.part + 1 if begin < len(ordered) and sequences[begin] == found.sequence else 0
        if (begin, part) <= at:  # a position before the group cannot refuse it
            raise RollupInterrupted(ordered[at[0]].sequence) from RuntimeError(f"stuck at {found}")
    oldest = min((record.changed_at for record in ordered), default=None)
    return RollupOutcome(len(ordered), written, skipped, oldest)


class UncountedPieces(Protocol):
    def count_page(self, tenant_id: str, cursor: str | None) -> tuple[int, str | None]: ...


def seed(
    tenant_id: str, pieces: UncountedPieces, cursor: str | None, out_of_time: Callable[[], bool]
) -> dict[str, Any]:
    """Count the tenant's pieces written before the rollup existed, a page at a time until done or
    out of time: ``{"tenant_id", "counted", "cursor"}``, the cursor to continue from (None: done).
    Idempotent: a piece counted already (or written since) is left alone."""
    counted = 0
    while True:
        done, cursor = pieces.count_page(tenant_id, cursor)
        counted += done
        if cursor is None or out_of_time():
            return {"tenant_id": tenant_id, "counted": counted, "cursor": cursor}
