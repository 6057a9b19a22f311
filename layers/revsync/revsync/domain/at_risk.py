"""The customers at risk, listed by kind (docs/contracts.md, "Revenue policy and risk signals"):
``GET /tenants/{tenant_id}/risks?kind=…``.

Each kind is one of the record's risk signals (revsync.domain.risk.Risk). Its time is ``since`` in the
answer and keys the kind's sparse index on the customers table (the attribute of the same name on
the record item, set only while the signal is), newest first; ``mrr`` is the MRR the signal puts at
risk, in the record's ``currency``:

=================  ======================  ====================================================
kind               since                   mrr
=================  ======================  ====================================================
dunning            ``dunning_since``       the customer's MRR
cancel_scheduled   ``cancel_scheduled_at`` ``mrr_at_risk``: the subscriptions scheduled to end
change_scheduled   ``scheduled_change_at`` the customer's MRR now (and ``scheduled_mrr``, after)
trial_ending       ``trial_ends_at``       the customer's MRR (a trial counts 0 until it converts)
card_expiring      ``card_expires_at``     the customer's MRR
=================  ======================  ====================================================

A customer in dunning whose signal has no date (an ``unpaid`` subscription, or a customer Stripe marks
``delinquent``) is dated by its last failed payment, else keeps the time it was first listed (a
``past_due`` run that became ``unpaid`` keeps its start), else by when revsync first recorded it.

A page's cursor is opaque: the position after the page's last customer, with the tenant and kind it
was issued for, signed (HMAC-SHA256, a key derived from the stack's OAuth state key). A cursor that
was altered, or issued for another tenant or kind, is refused: a caller only ever pages through the
tenant and kind it asked for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from revsync.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class RiskKind:
    name: str
    since: str  # the risk signal, and the record item's attribute keying the kind's index
    mrr: str  # where the answer's ``mrr`` comes from: the record item's ``mrr``, or this attribute
    index: str  # the customers table's index


KINDS: dict[str, RiskKind] = {
    kind.name: kind
    for kind in (
        RiskKind("dunning", "dunning_since", "mrr", "risk_dunning"),
        RiskKind("cancel_scheduled", "cancel_scheduled_at", "mrr_at_risk", "risk_cancel_scheduled"),
        RiskKind("change_scheduled", "scheduled_change_at", "mrr", "risk_change_scheduled"),
        RiskKind("trial_ending", "trial_ends_at", "mrr", "risk_trial_ending"),
        RiskKind("card_expiring", "card_expires_at", "mrr", "risk_card_expiring"),
    )
}
# The record item's sparse attributes: each kind's time, and the MRR figures only one kind shows.
RISK_ATTRIBUTES = (
    "dunning_since",
    "cancel_scheduled_at",
    "mrr_at_risk",
    "scheduled_change_at",
    "scheduled_mrr",
    "trial_ends_at",
    "card_expires_at",
)
DEFAULT_LIMIT, MAX_LIMIT = 50, 100


class Undated(NamedTuple):
    """Dunning without a date of its own: keep the time already listed, else ``fallback``."""

    fallback: int | None  # the last failed payment; None: when revsync first records it


def risk_attributes(risk: Mapping[str, Any] | None) -> dict[str, int | Undated | None]:
    """The record item's sparse attributes for the record's ``risk`` (None: a record without risk
    signals, written before they were derived): each one's value, or None to remove it."""
    signals: Mapping[str, Any] = risk or {}

    def when(name: str) -> int | None:
        value = signals.get(name)
        return None if value is None else int(value)

    dunning: int | Undated | None = None
    if signals.get("in_dunning"):
        dunning = when("dunning_since")
        if dunning is None:
            dunning = Undated(when("last_payment_failed_at"))
    cancel, change = when("cancel_scheduled_at"), when("scheduled_change_at")
    return {
        "dunning_since": dunning,
        "cancel_scheduled_at": cancel,
        "mrr_at_risk": None if cancel is None else int(signals.get("mrr_at_risk") or 0),
        "scheduled_change_at": change,
        "scheduled_mrr": None if change is None else when("scheduled_mrr"),
        "trial_ends_at": when("trial_ends_at"),
        "card_expires_at": when("card_expires_at"),
    }


def at_risk_entry(kind: RiskKind, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """One customer of the answer, from what the kind's index projects of its record item."""
    entry = {
        "external_id": attributes["external_id"],
        "stripe_customer_id": attributes.get("stripe_customer_id"),
        "mrr": int(attributes.get(kind.mrr) or 0),
        "currency": attributes.get("currency"),
        "since": int(attributes[kind.since]),
    }
    if kind.name == "change_scheduled":
        scheduled = attributes.get("scheduled_mrr")
        entry["scheduled_mrr"] = None if scheduled is None else int(scheduled)
    return entry


def risk_kind(value: str | None) -> RiskKind:
    kind = KINDS.get(value or "")
    if kind is None:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", "invalid_kind")
    return kind


_LIMIT = re.compile(r"^[0-9]{1,3}$")


def page_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}", "invalid_limit")
    return int(value)


# --- the cursor -----------------------------------------------------------------------------------


class Position(NamedTuple):
    """Where a page ended: its last customer's time and key (the index's order)."""

    since: int
    external_id: str


_CURSOR_PURPOSE = b"revsync/risks-cursor/v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, key: str) -> str:
    # A key of its own, derived from the state key: a cursor and an OAuth state never sign alike.
    cursor_key = hmac.new(key.encode(), _CURSOR_PURPOSE, hashlib.sha256).digest()
    return _b64(hmac.new(cursor_key, payload.encode(), hashlib.sha256).digest())


def issue_cursor(tenant_id: str, kind: RiskKind, position: Position, key: str) -> str:
    body = {"t": tenant_id, "k": kind.name, "s": position.since, "e": position.external_id}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_signature(payload, key)}"


def read_cursor(cursor: str, tenant_id: str, kind: RiskKind, key: str) -> Position:
    """The position a cursor issued for this tenant and kind names; ``invalid_cursor`` for anything
    else (malformed, altered, or issued for another tenant or kind)."""
    refused = InvalidInput("cursor is not one this route issued for this tenant and kind", "invalid_cursor")
    if not cursor.isascii() or cursor.count(".") != 1:
        raise refused
    payload, signature = cursor.split(".")
    if not hmac.compare_digest(_signature(payload, key), signature):
        raise refused
    try:
        body = json.loads(_unb64(payload))
        named = (body["t"], body["k"], body["s"], body["e"])
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise refused from None
    if named[:2] != (tenant_id, kind.name) or type(named[2]) is not int or not isinstance(named[3], str):
        raise refused
    return Position(named[2], named[3])
