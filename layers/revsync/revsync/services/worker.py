"""The worker's logic for one queue message: read it, apply it through the one write path, and say
what became of it. The handler turns the answer into SQS actions (park, defer, retry).

A message is an envelope (the receiver's), or a parked delivery brought back by a redrive: that one
is read again from the bytes Stripe signed, so a fix to revsync's parsing applies to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from revsync.domain.events import (
    Envelope,
    EventError,
    is_parked,
    parked_body,
    parse_queue_message,
)
from revsync.domain.snapshots import SnapshotError
from revsync.errors import Deferred
from revsync.services.connect import connection_revoked
from revsync.services.receive import TenantDirectory, route_event
from revsync.services.sync import (
    UNSET,
    ChangeFeed,
    Customers,
    StripeObjects,
    SyncResult,
    Tenants,
    apply_observation,
)
from revsync.services.tenants import TenantRepository

Outcome = Literal["applied", "unchanged", "dropped", "parked", "deferred", "retry"]

# Bad input that no retry can fix: park the message at once. Anything else (our bugs included) is
# retried, then parked with its reason.
PERMANENT_ERRORS = (EventError, SnapshotError)


@dataclass(frozen=True, slots=True)
class MessageResult:
    outcome: Outcome
    reason: str
    delay_seconds: float | None = None  # deferred: hide the message this long
    result: SyncResult | None = None
    log: dict[str, Any] = field(default_factory=dict)


class Watermarks(Protocol):
    def note(self, tenant_id: str, event_created: int) -> None:
        """An event of this time was applied (written coarsely: see revsync.domain.reconcile)."""
        ...


def _apply_envelope(
    envelope: Envelope,
    *,
    tenants: Tenants,
    connection_tenants: TenantRepository,
    customers: Customers,
    stripe: StripeObjects,
    watermarks: Watermarks,
    clock: Callable[[], float],
    changes: ChangeFeed,
) -> SyncResult:
    account = envelope.get("account", UNSET)  # older envelopes carry none
    observation = envelope["observation"]
    if observation is None:  # about the connection: Stripe says the account disconnected us
        return connection_revoked(
            envelope["tenant_id"],
            account=envelope.get("account"),
            tenants=connection_tenants,
            now=int(clock()),
        )
    result = apply_observation(
        envelope["tenant_id"],
        observation,
        tenants=tenants,
        customers=customers,
        stripe=stripe,
        account=account,
        clock=clock,
        changes=changes,
    )
    if result.outcome != "dropped":
        watermarks.note(envelope["tenant_id"], observation["observed_at"])
    return result


def process_message(
    body: str,
    *,
    receive_count: int,
    max_receive_count: int,
    tenants: Tenants,
    connection_tenants: TenantRepository,
    directory: TenantDirectory,
    customers: Customers,
    stripe: StripeObjects,
    watermarks: Watermarks,
    clock: Callable[[], float],
    changes: ChangeFeed,
) -> MessageResult:
    envelope: Envelope | None = None
    try:
        message = parse_queue_message(body)
        if is_parked(message):  # a redriven delivery: read it again as the receiver would
            direct = directory.by_tenant(message["tenant_id"]) if message["tenant_id"] else None
            routed = route_event(parked_body(message), directory, direct)
            if routed.dropped is not None:
                return MessageResult("dropped", routed.dropped, log=dict(routed.log))
            if routed.parked is not None:
                raise EventError("still_unreadable", routed.parked)
            envelope = routed.envelope
        else:
            envelope = message  # type: ignore[assignment]  # not parked: an envelope
        assert envelope is not None
        result = _apply_envelope(
            envelope,
            tenants=tenants,
            connection_tenants=connection_tenants,
            customers=customers,
            stripe=stripe,
            watermarks=watermarks,
            clock=clock,
            changes=changes,
        )
    except Deferred as exc:
        # Stripe's rate limit, DynamoDB's throttling: later, never a failure (the receive count does
        # not park it).
        return MessageResult("deferred", str(exc), delay_seconds=exc.delay_for(receive_count))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PERMANENT_ERRORS) or receive_count >= max_receive_count:
            return MessageResult("parked", reason[:1000])
        return MessageResult("retry", reason[:1000])
    log = {
        "tenant_id": envelope["tenant_id"],
        "event_id": envelope["event_id"],
        "event_type": envelope["event_type"],
    }
    return MessageResult(result.outcome, result.reason, result=result, log=log)  # type: ignore[arg-type]
