"""Hostile and odd inputs for the public routes, from a seeded ``random.Random`` (dev only).

Shared by the hypothesis suite (tests/integration/test_fuzz.py, which draws the Random) and the soak
(``make soak``, 10,000 inputs over HTTP against the local stack). Each input says what a correct
revsync must do with it: a forged or unsigned one changes nothing; a signed one is queued, dropped by
rule, or parked with its reason; nothing is ever a 5xx.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from revsync.domain.events import HANDLED_EVENT_TYPES
from revsync.domain.signature import compute_signature

from local import stripe_shapes as S

Kind = Literal["signed_event", "mutated_event", "forged", "unsigned", "signed_bytes", "direct", "callback"]
KINDS: tuple[Kind, ...] = (
    "signed_event",
    "mutated_event",
    "forged",
    "unsigned",
    "signed_bytes",
    "direct",
    "callback",
)
_TEXTS = ["", "é", "\u0663", "\x00", "\ud800", "😀", "a" * 300, "t=1,v1=", "../", "%00", " ", "\n"]
_CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/octet-stream",
    "",
    "application/json; charset=latin-1",
]


@dataclass(frozen=True, slots=True)
class FuzzInput:
    kind: Kind
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    query: str = ""
    signed: bool = False  # validly signed with the route's secret: Stripe may have sent it
    event_id: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def _quoted(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def random_text(rng: random.Random, limit: int = 40) -> str:
    if rng.random() < 0.4:
        return rng.choice(_TEXTS)
    return "".join(
        chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x2FFF)])) for _ in range(rng.randint(0, limit))
    )


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randint(0, 8 if depth < 3 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**70), 10**400 if rng.random() < 0.1 else 7])
    if choice == 3:
        return rng.choice([0.5, -0.0, 1e308, 3.0, float("1e-300")])
    if choice in (4, 5):
        return random_text(rng)
    if choice in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_text(rng, 8): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, index))
            found.extend(_paths(child, (*prefix, index)))
    return found


def mutate(document: dict[str, Any], rng: random.Random, times: int = 1) -> dict[str, Any]:
    """``document`` with ``times`` random nested values replaced by random JSON (or removed)."""
    document = json.loads(json.dumps(document))
    for _ in range(times):
        paths = _paths(document)
        if not paths:
            break
        path = rng.choice(paths)
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = random_json(rng)
    return document


def stripe_object(event_type: str, rng: random.Random) -> dict[str, Any]:
    customer_id = f"cus_fuzz{rng.randint(0, 30)}"
    if event_type.startswith("customer.subscription."):
        items = [S.subscription_item(S.price(rng.choice([0, 999, 4900]))) for _ in range(rng.randint(0, 2))]
        status = rng.choice(["active", "trialing", "past_due", "canceled", "unpaid", "incomplete"])
        return S.subscription(customer_id, items, status=status)
    if event_type.startswith("customer.discount."):
        return {
            "id": f"di_{rng.randint(0, 9)}",
            "object": "discount",
            "customer": customer_id,
            "subscription": None,
        }
    if event_type.startswith("invoice."):
        return S.invoice(customer_id, f"sub_fuzz{rng.randint(0, 9)}", amount_paid=rng.choice([0, 100, 4900]))
    if event_type == "account.application.deauthorized":
        return {"id": "ca_fuzz", "object": "application"}
    return S.customer(
        customer_id,
        email=f"user{rng.randint(0, 99)}@example.com",
        metadata={"app_id": f"u-{rng.randint(0, 30)}"},
    )


def _sign(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"


def fuzz_input(
    rng: random.Random,
    *,
    secret: str,
    now: int,
    account: str,
    direct_tenant: str,
    direct_secret: str,
    serial: int,
) -> FuzzInput:
    kind = rng.choice(KINDS)
    event_types = [*sorted(HANDLED_EVENT_TYPES), "charge.succeeded", "customer.source.created"]
    event_type = rng.choice(event_types)
    routed_to = account if rng.random() < 0.9 else rng.choice([None, "acct_unknown", random_text(rng, 10)])
    if event_type == "account.application.deauthorized" and rng.random() < 0.95:
        routed_to = "acct_unknown"  # mostly another account's: one would disconnect the fuzzed tenant
    event = S.event(
        event_type,
        stripe_object(event_type, rng),
        created=now - rng.randint(0, 3 * 86_400),
        account=routed_to,
        id=f"evt_fuzz{serial:08d}",
    )
    content_type = rng.choice(_CONTENT_TYPES)
    if kind in ("signed_event", "mutated_event", "forged", "direct"):
        if kind == "mutated_event":
            event = mutate(event, rng, rng.randint(1, 3))
        body = json.dumps(event).encode()
        if kind == "direct":
            event.pop("account", None)
            body = json.dumps(event).encode()
            right = rng.random() < 0.5
            headers = {
                "content-type": content_type,
                "stripe-signature": _sign(direct_secret if right else secret, now, body),
            }
            tenant = direct_tenant if rng.random() < 0.8 else _quoted(random_text(rng, 12)) or "x"
            return FuzzInput(
                kind,
                "POST",
                f"/webhooks/stripe/{tenant}",
                body,
                headers,
                signed=right and tenant == direct_tenant,
                event_id=str(event.get("id")),
            )
        header = _sign(secret, now, body)
        if kind == "forged":
            forgery = rng.choice(["tamper", "wrong_secret", "stale", "garbage", "non_ascii"])
            if forgery == "tamper":
                body = body.replace(b"cus_", b"cuz_", 1) + b" "
            elif forgery == "wrong_secret":
                header = _sign("whsec_attacker", now, body)
            elif forgery == "stale":
                header = _sign(secret, now - 301, body)
            elif forgery == "garbage":
                header = random_text(rng, 60)
            else:
                header = f"t={now},v1={random_text(rng, 64)}"
        headers = {"content-type": content_type, "stripe-signature": header}
        return FuzzInput(
            kind,
            "POST",
            "/webhooks/stripe",
            body,
            headers,
            signed=kind != "forged",
            event_id=str(event.get("id")),
        )
    if kind in ("unsigned", "signed_bytes"):
        body = (
            rng.randbytes(rng.randint(0, 300))
            if rng.random() < 0.5
            else random_text(rng, 200).encode("utf-8", "surrogatepass")
        )
        headers = {"content-type": content_type}
        if kind == "signed_bytes":
            headers["stripe-signature"] = _sign(secret, now, body)
        elif rng.random() < 0.5:
            headers["stripe-signature"] = random_text(rng, 80)
        for _ in range(rng.randint(0, 3)):
            headers[_quoted(random_text(rng, 10)) or "x-odd"] = random_text(rng, 30)
        return FuzzInput(kind, "POST", "/webhooks/stripe", body, headers, signed=kind == "signed_bytes")
    # The OAuth callback: any query at all.
    keys = ["code", "state", "error", "scope", random_text(rng, 5)]
    query = "&".join(
        f"{_quoted(rng.choice(keys))}={_quoted(random_text(rng, 120))}" for _ in range(rng.randint(0, 4))
    )
    return FuzzInput("callback", "GET", "/oauth/stripe/callback", b"", {}, query=query)


def acknowledged(status: int, body: Any) -> str:
    """What a 2xx webhook answer says happened: queued, dropped or parked."""
    if not isinstance(body, dict) or status != 200 or body.get("received") is not True:
        return "rejected"
    if "parked" in body:
        return "parked"
    if "ignored" in body:
        return "dropped"
    return "queued"
