"""The webhook receiver's logic: verify, parse, route to a tenant, enqueue, answer.

It never writes DynamoDB and never calls Stripe. Anything it will not act on but that came from
Stripe is acknowledged with a 2xx (otherwise Stripe retries for three days); anything that did not
provably come from Stripe is a 4xx; a failed enqueue is a 5xx so Stripe retries it. A verified
delivery it cannot read is parked whole with its reason (the dead-letter queue) and acknowledged, so
nothing Stripe sent is lost: a redrive after a fix reads it again through ``route_event``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote

from revsync import http_errors
from revsync.domain import signature
from revsync.domain.events import (
    HANDLED_EVENT_TYPES,
    Envelope,
    EventError,
    ParkedEvent,
    envelope_for,
    parked_event,
    parse_event,
)
from revsync.domain.routing import TenantError, TenantRoute, validate_tenant_id
from revsync.errors import InvalidInput, NotFound, RetryLater, RevsyncError, TooLarge, UnsupportedMethod

logger = logging.getLogger("revsync.receive")


class TenantDirectory(Protocol):
    def by_account(self, account_id: str) -> TenantRoute | None: ...

    def by_tenant(self, tenant_id: str) -> TenantRoute | None: ...


class WebhookSecrets(Protocol):
    def platform(self) -> list[str]: ...

    def tenant(self, route: TenantRoute) -> list[str]: ...


class EventQueue(Protocol):
    def send(self, envelope: Envelope) -> None: ...


class ParkedEvents(Protocol):
    def park(self, parked: ParkedEvent) -> None: ...


_NO_LOG: Mapping[str, Any] = MappingProxyType({})
_CONNECT_PATH = ("webhooks", "stripe")


# NamedTuples, not dataclasses: the receiver's cold start is measured, and each dataclass costs a
# third of a millisecond to define.
class WebhookRequest(NamedTuple):
    body: bytes
    signature: str | None
    tenant_id: str | None  # set on the direct (API-key) route

    @classmethod
    def from_http_event(cls, event: Mapping[str, Any], max_body_bytes: int) -> WebhookRequest:
        """Read an HTTP API or function URL event (payload format 2.0, the same for both); the raw
        bytes are what Stripe signed.

        The tenant comes from the path, not ``pathParameters``: a function URL has no routes, so any
        path and method reach the handler, and only the HTTP API's two webhook paths are answered
        (at the end of the path: behind a custom domain's API mapping, ``rawPath`` starts with it).
        A function URL passes the path percent-encoded, an HTTP API decoded: tenant ids hold no
        "%", so decoding the segment gives the same id from either.
        """
        method = ((event.get("requestContext") or {}).get("http") or {}).get("method")
        segments = str(event.get("rawPath") or "").strip("/").split("/")
        if tuple(segments[-2:]) == _CONNECT_PATH:
            tenant_id = None
        elif len(segments) > 2 and tuple(segments[-3:-1]) == _CONNECT_PATH:
            tenant_id = unquote(segments[-1])
        else:
            raise NotFound("webhooks are POST /webhooks/stripe[/{tenant_id}]")
        if method != "POST":
            raise UnsupportedMethod("webhooks are POSTed")
        raw = event.get("body") or ""
        if len(raw) > max_body_bytes * 4 // 3 + 4:
            raise TooLarge(f"body exceeds {max_body_bytes} bytes", "body_too_large")
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput("body is not valid base64", "bad_encoding") from None
        else:
            body = raw.encode()
        if len(body) > max_body_bytes:
            raise TooLarge(f"body exceeds {max_body_bytes} bytes", "body_too_large")
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        return cls(body=body, signature=headers.get("stripe-signature"), tenant_id=tenant_id)


class WebhookResponse(NamedTuple):
    status: int
    body: dict[str, Any]
    outcome: str  # queued | dropped:<reason> | parked:<reason> | rejected:<code> | failed:<reason>
    log: Mapping[str, Any] = _NO_LOG


def rejected(error: RevsyncError) -> WebhookResponse:
    """A request the receiver will not act on, answered with its error's status and code."""
    status = http_errors.status_of(error)
    assert status is not None, error  # only categorised errors are a caller's
    return WebhookResponse(status, http_errors.body(error), f"rejected:{error.code}")


def _unavailable(step: str, exc: Exception, log: Mapping[str, Any] | None = None) -> WebhookResponse:
    """Our dependency failed, not the caller: Stripe retries (the only 5xx the receiver gives)."""
    error = RetryLater("try again later", "enqueue_failed" if step == "enqueue" else "dependency_unavailable")
    response = rejected(error)
    return response._replace(outcome=f"failed:{step}", log={**(log or {}), "cause": type(exc).__name__})


def _dropped(reason: str, **log: Any) -> WebhookResponse:
    return WebhookResponse(200, {"received": True, "ignored": reason}, f"dropped:{reason}", log)


class Routed(NamedTuple):
    """What a verified delivery comes to: an envelope to queue, or a reason to drop or park it."""

    envelope: Envelope | None = None
    dropped: str | None = None
    parked: str | None = None
    log: Mapping[str, Any] = _NO_LOG


def route_event(body: bytes, tenants: TenantDirectory, direct: TenantRoute | None = None) -> Routed:
    """Read a delivery whose signature was verified (now, or when it was parked) and find its tenant.

    ``direct`` is the tenant of the API-key route it arrived on; without it the event's Connect
    account names the tenant.
    """
    try:
        event = parse_event(body)
    except EventError as exc:
        return Routed(parked=f"{exc.code}: {exc}")
    log: dict[str, Any] = {"event_id": event.id, "event_type": event.type}
    route: TenantRoute | None
    if event.type not in HANDLED_EVENT_TYPES:
        return Routed(dropped="unhandled_type", log=log)  # before any lookup: most of Stripe's traffic
    if direct is not None:
        route = direct
        if route.mode != "api_key":
            return Routed(dropped="unknown_tenant", log=log)
    elif event.account is None:
        return Routed(dropped="no_account", log=log)
    else:
        route = tenants.by_account(event.account)
        if route is None:
            return Routed(dropped="unknown_account", log=log)
    log["tenant_id"] = route.tenant_id
    if route.status != "connected":
        return Routed(dropped="not_connected", log=log)
    if event.livemode != route.livemode:
        return Routed(dropped="livemode_mismatch", log=log)
    try:
        envelope = envelope_for(event, route.tenant_id)
    except EventError as exc:
        return Routed(parked=f"{exc.code}: {exc}", log=log)
    if envelope is None:
        return Routed(dropped="no_customer", log=log)  # a handled type's object of no customer
    if envelope["observation"] is None and route.mode != "oauth":
        return Routed(dropped="not_a_connect_account", log=log)
    return Routed(envelope=envelope, log=log)


def receive(
    request: WebhookRequest,
    *,
    tenants: TenantDirectory,
    secrets: WebhookSecrets,
    queue: EventQueue,
    parked: ParkedEvents,
    now: int,
) -> WebhookResponse:
    direct: TenantRoute | None = None
    if request.tenant_id is not None:
        try:
            validate_tenant_id(request.tenant_id)
        except TenantError as exc:
            return rejected(exc)
    try:
        if request.tenant_id is not None:
            direct = tenants.by_tenant(request.tenant_id)
            if (
                direct is None
                or direct.mode != "api_key"
                or not (direct.sealed_webhook_secret or direct.secret_name)
            ):
                # Nothing to verify against and nothing to write: acknowledge so Stripe stops retrying.
                return _dropped("unknown_tenant", tenant_id=request.tenant_id)
            candidates = secrets.tenant(direct)
        else:
            candidates = secrets.platform()
    except Exception as exc:  # our own dependency (DynamoDB, SSM, Secrets Manager) is down
        return _unavailable("lookup", exc)

    try:
        signature.verify(request.body, request.signature, candidates, now)
    except signature.SignatureError as exc:
        return rejected(exc)

    try:
        routed = route_event(request.body, tenants, direct)
    except Exception as exc:  # the tenant lookup failed: Stripe retries
        return _unavailable("lookup", exc)
    if routed.dropped is not None:
        return _dropped(routed.dropped, **routed.log)
    try:
        if routed.parked is not None:
            parked.park(parked_event(request.body, request.tenant_id, routed.parked))
            reason = routed.parked.split(":", 1)[0]
            return WebhookResponse(200, {"received": True, "parked": reason}, f"parked:{reason}", routed.log)
        assert routed.envelope is not None
        queue.send(routed.envelope)
    except Exception as exc:  # any failure to enqueue: Stripe must retry
        return _unavailable("enqueue", exc, routed.log)
    return WebhookResponse(200, {"received": True}, "queued", routed.log)
