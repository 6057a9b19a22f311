"""The change feed: ``Customer Record Changed`` and ``Customer Risk Changed`` events on the stack's
EventBridge bus.

The write path publishes into a buffer; the function flushes it at the end of its batch (PutEvents
takes ten entries per call). Delivery is at most once, as the contract says: a record change is
written first, and a failure to publish is logged and counted, never retried into a duplicate.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from revsync.domain.changes import SOURCE
from revsync.infra import aws

logger = logging.getLogger("revsync.changes")
_ENTRIES_PER_CALL = 10


class EventBridgeChanges:
    """The change feed on the bus ``bus_name``."""

    def __init__(self, bus_name: str) -> None:
        self._bus_name = bus_name
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        self._pending.append((detail_type, detail))

    def flush(self) -> tuple[int, int]:
        """Send what was published since the last flush; (sent, failed)."""
        pending, self._pending = self._pending, []
        bus = self._bus_name
        sent = failed = 0
        for start in range(0, len(pending), _ENTRIES_PER_CALL):
            chunk = pending[start : start + _ENTRIES_PER_CALL]
            entries = [
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, separators=(",", ":")),
                    "EventBusName": bus,
                }
                for detail_type, detail in chunk
            ]
            try:
                response = aws.events().put_events(Entries=entries)  # type: ignore[arg-type]
            except Exception as exc:  # the records are written; the feed is at most once
                logger.warning("change feed not published: %s", type(exc).__name__)
                failed += len(chunk)
                continue
            lost = int(response.get("FailedEntryCount", 0))
            failed += lost
            sent += len(chunk) - lost
        if failed:
            logger.warning("change feed: %d of %d events not published", failed, len(pending))
        return sent, failed
