"""Stripe events, sans I/O: parse the verified body, route by type, build the queue envelope.

Like gidgethub, parsing and routing take bytes and dicts and return values; nothing here talks to
the network. The receiver and the worker both use it, so it stays import-light.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, TypeGuard

from revsync.domain.snapshots import (
    Snapshot,
    SnapshotError,
    customer_id_of,
    parse_charge,
    parse_credit_note,
    parse_customer,
    parse_discount_event,
    parse_invoice,
    parse_payment_method,
    parse_subscription,
    parse_subscription_schedule,
)
from revsync.errors import InvalidInput

Source = Literal["created", "updated", "deleted", "fetched"]


class EventError(InvalidInput):
    """The body is not a Stripe event revsync can read. ``code`` is safe to return."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


class StripeEvent(NamedTuple):
    id: str
    type: str
    created: int
    livemode: bool
    account: str | None
    data_object: dict[str, Any]
    # ``data.previous_attributes`` (an update's old values; ``{}``: none).
    previous_attributes: dict[str, Any]


class Observation(TypedDict):
    """A snapshot of one Stripe object and when it was observed (event time or fetch time)."""

    snapshot: Snapshot
    observed_at: int
    source: Source
    event_id: str | None


class Envelope(TypedDict):
    """The small message the receiver queues for the worker: an object snapshot, or (for events
    about the connection itself, such as ``account.application.deauthorized``) none."""

    v: int
    tenant_id: str
    event_id: str
    event_type: str
    livemode: bool
    observation: Observation | None
    # The Connect account the event came from (None on a tenant's own API-key route): the worker
    # applies it only while the tenant is still connected to that account.
    account: NotRequired[str | None]


class ParkedEvent(TypedDict):
    """A verified Stripe delivery revsync could not read: kept whole (base64 of the signed bytes) with
    the tenant it arrived for, so a redrive after a fix reads it again."""

    v: int
    parked: Literal[True]
    tenant_id: str | None  # the direct route's tenant; None: routed by the event's account
    body: str
    reason: str


ENVELOPE_VERSION = 1


def parse_event(body: bytes) -> StripeEvent:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EventError("malformed_json", "body is not valid JSON") from None
    return event_from_dict(raw)


def event_from_dict(raw: Any) -> StripeEvent:
    """An event as decoded JSON (a webhook's body, or an item of ``GET /v1/events``)."""
    if not isinstance(raw, dict) or raw.get("object") != "event":
        raise EventError("not_an_event", "body is not a Stripe event object")
    event_id, event_type, created = raw.get("id"), raw.get("type"), raw.get("created")
    data_object = raw.get("data", {}).get("object") if isinstance(raw.get("data"), dict) else None
    if not isinstance(event_id, str) or not event_id.startswith("evt_"):
        raise EventError("invalid_event", "event has no valid id")
    if not isinstance(event_type, str) or not event_type:
        raise EventError("invalid_event", "event has no type")
    if not isinstance(created, int) or isinstance(created, bool):
        raise EventError("invalid_event", "event has no integer created time")
    if not isinstance(data_object, dict):
        raise EventError("invalid_event", "event has no data.object")
    account = raw.get("account")
    previous = raw["data"].get("previous_attributes")
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created,
        livemode=bool(raw.get("livemode")),
        account=account if isinstance(account, str) and account else None,
        data_object=data_object,
        previous_attributes=previous if isinstance(previous, dict) else {},
    )


# --- routing: event type -> how to read its object ------------------------------------------------

# A reader's None: the object is nothing of revsync's (a charge of no customer). It reads the event's
# ``data.object``, and its ``previous_attributes``.
_Reader = Callable[[dict[str, Any], dict[str, Any]], Snapshot | None]


def _object(parse: Callable[[dict[str, Any]], Snapshot | None]) -> _Reader:
    return lambda raw, _previous: parse(raw)


def _deleted_customer(raw: dict[str, Any], _previous: dict[str, Any]) -> Snapshot:
    return parse_customer(raw, deleted=True)


def _failed_invoice(raw: dict[str, Any], _previous: dict[str, Any]) -> Snapshot | None:
    """An invoice's failed payment, and what follows it (retries, voided, given up on): an invoice not
    paid that Stripe attempted to collect. Another (a draft, one never attempted, a paid one, whose
    state comes with ``invoice.paid``) is nothing for revsync: dropped at the receiver, queued never."""
    invoice = parse_invoice(raw)
    return invoice if invoice["status"] != "paid" and invoice.get("attempt_count", 0) > 0 else None


def _detached_payment_method(raw: dict[str, Any], previous: dict[str, Any]) -> Snapshot | None:
    """A detached payment method names no customer any more: the one it left is the old value."""
    customer = raw.get("customer") or previous.get("customer")
    return parse_payment_method({**raw, "customer": customer}, detached=True)


def _finalized_invoice(raw: dict[str, Any], previous: dict[str, Any]) -> Snapshot | None:
    """A finalized invoice's usage lines (what the policy's ``metered: last_invoice`` counts) and what
    ends them (voided, given up on); or, as ``_failed_invoice``, a failed payment. Another is dropped
    at the receiver."""
    invoice = parse_invoice(raw)
    return invoice if "finalized_at" in invoice else _failed_invoice(raw, previous)


_ROUTES: dict[str, tuple[_Reader, Source]] = {
    "customer.created": (_object(parse_customer), "created"),
    "customer.updated": (_object(parse_customer), "updated"),
    "customer.deleted": (_deleted_customer, "deleted"),
    "customer.subscription.created": (_object(parse_subscription), "created"),
    "customer.subscription.updated": (_object(parse_subscription), "updated"),
    "customer.subscription.paused": (_object(parse_subscription), "updated"),
    "customer.subscription.resumed": (_object(parse_subscription), "updated"),
    "customer.subscription.trial_will_end": (_object(parse_subscription), "updated"),
    "customer.subscription.deleted": (_object(parse_subscription), "deleted"),
    "invoice.paid": (_object(parse_invoice), "updated"),
    "invoice.payment_succeeded": (_object(parse_invoice), "updated"),
    # A discount event names its customer or subscription; the worker reads that owner from Stripe.
    "customer.discount.created": (_object(parse_discount_event), "updated"),
    "customer.discount.updated": (_object(parse_discount_event), "updated"),
    "customer.discount.deleted": (_object(parse_discount_event), "updated"),
    # What a customer got back of a paid invoice (revsync.domain.refunds). A refund's own events
    # (``refund.*``) name no customer: its charge's ``charge.refunded`` carries the same money.
    "credit_note.created": (_object(parse_credit_note), "created"),
    "credit_note.updated": (_object(parse_credit_note), "updated"),
    "credit_note.voided": (_object(parse_credit_note), "updated"),
    "charge.refunded": (_object(parse_charge), "updated"),
    # What risk signals read (revsync.domain.risk). A payment that failed, and what ends it: paid
    # (above), voided or given up on; the retries in between.
    "invoice.payment_failed": (_failed_invoice, "updated"),
    # (An attempt that needs the customer's authentication collected nothing either.)
    "invoice.payment_action_required": (_failed_invoice, "updated"),
    "invoice.voided": (_finalized_invoice, "updated"),
    "invoice.marked_uncollectible": (_finalized_invoice, "updated"),
    # An invoice finalized, before any payment of it (one sent to be paid later): its usage lines.
    "invoice.finalized": (_finalized_invoice, "updated"),
    "invoice.updated": (_failed_invoice, "updated"),
    # A subscription's scheduled change (its next phase), until the schedule ends.
    "subscription_schedule.created": (_object(parse_subscription_schedule), "created"),
    "subscription_schedule.updated": (_object(parse_subscription_schedule), "updated"),
    "subscription_schedule.released": (_object(parse_subscription_schedule), "updated"),
    "subscription_schedule.canceled": (_object(parse_subscription_schedule), "updated"),
    "subscription_schedule.completed": (_object(parse_subscription_schedule), "updated"),
    "subscription_schedule.aborted": (_object(parse_subscription_schedule), "updated"),
    # The cards of a customer's payment methods (its default one's expiry).
    "payment_method.attached": (_object(parse_payment_method), "created"),
    "payment_method.updated": (_object(parse_payment_method), "updated"),
    "payment_method.automatically_updated": (_object(parse_payment_method), "updated"),
    "payment_method.detached": (_detached_payment_method, "deleted"),
}

# Events about the tenant's connection rather than a customer's objects.
CONNECTION_EVENT_TYPES = frozenset({"account.application.deauthorized"})
HANDLED_EVENT_TYPES = frozenset(_ROUTES) | CONNECTION_EVENT_TYPES


def observation_of(event: StripeEvent) -> Observation | None:
    """The snapshot an event carries, or None for event types revsync does not handle (or an object
    of no customer)."""
    route = _ROUTES.get(event.type)
    if route is None:
        return None
    reader, source = route
    try:
        snapshot = reader(event.data_object, event.previous_attributes)
    except SnapshotError as exc:
        raise EventError("invalid_object", f"{event.type}: {exc}") from None
    if snapshot is None:
        return None
    return Observation(snapshot=snapshot, observed_at=event.created, source=source, event_id=event.id)


def envelope_for(event: StripeEvent, tenant_id: str) -> Envelope | None:
    """The message to queue for the event (None: nothing for revsync in it)."""
    observation = observation_of(event)
    if observation is None and event.type not in CONNECTION_EVENT_TYPES:
        return None
    return Envelope(
        v=ENVELOPE_VERSION,
        tenant_id=tenant_id,
        event_id=event.id,
        event_type=event.type,
        livemode=event.livemode,
        observation=observation,
        account=event.account,
    )


def message_group(envelope: Envelope, groups_per_tenant: int) -> str:
    """FIFO group: one of the tenant's ``groups_per_tenant`` groups, chosen by a stable hash of the
    Stripe customer (CRC-32: the same in every process, unlike ``hash``).

    A customer's events stay in one group, so they are applied in arrival order and a Stripe retry
    meets its first delivery in the queue's per-group deduplication; a tenant's events are in at most
    ``groups_per_tenant`` groups (and its connection's), and Lambda runs at most one batch of a group at
    a time, so that bounds the tenant's concurrent writes (template.yaml: TenantMessageGroups). The
    group holds no customer text: a group id is limited to 128 printable ASCII characters."""
    observation = envelope["observation"]
    if observation is None:
        return f"{envelope['tenant_id']}#connection"
    customer = customer_id_of(observation["snapshot"]).encode("utf-8", "surrogatepass")
    return f"{envelope['tenant_id']}#{binascii.crc32(customer) % groups_per_tenant}"


def parked_event(body: bytes, tenant_id: str | None, reason: str) -> ParkedEvent:
    return ParkedEvent(
        v=ENVELOPE_VERSION,
        parked=True,
        tenant_id=tenant_id,
        body=base64.b64encode(body).decode(),
        reason=reason[:500],
    )


def parked_group(parked: ParkedEvent) -> str:
    return f"{parked['tenant_id'] or 'connect'}#parked"


def parse_queue_message(body: str) -> Envelope | ParkedEvent:
    """A message of the events queue: an envelope, or (after a redrive) a parked delivery."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise EventError("malformed_envelope", "queue message is not JSON") from None
    if not isinstance(raw, dict) or raw.get("v") != ENVELOPE_VERSION:
        raise EventError("malformed_envelope", "queue message is not a revsync envelope")
    if raw.get("parked") is True:
        if not isinstance(raw.get("body"), str) or not isinstance(raw.get("tenant_id"), str | None):
            raise EventError("malformed_envelope", "parked message has no body")
        parked: ParkedEvent = raw  # type: ignore[assignment]  # shape checked above, built by parked_event
        return parked
    if "observation" not in raw:
        raise EventError("malformed_envelope", "queue message is not a revsync envelope")
    envelope: Envelope = raw  # type: ignore[assignment]  # shape checked above, built by envelope_for
    return envelope


def is_parked(message: Envelope | ParkedEvent) -> TypeGuard[ParkedEvent]:
    return message.get("parked") is True


def parked_body(parked: ParkedEvent) -> bytes:
    try:
        return base64.b64decode(parked["body"], validate=True)
    except (binascii.Error, ValueError):
        raise EventError("malformed_envelope", "parked body is not base64") from None
