"""A customer's MRR history kept in pieces, so that its state item stays small for years.

The state item keeps the observations of its newest few seconds (those at or after its *boundary*),
a checkpoint of the replay at the boundary (the observation held for each object, and the timeline's
value there), and the piece of the MRR timeline from the boundary on. Older observations live in
numbered archive chunks, each with the piece of the timeline they give and where that piece starts
(``TimelineStart``): pieces are disjoint in time and each starts where the previous one ended, so a
customer's months are the sum of its pieces' contributions, and its timeline their concatenation.

When the state holds ``SPILL_AT`` seconds of observations, all but its newest (the last three days,
Stripe's redelivery window, where they fit: ``KEEP_FEWEST`` to ``KEEP_MOST`` seconds) move into a new
chunk, written with the state that counts it in one transaction: a piece is never counted twice or
lost, whoever wins a race. An observation at or after the boundary replays from the checkpoint (a
few seconds of history, whatever its length). One before it is looked for in the chunk holding its
time (a redelivery, a catch-up or a backfill reading it again: found, nothing changes); a new one
(a late delivery, a backfill's reconstructed start years back) is rare: it replays the whole history
from the chunks and rewrites the chunks whose content changed (a piece whose end changes changes the
next one's start) and the state, again in one transaction. The timeline is a function of the set
of observations whatever the order they came in; only where the pieces are cut depends on when the
state spilled.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from revsync.domain.events import Observation
from revsync.domain.history import (
    FROM_NOTHING,
    FROM_THE_START,
    Checkpoint,
    HistoryLog,
    Timeline,
    TimelineStart,
    mrr_timeline,
    replay,
)
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.snapshots import Snapshot

# Seconds of observations a state holds before it spills the older ones into a chunk.
SPILL_AT = 12
# Seconds a spill leaves in the state: those of the last LATE_SECONDS, within these bounds.
KEEP_FEWEST, KEEP_MOST = 4, 6
LATE_SECONDS = 3 * 86_400  # Stripe redelivers for up to three days
# Seconds per chunk when a state spills more than one chunk's worth (a state of the format before
# chunks, holding its whole history, is converted by its next save).
CHUNK_SECONDS = 64
_AFTER_ALL = 2**62  # a cut after any observation

Addition = tuple[int, str, Snapshot]  # what history_entries gives: (at, source, revenue view)


class KeptHistory(NamedTuple):
    """A customer's MRR history as its state item keeps it."""

    log: HistoryLog = HistoryLog()  # the observations at or after ``boundary`` (all: None)
    # The piece of the timeline they give, from ``checkpoint.start`` (None: a state written before
    # timelines were kept; no chunks then).
    timeline: Timeline | None = ()
    checkpoint: Checkpoint = FROM_THE_START  # the replay at the boundary
    boundary: int | None = None  # None: nothing archived
    archived: int = 0  # chunks 1..archived hold what came before the boundary

    def to_json(self) -> dict[str, Any]:
        """The state item's document (its timeline and start are attributes of their own)."""
        document = self.log.to_json()
        if self.boundary is None:
            return document
        # Each held view in full: most are older than the log's (the state compresses the repeats).
        held = [[o["observed_at"], o["source"], o["snapshot"]] for o in self.checkpoint.held]
        return {
            **document,
            "boundary": self.boundary,
            "archived": self.archived,
            "held": held,
            "provisional": sorted(self.checkpoint.provisional),
        } | (
            {"past_due_since": [list(p) for p in self.checkpoint.past_due_since]}
            if self.checkpoint.past_due_since
            else {}
        )

    @classmethod
    def from_json(
        cls, document: Mapping[str, Any] | None, timeline: Timeline | None, start: TimelineStart
    ) -> KeptHistory:
        log = HistoryLog.from_json(document)
        if not document or document.get("boundary") is None:
            return cls(log, timeline)
        held = tuple(
            Observation(snapshot=view, observed_at=int(at), source=source, event_id=None)
            for at, source, view in document["held"]
        )
        since = tuple((str(sub), int(at)) for sub, at in document.get("past_due_since", ()))
        checkpoint = Checkpoint(held, frozenset(document["provisional"]), start, since)
        return cls(log, timeline, checkpoint, int(document["boundary"]), int(document["archived"]))


class HistoryChunk(NamedTuple):
    """Archived observations (from the previous chunk's ``until``, the first from the beginning, to
    before ``until``) and the piece of the timeline they give, from ``start``."""

    number: int
    until: int
    log: HistoryLog
    start: TimelineStart
    timeline: Timeline


class HistoryUpdate(NamedTuple):
    """What a save writes: the state's history, and chunks (new or rewritten) in the same transaction."""

    kept: KeptHistory
    chunks: tuple[HistoryChunk, ...] = ()


def needs_archive(kept: KeptHistory, additions: Iterable[Addition]) -> bool:
    """Whether some addition falls before the boundary: its chunks must be read (``history_after``)."""
    return bool(archived_times(kept, additions))


def archived_times(kept: KeptHistory, additions: Iterable[Addition]) -> list[int]:
    """The times of the additions that fall before the boundary (in an archived period)."""
    if kept.boundary is None:
        return []
    return sorted({at for at, _, _ in additions if at < kept.boundary})


def without_archived(
    kept: KeptHistory, additions: Sequence[Addition], holding: Sequence[HistoryChunk]
) -> list[Addition] | None:
    """The additions left once those an archive already holds are taken out (a redelivery, a catch-up
    listing what was seen, a backfill reading a subscription again): the set is unchanged by them,
    and so is every piece. ``holding``: the chunk that holds each archived addition's time (the first
    whose ``until`` is after it). None: some archived addition is new (read the whole archive)."""
    left: list[Addition] = []
    for addition in additions:
        if kept.boundary is None or addition[0] >= kept.boundary:
            left.append(addition)
            continue
        chunk = min((c for c in holding if c.until > addition[0]), key=lambda c: c.until, default=None)
        if chunk is None or chunk.log.with_entries([addition]) != chunk.log:
            return None
    return left


def history_after(
    kept: KeptHistory,
    additions: Sequence[Addition],
    archive: Sequence[HistoryChunk] | None = None,
    *,
    policy: RevenuePolicy = DEFAULT_POLICY,
    again: bool = False,
) -> HistoryUpdate | None:
    """The history once ``additions`` are kept, its pieces by ``policy`` (None: nothing to write).
    ``archive``: the chunks 1..``kept.archived``, needed when an addition falls before the boundary,
    or with ``again``: every piece replayed (``kept``'s were made with another policy), the chunks
    whose piece changed rewritten."""
    if needs_archive(kept, additions) or (again and kept.boundary is not None):
        if archive is None:
            raise ValueError(
                "an observation before the boundary, or a replay of all, needs the archived chunks"
            )
        return _rebuilt(kept, additions, archive, policy)
    log = kept.log.with_entries(additions)
    if log == kept.log and kept.timeline is not None and not _spill_due(log) and not again:
        return None
    points, _ = replay(log.observations(), kept.checkpoint, policy=policy)
    replayed = kept._replace(log=log, timeline=tuple(points))
    if replayed == kept and not _spill_due(log):
        return None
    return _spilled(replayed, policy)


def past_due_runs(kept: KeptHistory) -> dict[str, int]:
    """Subscription id -> when its current run of ``past_due`` observations began, after every kept
    observation (what ``derive_record`` and ``derive_risk`` take as ``past_due_since``)."""
    observations = kept.log.observations()
    if not any(o["snapshot"].get("status") == "past_due" for o in observations) and not (
        kept.checkpoint.past_due_since
    ):
        return {}
    _, [end] = replay(observations, kept.checkpoint, cuts=(_AFTER_ALL,))
    return dict(end.past_due_since)


def whole_timeline(
    kept: KeptHistory, archive: Sequence[HistoryChunk], policy: RevenuePolicy = DEFAULT_POLICY
) -> Timeline:
    """The customer's timeline: its pieces, oldest first (``policy``: for a state written before
    timelines were kept, derived here)."""
    if kept.timeline is None:  # written before timelines were kept (and before chunks)
        return tuple(mrr_timeline("", kept.log.observations(), policy))
    ordered = sorted(archive, key=lambda chunk: chunk.number)[: kept.archived]
    return tuple(point for chunk in ordered for point in chunk.timeline) + kept.timeline


def _seconds(log: HistoryLog) -> list[int]:
    return sorted({entry.at for entry in log.entries})


def _spill_due(log: HistoryLog) -> bool:
    return len({entry.at for entry in log.entries}) >= SPILL_AT


def _within(timeline: Iterable[tuple[int, str | None, int]], low: int | None, high: int | None) -> Timeline:
    return tuple(p for p in timeline if (low is None or p[0] >= low) and (high is None or p[0] < high))


def _spilled(kept: KeptHistory, policy: RevenuePolicy) -> HistoryUpdate:
    """``kept`` (its timeline replayed), with its older seconds moved into new chunks if it is due."""
    seconds = _seconds(kept.log)
    if len(seconds) < SPILL_AT:
        return HistoryUpdate(kept)
    recent = sum(1 for at in seconds if at >= seconds[-1] - LATE_SECONDS)
    keep = min(max(recent, KEEP_FEWEST), KEEP_MOST)
    spilled = seconds[:-keep]
    # Each chunk ends where the next begins; the last where the state now does.
    cuts = [spilled[i] for i in range(CHUNK_SECONDS, len(spilled), CHUNK_SECONDS)] + [seconds[-keep]]
    points, checkpoints = replay(kept.log.observations(), kept.checkpoint, cuts, policy)
    chunks, low, start = [], kept.boundary, kept.checkpoint.start
    for offset, (until, checkpoint) in enumerate(zip(cuts, checkpoints, strict=True), start=1):
        piece = _within(points, low, until)
        chunks.append(HistoryChunk(kept.archived + offset, until, kept.log.between(low, until), start, piece))
        low, start = until, checkpoint.start
    boundary = cuts[-1]
    state = KeptHistory(
        kept.log.between(boundary, None),
        _within(points, boundary, None),
        checkpoints[-1],
        boundary,
        kept.archived + len(chunks),
    )
    return HistoryUpdate(state, tuple(chunks))


def _rebuilt(
    kept: KeptHistory, additions: Sequence[Addition], archive: Sequence[HistoryChunk], policy: RevenuePolicy
) -> HistoryUpdate | None:
    """An addition before the boundary: the whole history replayed, the chunks whose content changed
    rewritten (their time ranges stay), and the state's checkpoint and piece recomputed."""
    chunks = sorted(archive, key=lambda chunk: chunk.number)[: kept.archived]
    if [c.number for c in chunks] != list(range(1, kept.archived + 1)) or chunks[-1].until != kept.boundary:
        raise ValueError("the archived chunks do not match the state that counts them")
    untils = [chunk.until for chunk in chunks]
    routed: list[list[Addition]] = [[] for _ in range(len(chunks) + 1)]  # the last: the state's
    for addition in additions:
        routed[bisect.bisect_right(untils, addition[0])].append(addition)
    logs = [chunk.log.with_entries(routed[i]) for i, chunk in enumerate(chunks)]
    logs.append(kept.log.with_entries(routed[-1]))
    observations = (o for log in logs for o in log.observations())
    points, checkpoints = replay(observations, FROM_THE_START, untils, policy)
    rewritten, low, start = [], None, FROM_NOTHING
    for chunk, log, checkpoint in zip(chunks, logs[:-1], checkpoints, strict=True):
        again = HistoryChunk(chunk.number, chunk.until, log, start, _within(points, low, chunk.until))
        if again != chunk:
            rewritten.append(again)
        low, start = chunk.until, checkpoint.start
    state = kept._replace(
        log=logs[-1], timeline=_within(points, kept.boundary, None), checkpoint=checkpoints[-1]
    )
    if not rewritten and state == kept and not _spill_due(state.log):
        return None
    update = _spilled(state, policy)
    return HistoryUpdate(update.kept, (*rewritten, *update.chunks))
