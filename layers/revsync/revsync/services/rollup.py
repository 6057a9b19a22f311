"""The revenue rollup's consumer: a batch of the sync table's stream records applied exactly once
(revsync.domain.rollup), and the one-off seeding of pieces written before the rollup existed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from revsync.domain.rollup import Group, PieceChange, change_of, plan_group

# A marker outlives every redelivery of its records: a stream keeps a record 24 hours.
MARKER_SECONDS = 2 * 86_400


class RollupWriter(Protocol):
    def apply(self, group: Group, expires_at: int) -> int | None:
        """Apply the group and put its marker, all or nothing: None; or, if its marker is there
        already, the sequence number of the last record that marker covers."""
        ...


class RollupInterrupted(RuntimeError):
    """A group could not be written: the batch is to be retried from its first record."""

    def __init__(self, sequence: int) -> None:
        super().__init__(f"rollup interrupted at sequence number {sequence}")
        self.sequence = sequence


class RollupOutcome(NamedTuple):
    records: int
    written: int  # groups written now
    found: int  # groups found applied already (a retried batch)
    oldest_change: int | None  # the time of the batch's oldest record


def apply_changes(records: Sequence[PieceChange], rollup: RollupWriter, now: int) -> RollupOutcome:
    """Apply a batch of one shard's records, in order, one group at a time; a group found applied
    already is skipped with every record its marker covers. A failure raises ``RollupInterrupted``
    with the failed group's first record: retrying from there applies what is left, once."""
    ordered = sorted(records, key=lambda record: record.sequence)
    sequences = [record.sequence for record in ordered]
    changes = [change_of(record.old, record.new) for record in ordered]
    begin = part = written = found = 0
    while begin < len(ordered):
        group = plan_group(ordered, changes, begin, part)
        if not group.changes:  # nothing to add, nothing to mark
            begin, part = group.end, 0
            continue
        try:
            through = rollup.apply(group, now + MARKER_SECONDS)
        except Exception as exc:
            raise RollupInterrupted(ordered[begin].sequence) from exc
        written, found = written + (through is None), found + (through is not None)
        if group.part + 1 < group.parts:
            part += 1
        elif through is None or group.parts > 1:
            begin, part = group.end, 0
        else:
            begin, part = max(begin + 1, bisect_right(sequences, through)), 0
    oldest = min((record.changed_at for record in ordered), default=None)
    return RollupOutcome(len(ordered), written, found, oldest)


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
