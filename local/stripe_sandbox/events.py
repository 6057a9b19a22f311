"""Events and webhooks: the account's event log, its webhook endpoints, and signed delivery to them.

Every change a resource module makes is recorded by ``emit``: the event is kept (``GET /v1/events``
lists it even when its delivery is dropped) and queued for each enabled endpoint that wants its type
(the account's own, and its platform's Connect endpoints). ``Deliverer`` posts the queue, signed as
Stripe signs, optionally delayed, duplicated, reordered or dropped (``/_sandbox/config``), and retries
a failed delivery with backoff.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request

from revsync.domain.signature import sign_header

from local.stripe_sandbox.core import Account, Delivery, Obj, Sandbox, StripeError
from local.stripe_sandbox.forms import as_bool
from local.stripe_sandbox.rest import collection
from local.stripe_sandbox.shapes import API_VERSION, public

MAX_DELIVERY_ATTEMPTS = 6


def emit(sb: Sandbox, account: Account, event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
    data: Obj = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    event: Obj = {
        "id": sb.new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": sb.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "type": event_type,
        "request": {"id": None, "idempotency_key": None},
    }
    if account.platform:
        event["account"] = account.id
    event = public(event)  # a copy, shaped as the claimed version defines it
    account.events.append(event)
    for endpoint in _endpoints_for(sb, account):
        if "*" in endpoint["enabled_events"] or event_type in endpoint["enabled_events"]:
            _schedule(sb, endpoint, event)
    return event


def retrieve_event(sb: Sandbox, account: Account, params: Obj, event_id: str) -> Obj:
    event = next((e for e in account.events if e["id"] == event_id), None)
    if event is None:
        raise StripeError(404, f"No such event: '{event_id}'", code="resource_missing")
    return event


# ``GET /v1/events``' ``types[]``: "an array of up to 20 strings" (the SDK's EventListParams).
MAX_TYPES = 20


def list_events(sb: Sandbox, account: Account, params: Obj) -> list[Obj]:
    """``GET /v1/events``: the account's events, filtered (``matches``); ``type`` and ``types`` are
    refused together, and ``types`` of more than 20."""
    types = params.get("types")
    if types is not None and params.get("type"):
        raise StripeError(400, "You may pass either type or types, but not both.", param="types")
    if isinstance(types, list) and len(types) > MAX_TYPES:
        raise StripeError(
            400, f"types: an array of up to {MAX_TYPES} event types ({len(types)} given).", param="types"
        )
    return collection("event", matches, lambda sb, a: list(a.events))(sb, account, params)  # type: ignore[return-value]


def matches(event: Obj, params: Obj) -> bool:
    """``GET /v1/events``'s filters: ``type`` or ``types[]`` (a trailing ``*`` matches a prefix)."""
    types = params.get("types") or ([params["type"]] if params.get("type") else [])
    return not types or any(
        event["type"] == t or (t.endswith("*") and event["type"].startswith(t[:-1])) for t in types
    )


def _endpoints_for(sb: Sandbox, account: Account) -> list[Obj]:
    own = [e for e in account.endpoints.values() if not e["connect"]]
    platform = sb.accounts.get(account.platform) if account.platform else None
    connect = [e for e in platform.endpoints.values() if e["connect"]] if platform else []
    return [e for e in own + connect if e["status"] == "enabled"]


def _schedule(sb: Sandbox, endpoint: Obj, event: Obj) -> None:
    if random.random() < float(sb.settings["delivery_drop_ratio"]):  # noqa: S311
        sb.stats["deliveries dropped"] = sb.stats.get("deliveries dropped", 0) + 1
        return
    delay = sb.settings["delivery_delay_ms"] / 1000
    copies = 2 if random.random() < float(sb.settings["delivery_duplicate_ratio"]) else 1  # noqa: S311
    for _ in range(copies):
        jitter = random.uniform(0, max(delay, 0.05)) if sb.settings["delivery_reorder"] else 0  # noqa: S311
        sb.outbox.append(Delivery(time.monotonic() + delay + jitter, endpoint, event))
    for listener in sb.delivery_listeners:
        listener()


# --- webhook endpoints -----------------------------------------------------------------------------


def create_endpoint(sb: Sandbox, account: Account, params: Obj) -> Obj:
    if not params.get("url"):
        raise StripeError(400, "Missing required param: url.", param="url")
    endpoint = {
        "id": sb.new_id("we"),
        "object": "webhook_endpoint",
        "url": params["url"],
        "enabled_events": params.get("enabled_events") or ["*"],
        "connect": as_bool(params.get("connect", False)),
        # Sandbox extension: the caller may choose the signing secret (the local stack's is fixed).
        "secret": params.get("secret") or "whsec_" + sb.new_id("sec"),
        "status": "enabled",
        "created": sb.now(),
        "livemode": False,
        "api_version": None,
    }
    account.endpoints[endpoint["id"]] = endpoint
    return endpoint


def retrieve_endpoint(sb: Sandbox, account: Account, params: Obj, endpoint_id: str) -> Obj:
    endpoint = account.endpoints.get(endpoint_id)
    if endpoint is None:
        raise StripeError(404, f"No such webhook_endpoint: '{endpoint_id}'", code="resource_missing")
    return endpoint


def delete_endpoint(sb: Sandbox, account: Account, params: Obj, endpoint_id: str) -> Obj:
    account.endpoints.pop(endpoint_id, None)
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


# --- delivery --------------------------------------------------------------------------------------


class Deliverer:
    """Posts queued deliveries to their endpoints (a background thread runs ``deliver_forever``)."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self._wake = threading.Event()
        sb.delivery_listeners.append(self._wake.set)
        self._in_flight = 0
        self._stop = threading.Event()
        self.delivered = 0
        self.failed = 0

    def pending(self) -> int:
        with self.sb.lock:
            return len(self.sb.outbox) + self._in_flight

    def deliver_forever(self) -> None:
        while not self._stop.is_set():
            with self.sb.lock:
                now = time.monotonic()
                due = sorted((d for d in self.sb.outbox if d.due <= now), key=lambda d: d.due)
                for delivery in due:
                    self.sb.outbox.remove(delivery)
                self._in_flight += len(due)
                wait = min((d.due for d in self.sb.outbox), default=now + 0.5) - now
            for delivery in due:
                self._deliver(delivery)
            if not due:
                self._wake.wait(timeout=max(0.005, min(wait, 0.5)))
                self._wake.clear()

    def _deliver(self, delivery: Delivery) -> None:
        payload = json.dumps(delivery.event).encode()
        header = sign_header(delivery.endpoint["secret"], int(time.time()), payload)
        request = urllib.request.Request(  # noqa: S310 (an endpoint URL registered with the sandbox)
            delivery.endpoint["url"],
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": header,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        ok = False
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (a registered local URL)
                ok = 200 <= response.status < 300
        except (urllib.error.URLError, OSError):
            ok = False
        with self.sb.lock:
            self._in_flight -= 1
            if ok:
                self.delivered += 1
            elif delivery.attempt + 1 < MAX_DELIVERY_ATTEMPTS:
                # Stripe retries for days with backoff; locally the same shape in milliseconds.
                delivery.attempt += 1
                delivery.due = time.monotonic() + 0.1 * 2**delivery.attempt
                self.sb.outbox.append(delivery)
            else:
                self.failed += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
