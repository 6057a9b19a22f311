"""Fuzz the public routes, and the admin routes as an operator, through the real handlers on moto
(hypothesis draws the inputs).

Asserts, for every input: no 5xx; nothing forged or unsigned reaches either queue; every signed
delivery is queued, dropped by rule, or parked with its reason; and after the worker runs, every
queued message was applied, dropped by rule or parked (none lost). An admin route answers whatever
path values, body bytes and query it gets with a 2xx, 3xx or JSON 4xx. A quick profile runs in
``make test``; ``make soak`` runs 10,000 inputs over HTTP against the local stack.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from revsync.domain.tenancy import Connection, Tenant
from revsync.store.tenants import TenantStore

from local.fuzz import FuzzInput, acknowledged, fuzz_input
from local.inprocess import InProcessStack
from local.template import HttpRoute, http_routes
from tests.conftest import FROZEN_NOW
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration

DIRECT_SECRET = "whsec_direct_tenant_secret"
# Bodies parked so far, per stack: the same signed bytes parked twice are one parked copy (FIFO
# deduplicates them by content), so only a first parking must grow the dead-letter queue.
_PARKED_BODIES: dict[int, set[bytes]] = {}


def _connect(stack: InProcessStack) -> None:
    TenantStore().save(
        Tenant("acme", Connection("connected", "oauth", "acct_fuzz")).with_config("metadata.app_id"),
        FROZEN_NOW,
    )
    sealed = stack.graph("TenantApiFunction").secrets.seal("direct", "rk_test_direct_key_1", DIRECT_SECRET)
    TenantStore().save(
        Tenant("direct", Connection("connected", "api_key", sealed=sealed)).with_config("id"), FROZEN_NOW
    )


def _on_one_stack(examples: int) -> settings:
    """Hypothesis settings for inputs sent to one in-process stack (a fixture shared by the examples),
    the same examples on every run."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def _send(stack: InProcessStack, item: FuzzInput, via_url: bool) -> tuple[int, Any]:
    """Webhook inputs go to the HTTP API's route or to the receiver's function URL (the two
    entrances Stripe may be given); the callback only exists on the API."""
    if via_url and item.path.startswith("/webhooks/"):
        response = stack.url_request("WebhookFunction", item.method, item.path, item.body, item.headers)
    else:
        response = stack.request(item.method, item.path, item.body, item.headers, item.query)
    try:
        body = json.loads(response.body)
    except ValueError:
        body = response.body
    return response.status, body


@_on_one_stack(120)
@given(seeds=st.lists(st.integers(min_value=0, max_value=2**32), min_size=1, max_size=12))
def test_public_routes_never_5xx_and_lose_nothing(
    stack: InProcessStack, stripe_fake: Any, seeds: list[int]
) -> None:
    if TenantStore().get("acme") is None:
        _connect(stack)
    before = {q: stack.queue_depth(q) for q in ("EventsQueue", "EventsDeadLetterQueue")}
    outcomes: dict[str, int] = {}
    seen = _PARKED_BODIES.setdefault(id(stack), set())
    newly_parked = 0
    for n, seed in enumerate(seeds):
        item = fuzz_input(
            random.Random(seed),
            secret=PLATFORM_SECRET,
            now=FROZEN_NOW,
            account="acct_fuzz",
            direct_tenant="direct",
            direct_secret=DIRECT_SECRET,
            serial=seed * 100 + n,
        )
        status, body = _send(stack, item, via_url=seed % 2 == 1)
        assert status < 500, (item.kind, item.path, status, body)
        outcome = acknowledged(status, body) if item.path.startswith("/webhooks/") else "callback"
        if item.path.startswith("/webhooks/") and not item.signed:
            # Unsigned or forged: a 4xx, or a 2xx that ignores it (unknown tenant), never queued.
            assert outcome in ("rejected", "dropped"), (item.kind, status, body)
        if item.signed:
            assert outcome in ("queued", "dropped", "parked"), (item.kind, status, body)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == "parked" and item.body not in seen:
            seen.add(item.body)
            newly_parked += 1
    # Every queued message leaves the queue applied, dropped by rule or parked: none lost, none stuck.
    stats = stack.drain()
    assert stack.queue_depth("EventsQueue") == 0
    queued = outcomes.get("queued", 0)
    dead_letters = stack.queue_depth("EventsDeadLetterQueue") - before["EventsDeadLetterQueue"]
    # Duplicate event ids within FIFO's window are one message; so at most, never more.
    assert stats.succeeded <= queued + before["EventsQueue"]
    # Every delivery the receiver parked is kept; the worker may park more (unreadable on apply).
    assert newly_parked <= dead_letters <= newly_parked + stats.succeeded


_SEGMENTS = st.sampled_from(["webhooks", "stripe", "direct", "acme", "", "..", "%2F", "%00", "é", "x" * 70])


@_on_one_stack(60)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    segments=st.lists(_SEGMENTS, max_size=5),
    body=st.binary(max_size=300),
    query=st.sampled_from(["", "a=1", "tenant_id=acme&tenant_id=x", "%ZZ"]),
)
def test_the_function_url_answers_any_method_and_path_with_a_4xx(
    stack: InProcessStack, method: str, segments: list[str], body: bytes, query: str
) -> None:
    """A function URL has no router in front of the receiver: whatever arrives unsigned, at whatever
    path and with whatever method, is a 4xx and queues nothing."""
    before = {q: stack.queue_depth(q) for q in ("EventsQueue", "EventsDeadLetterQueue")}
    response = stack.url_request(
        "WebhookFunction", method, "/" + "/".join(segments), body, {"content-type": "text/plain"}, query
    )
    assert 400 <= response.status < 500, (method, segments, response.status, response.body)
    assert json.loads(response.body)["error"]
    assert {q: stack.queue_depth(q) for q in before} == before


# --- the admin routes: whatever an operator (or a browser) sends, a 2xx/3xx or a clear 4xx -----------

_ADMIN_ROUTES = [r for r in http_routes() if r.auth != "NONE"]
_PATH_VALUES = st.sampled_from(
    ["acme", "direct", "nobody", "u-1", "stripe:cus_1", "acme%0A", "%2F", "%00", "é", "..", "x" * 70, "a b"]
)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = st.sampled_from(["customer_id_trait", "api_key", "webhook_secret", "return_url", "execution"])
_BODIES = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(_FIELDS | st.text(max_size=10), _JSON_VALUES, max_size=3).map(
        lambda d: json.dumps(d).encode()
    ),
)
_QUERIES = st.lists(
    st.tuples(
        st.sampled_from(
            ["from", "to", "currency", "return", "state", "code", "kind", "limit", "cursor", "x"]
        ),
        st.text(max_size=12),
    ),
    max_size=3,
).map(urlencode)


@_on_one_stack(150)
@given(
    route=st.sampled_from(_ADMIN_ROUTES),
    values=st.lists(_PATH_VALUES, min_size=3, max_size=3),
    body=_BODIES,
    query=_QUERIES,
)
def test_admin_routes_never_5xx_whatever_arrives(
    stack: InProcessStack, stripe_fake: Any, route: HttpRoute, values: list[str], body: bytes, query: str
) -> None:
    if TenantStore().get("acme") is None:
        _connect(stack)
    path = route.path
    for value in values:
        path = re.sub(r"\{[^}]+\}", value, path, count=1)
    headers = {"content-type": "application/json"}

    response = stack.request(route.method, path, body, headers, query)

    assert response.status < 500, (route.route_key, path, query, body, response.status, response.body)
    if response.status >= 400 and "json" in response.headers.get("content-type", ""):
        assert json.loads(response.body)["error"], response.body
