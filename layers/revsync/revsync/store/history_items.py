"""A customer's MRR history on its items (revsync.domain.history_archive): the state holds the
newest piece, history archives (``history#<until>``) the older ones. How a piece is written on an
item and read back, for the write path (store.customer_state), the reads (store.read_models) and the
revenue rollup (store.rollup, from the stream's images)."""

from __future__ import annotations

import json

from revsync.domain.history import FROM_NOTHING, HistoryLog, Timeline, TimelineStart
from revsync.domain.history_archive import HistoryChunk, KeptHistory
from revsync.store import models
from revsync.store.models import CustomerStateItem, HistoryArchiveItem


def timeline_to_json(timeline: Timeline) -> str:
    return json.dumps([list(point) for point in timeline], separators=(",", ":"))


def timeline_from_json(text: str | None) -> Timeline | None:
    """None: a state written before timelines were kept (sync derives it from the history)."""
    if text is None:
        return None
    return tuple((int(at), currency, int(mrr)) for at, currency, mrr in json.loads(text))


def start_to_json(start: TimelineStart) -> str | None:
    """None (the attribute absent): the piece starts from nothing, as a whole timeline does."""
    return None if start == FROM_NOTHING else json.dumps(list(start), separators=(",", ":"))


def start_from_json(text: str | None) -> TimelineStart:
    if text is None:
        return FROM_NOTHING
    currency, mrr, ever_paid = json.loads(text)
    return TimelineStart(currency, int(mrr), bool(ever_paid))


def history_key(until: int) -> str:
    """A history archive's sort key: by the time it ends (its range never changes), so the archive
    holding a time is the first key after it, and keys sort in time order."""
    return f"{models.HISTORY_ARCHIVE_SK_PREFIX}{until:012d}"


def chunk_of(item: HistoryArchiveItem) -> HistoryChunk:
    return HistoryChunk(
        int(item.number),
        int(item.until),
        HistoryLog.from_json(item.history),
        start_from_json(item.timeline_start),
        timeline_from_json(item.timeline) or (),
    )


def kept_of(state: CustomerStateItem) -> KeptHistory:
    return KeptHistory.from_json(
        state.objects.get("history"),
        timeline_from_json(state.timeline),
        start_from_json(state.timeline_start),
    )
