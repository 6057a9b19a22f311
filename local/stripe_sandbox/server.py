"""The sandbox's HTTP face: Stripe's REST conventions, OAuth, webhook delivery and a control API.

Faithful where revsync depends on it: newest first, ``limit`` at most 100, ``starting_after`` /
``ending_before`` / ``has_more``, ``expand[]``, subscriptions without canceled ones unless
``status=all``, 429 ``rate_limit`` errors, signed deliveries. Control routes live under ``/_sandbox``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from revsync.domain.signature import sign_header
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local.stripe_sandbox.forms import as_bool, as_int, decode
from local.stripe_sandbox.limits import Limiters, Limits
from local.stripe_sandbox.model import HIDDEN_BY_DEFAULT, Account, Delivery, OAuthError, Sandbox, StripeError
from local.stripe_sandbox.shapes import public

MAX_DELIVERY_ATTEMPTS = 6

_KINDS = (
    "any(products, prices, coupons, customers, subscriptions, subscription_items, invoices, invoiceitems,"
    " events, webhook_endpoints)"
)
_RULES = [
    Rule("/v1/account", endpoint="account"),
    Rule("/v1/invoices/<oid>/lines", endpoint="invoice_lines"),
    Rule(
        "/v1/invoices/<oid>/<any(finalize, pay, void, mark_uncollectible):action>",
        endpoint="invoice_action",
    ),
    Rule(
        f"/v1/<{_KINDS}:kind>",
        endpoint="collection",
    ),
    Rule(
        f"/v1/<{_KINDS}:kind>/<oid>",
        endpoint="member",
    ),
    Rule("/v1/customers/<oid>/discount", endpoint="customer_discount"),
    Rule("/v1/subscriptions/<oid>/resume", endpoint="resume"),
    Rule("/oauth/authorize", endpoint="authorize"),
    Rule("/oauth/token", endpoint="token"),
    Rule("/oauth/deauthorize", endpoint="deauthorize"),
    Rule("/_sandbox/clock/advance", endpoint="advance"),
    Rule("/_sandbox/config", endpoint="config"),
    Rule("/_sandbox/customers/<oid>/payment_failure", endpoint="payment_failure"),
    Rule("/_sandbox/customers/<oid>/discount", endpoint="customer_coupon"),
    Rule("/_sandbox/stats", endpoint="stats"),
    Rule("/_sandbox/seed", endpoint="seed"),
    Rule("/_sandbox/flush", endpoint="flush"),
]
_LIST = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})
_PAGE = frozenset({"limit", "starting_after", "ending_before", "expand"})
# The parameters each route implements (checked against the stripe SDK's own parameter types in
# tests/unit/test_sandbox_contract.py). Anything else is Stripe's 400 ``parameter_unknown``, never
# silently ignored. ``secret`` on webhook endpoints is the sandbox's one extension.
SUPPORTED_PARAMS: dict[str, frozenset[str]] = {
    "GET /v1/products": _LIST,
    "GET /v1/prices": _LIST,
    "GET /v1/coupons": _LIST,
    "GET /v1/customers": _LIST | {"email"},
    "GET /v1/subscriptions": _LIST | {"status", "customer"},
    "GET /v1/subscription_items": _PAGE | {"subscription"},
    "GET /v1/invoices": _LIST | {"customer", "status", "subscription"},
    "GET /v1/invoiceitems": _LIST,
    "GET /v1/events": _LIST | {"type", "types"},
    "GET /v1/webhook_endpoints": _PAGE,
    "GET /v1/invoices/{id}/lines": _PAGE,
    "GET /v1/{kind}/{id}": frozenset({"expand"}),
    "GET /v1/account": frozenset({"expand"}),
    "POST /v1/products": frozenset({"id", "name", "description", "metadata", "expand"}),
    "POST /v1/prices": frozenset(
        {
            "product",
            "product_data",
            "currency",
            "unit_amount",
            "recurring",
            "billing_scheme",
            "tiers",
            "tiers_mode",
            "transform_quantity",
            "lookup_key",
            "metadata",
            "nickname",
            "expand",
        }
    ),
    "POST /v1/coupons": frozenset(
        {
            "id",
            "percent_off",
            "amount_off",
            "currency",
            "duration",
            "duration_in_months",
            "metadata",
            "name",
            "expand",
        }
    ),
    "POST /v1/customers": frozenset(
        {"email", "name", "description", "metadata", "balance", "payment_method", "expand"}
    ),
    "POST /v1/customers/{id}": frozenset({"email", "name", "description", "metadata", "balance", "expand"}),
    "POST /v1/subscriptions": frozenset(
        {
            "customer",
            "items",
            "trial_end",
            "trial_period_days",
            "trial_settings",
            "cancel_at_period_end",
            "metadata",
            "discounts",
            "collection_method",
            "days_until_due",
            "expand",
        }
    ),
    "POST /v1/subscriptions/{id}": frozenset(
        {
            "items",
            "cancel_at_period_end",
            "metadata",
            "pause_collection",
            "trial_end",
            "discounts",
            "collection_method",
            "days_until_due",
            "expand",
        }
    ),
    "POST /v1/subscriptions/{id}/resume": frozenset({"expand"}),
    "POST /v1/invoices": frozenset(
        {
            "customer",
            "collection_method",
            "days_until_due",
            "auto_advance",
            "description",
            "metadata",
            "currency",
            "pending_invoice_items_behavior",
            "expand",
        }
    ),
    "POST /v1/invoiceitems": frozenset(
        {"customer", "amount", "currency", "description", "invoice", "metadata", "period", "expand"}
    ),
    "POST /v1/invoices/{id}/pay": frozenset({"paid_out_of_band", "expand"}),
    "POST /v1/invoices/{id}/finalize": frozenset({"expand"}),
    "POST /v1/invoices/{id}/void": frozenset({"expand"}),
    "POST /v1/invoices/{id}/mark_uncollectible": frozenset({"expand"}),
    "POST /v1/webhook_endpoints": frozenset(
        {"url", "enabled_events", "connect", "description", "secret", "expand"}
    ),
    "DELETE /v1/customers/{id}": frozenset(),
    "DELETE /v1/customers/{id}/discount": frozenset(),
    "DELETE /v1/subscriptions/{id}": frozenset(),
    "DELETE /v1/webhook_endpoints/{id}": frozenset(),
}


def supported_params(method: str, endpoint: str, args: dict[str, str]) -> frozenset[str] | None:
    """The parameters a route implements; None for a route the sandbox does not serve."""
    kind = args.get("kind", "")
    if endpoint == "collection":
        return SUPPORTED_PARAMS.get(f"{method} /v1/{kind}")
    if endpoint == "member":
        if method == "GET":
            return SUPPORTED_PARAMS["GET /v1/{kind}/{id}"]
        return SUPPORTED_PARAMS.get(f"{method} /v1/{kind}/{{id}}")
    if endpoint == "invoice_action":
        return SUPPORTED_PARAMS.get(f"{method} /v1/invoices/{{id}}/{args['action']}")
    template = {
        "account": "/v1/account",
        "invoice_lines": "/v1/invoices/{id}/lines",
        "customer_discount": "/v1/customers/{id}/discount",
        "resume": "/v1/subscriptions/{id}/resume",
    }.get(endpoint)
    return SUPPORTED_PARAMS.get(f"{method} {template}") if template else None


_SINGULAR = {
    "products": "product",
    "prices": "price",
    "coupons": "coupon",
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "invoiceitems": "invoiceitem",
    "subscription_items": "subscription_item",
    "events": "event",
    "webhook_endpoints": "webhook_endpoint",
}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


def _params(request: Request) -> dict[str, Any]:
    pairs = list(request.args.items(multi=True))
    if request.method in ("POST", "DELETE"):
        pairs += list(request.form.items(multi=True))
    return decode(pairs)


def _api_key(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    if header.startswith("Basic "):
        return base64.b64decode(header[6:]).decode().split(":", 1)[0]
    raise StripeError(401, "You did not provide an API key.", code="api_key_missing")


class SandboxApp:
    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox or Sandbox()
        self.urls = Map([rule.empty() for rule in _RULES])  # a rule binds to one map: copies per app
        self.limiters = Limiters()
        self.requests: dict[str, int] = {}
        self._wake = threading.Event()
        self.sandbox.delivery_listeners.append(self._wake.set)
        self._in_flight = 0
        self._stop = threading.Event()
        self.delivered = 0
        self.failed_deliveries = 0

    # --- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self.urls.bind_to_environ(environ).match()
            response = self.dispatch(request, str(endpoint), dict(args))
        except StripeError as exc:
            response = _json(exc.body(), exc.status, _rate_headers(exc))
        except OAuthError as exc:
            response = _json({"error": exc.error, "error_description": exc.description}, 400)
        except (NotFound, MethodNotAllowed) as exc:
            response = _json(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"Unrecognized request URL ({request.method}: {request.path}).",
                    }
                },
                exc.code or 404,
            )
        except HTTPException as exc:
            response = exc.get_response()
        return response(environ, start_response)

    def _count(self, key: str) -> None:
        self.requests[key] = self.requests.get(key, 0) + 1

    def dispatch(self, request: Request, endpoint: str, args: dict[str, str]) -> Response:
        sandbox = self.sandbox
        if endpoint in ("advance", "config", "payment_failure", "customer_coupon", "stats", "flush", "seed"):
            control: Callable[..., Response] = getattr(self, f"control_{endpoint}")
            return control(request, **args)
        if endpoint != "authorize" and self._outage():
            raise StripeError(500, "An unknown error occurred (sandbox outage).", type_="api_error")
        if endpoint in ("authorize", "token", "deauthorize"):
            oauth: Callable[[Request], Response] = getattr(self, f"oauth_{endpoint}")
            return oauth(request)
        with sandbox.lock:
            account = sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
        route = f"{request.method} {_route_template(endpoint, args)}"
        self._count(f"{account.id} {route}")
        reason = self.limiters.admit(account.id, route, self._limits())
        if reason is not None:
            self._count(f"{account.id} 429")
            self._count(f"{account.id} 429 {reason} {route}")
            raise StripeError(
                429,
                "Too many requests hit the API too quickly. We recommend an exponential "
                "backoff of your requests.",
                code="rate_limit",
                rate_limited_reason=reason,
            )
        try:
            latency = float(sandbox.settings["latency_ms"]) / 1000
            if latency:
                time.sleep(latency)
            return self._answer(request, endpoint, account, args)
        finally:
            self.limiters.release(account.id)

    def _limits(self) -> Limits:
        settings = self.sandbox.settings

        def rate(name: str) -> float | None:
            return float(settings[name]) if settings[name] else None

        return Limits(
            global_rate=rate("rate_limit_per_second"),
            endpoint_rate=rate("endpoint_rate_limit_per_second"),
            endpoint_rates={k: float(v) for k, v in (settings["endpoint_rate_limits"] or {}).items()},
            concurrency=int(settings["concurrency_limit"]) if settings["concurrency_limit"] else None,
        )

    def _answer(self, request: Request, endpoint: str, account: Account, args: dict[str, str]) -> Response:
        sandbox = self.sandbox
        params = _params(request)
        supported = supported_params(request.method, endpoint, args)
        if supported is None:
            raise StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        for name in sorted(params):
            if name not in supported:
                raise StripeError(
                    400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )
        with sandbox.lock:
            result = self._api(request.method, endpoint, account, params, args)
            expand = params.get("expand") or []
            if not expand:
                return _json(public(result))
            # Expanding writes into the answer: copy it first (JSON is the cheapest deep copy here).
            return _json(public(_expand(sandbox, account, json.loads(json.dumps(result)), expand)))

    def _outage(self) -> bool:
        """Whether this request falls in a configured outage (``fail_next_requests``)."""
        with self.sandbox.lock:
            failing = int(self.sandbox.settings["fail_next_requests"] or 0)
            if failing > 0:
                self.sandbox.settings["fail_next_requests"] = failing - 1
                self._count("outage 500")
        return failing > 0

    # --- the API --------------------------------------------------------------------------------

    def _api(
        self, method: str, endpoint: str, account: Account, params: dict[str, Any], args: dict[str, str]
    ) -> dict[str, Any]:
        s = self.sandbox
        if endpoint == "account":
            return {"id": account.id, "object": "account", "charges_enabled": True, "livemode": False}
        if endpoint == "customer_discount" and method == "DELETE":
            return s.delete_customer_discount(account, args["oid"])
        if endpoint == "resume" and method == "POST":
            return s.resume_subscription(account, args["oid"])
        if endpoint == "invoice_lines" and method == "GET":
            invoice = s.get(account, "invoice", args["oid"])
            return _page(list(invoice["lines"]["data"]), params, f"/v1/invoices/{args['oid']}/lines")
        if endpoint == "invoice_action" and method == "POST":
            action = args["action"]
            if action == "pay":
                return s.pay_invoice(account, args["oid"], params)
            if action == "finalize":
                return s.finalize_invoice(account, args["oid"])
            if action == "void":
                return s.void_invoice(account, args["oid"])
            return s.mark_uncollectible(account, args["oid"])
        kind = args.get("kind", "")
        singular = _SINGULAR.get(kind, kind)
        if endpoint == "collection" and method == "GET":
            return self._list(account, singular, params, f"/v1/{kind}")
        if endpoint == "collection" and method == "POST":
            creators: dict[str, Callable[[Account, dict[str, Any]], dict[str, Any]]] = {
                "product": s.create_product,
                "price": s.create_price,
                "coupon": s.create_coupon,
                "customer": s.create_customer,
                "subscription": s.create_subscription,
                "invoice": s.create_invoice,
                "invoiceitem": s.create_invoice_item,
                "webhook_endpoint": self._create_endpoint,
            }
            if singular not in creators:
                raise StripeError(400, f"Cannot create {kind} here.")
            return creators[singular](account, params)
        oid = args["oid"]
        if method == "GET":
            if singular == "event":
                event = next((e for e in account.events if e["id"] == oid), None)
                if event is None:
                    raise StripeError(404, f"No such event: '{oid}'", code="resource_missing")
                return event
            return s.get(account, singular, oid)
        if method == "POST" and singular == "customer":
            return s.update_customer(account, oid, params)
        if method == "POST" and singular == "subscription":
            return s.update_subscription(account, oid, params)
        if method == "DELETE" and singular == "customer":
            return s.delete_customer(account, oid)
        if method == "DELETE" and singular == "subscription":
            return s.cancel_subscription(account, oid)
        if method == "DELETE" and singular == "webhook_endpoint":
            account.endpoints.pop(oid, None)
            return {"id": oid, "object": "webhook_endpoint", "deleted": True}
        raise StripeError(400, f"Unsupported: {method} /v1/{kind}/{oid}")

    def _create_endpoint(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("url"):
            raise StripeError(400, "Missing required param: url.", param="url")
        endpoint = {
            "id": self.sandbox.new_id("we"),
            "object": "webhook_endpoint",
            "url": params["url"],
            "enabled_events": params.get("enabled_events") or ["*"],
            "connect": as_bool(params.get("connect", False)),
            # Sandbox extension: the caller may choose the signing secret (the local stack's is fixed).
            "secret": params.get("secret") or "whsec_" + self.sandbox.new_id("sec"),
            "status": "enabled",
            "created": self.sandbox.now(),
            "livemode": False,
            "api_version": None,
        }
        account.endpoints[endpoint["id"]] = endpoint
        return endpoint

    def _list(self, account: Account, kind: str, params: dict[str, Any], url: str) -> dict[str, Any]:
        if kind == "subscription_item":
            if not params.get("subscription"):
                raise StripeError(400, "Missing required param: subscription.", param="subscription")
            subscription = self.sandbox.get(account, "subscription", str(params["subscription"]))
            return _page(list(subscription["items"]["data"]), params, url)
        if kind == "event":
            items = list(account.events)
        elif kind == "webhook_endpoint":
            items = list(account.endpoints.values())
        else:
            items = [o for o in account.table(kind).values() if not o.get("deleted")]
        created = _created_range(params.get("created"))
        items = [o for o in items if _matches(kind, o, params, created)]
        # Newest first; within one second, the later-created first (as Stripe's ids sort).
        items = [
            o for _, o in sorted(enumerate(items), key=lambda p: (p[1].get("created", 0), p[0]), reverse=True)
        ]
        return _page(items, params, url)

    # --- OAuth ----------------------------------------------------------------------------------

    def oauth_authorize(self, request: Request) -> Response:
        params = _params(request)
        redirect_uri, state = params.get("redirect_uri"), params.get("state", "")
        if not redirect_uri or not params.get("client_id"):
            return Response("client_id and redirect_uri are required", status=400)
        decision = params.get("decision") or (
            "approve" if self.sandbox.settings["oauth_auto_approve"] else None
        )
        if decision is None:
            return Response(_authorize_page(params), mimetype="text/html")
        separator = "&" if "?" in redirect_uri else "?"
        if decision != "approve":
            query = {
                "error": "access_denied",
                "error_description": "The user denied your request",
                "state": state,
            }
            return Response(status=302, headers={"Location": redirect_uri + separator + urlencode(query)})
        with self.sandbox.lock:
            code = self.sandbox.authorize(params["client_id"], params.get("stripe_account"))
        return Response(
            status=302,
            headers={
                "Location": redirect_uri
                + separator
                + urlencode({"code": code, "scope": "read_write", "state": state})
            },
        )

    def oauth_token(self, request: Request) -> Response:
        params = _params(request)
        key = params.get("client_secret") or _api_key(request)
        with self.sandbox.lock:
            platform = self.sandbox.account_for_key(key)
            if params.get("grant_type") != "authorization_code":
                raise OAuthError("unsupported_grant_type", "Only authorization_code is supported here.")
            return _json(self.sandbox.exchange(platform, str(params.get("code", ""))))

    def oauth_deauthorize(self, request: Request) -> Response:
        params = _params(request)
        with self.sandbox.lock:
            platform = self.sandbox.account_for_key(_api_key(request))
            return _json(
                self.sandbox.deauthorize(
                    platform, str(params.get("client_id")), str(params.get("stripe_user_id"))
                )
            )

    # --- control --------------------------------------------------------------------------------

    def control_advance(self, request: Request) -> Response:
        body = request.get_json(silent=True) or _params(request)
        with self.sandbox.lock:
            now = self.sandbox.advance(int(body.get("seconds", 0)))
        return _json({"now": now})

    def control_config(self, request: Request) -> Response:
        if request.method == "POST":
            body = request.get_json(silent=True) or {}
            unknown = set(body) - set(self.sandbox.settings)
            if unknown:
                return _json({"error": f"unknown settings: {sorted(unknown)}"}, 400)
            self.sandbox.settings.update(body)
        return _json({**self.sandbox.settings, "now": self.sandbox.now()})

    def control_payment_failure(self, request: Request, oid: str) -> Response:
        body = request.get_json(silent=True) or {}
        with self.sandbox.lock:
            account = self.sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
            self.sandbox.set_payment_failure(account, oid, bool(body.get("failing", True)))
        return _json({"customer": oid, "failing": bool(body.get("failing", True))})

    def control_customer_coupon(self, request: Request, oid: str) -> Response:
        """Give a customer a coupon. Stripe dropped the ``coupon`` parameter of customers in
        2025-03-31.basil (customer-level discounts now come from the Dashboard or checkout), so the
        sandbox offers this control route in its place."""
        body = request.get_json(silent=True) or {}
        with self.sandbox.lock:
            account = self.sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
            customer = self.sandbox.get(account, "customer", oid)
            self.sandbox.set_customer_coupon(account, customer, str(body.get("coupon")))
        return _json(customer)

    def control_seed(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        with self.sandbox.lock:
            account = self.sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
            now = self.sandbox.now()
            seeded = self.sandbox.seed(
                account,
                int(body.get("customers", 0)),
                int(body.get("start", now - 365 * 86_400)),
                int(body.get("end", now)),
            )
        return _json(seeded)

    def control_stats(self, request: Request) -> Response:
        return _json(
            {
                "requests": dict(self.requests),
                "pending_deliveries": self.pending(),
                "delivered": self.delivered,
                "failed_deliveries": self.failed_deliveries,
                **self.sandbox.stats,
            }
        )

    def control_flush(self, request: Request) -> Response:
        deadline = time.monotonic() + float(request.args.get("timeout", 30))
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        return _json({"pending_deliveries": self.pending()})

    # --- webhook delivery -----------------------------------------------------------------------

    def pending(self) -> int:
        with self.sandbox.lock:
            return len(self.sandbox.outbox) + self._in_flight

    def deliver_forever(self) -> None:
        while not self._stop.is_set():
            with self.sandbox.lock:
                now = time.monotonic()
                due = sorted((d for d in self.sandbox.outbox if d.due <= now), key=lambda d: d.due)
                for delivery in due:
                    self.sandbox.outbox.remove(delivery)
                self._in_flight += len(due)
                wait = min((d.due for d in self.sandbox.outbox), default=now + 0.5) - now
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
        with self.sandbox.lock:
            self._in_flight -= 1
            if ok:
                self.delivered += 1
            elif delivery.attempt + 1 < MAX_DELIVERY_ATTEMPTS:
                # Stripe retries for days with backoff; locally the same shape in milliseconds.
                delivery.attempt += 1
                delivery.due = time.monotonic() + 0.1 * 2**delivery.attempt
                self.sandbox.outbox.append(delivery)
            else:
                self.failed_deliveries += 1

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def _page(items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    """One page of ``items`` (in list order), paged as Stripe pages (limit, starting_after, ending_before)."""
    limit = as_int(params.get("limit"), 10) or 10
    if limit < 1 or limit > 100:
        raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
    if params.get("starting_after"):
        ids = [o["id"] for o in items]
        if params["starting_after"] not in ids:
            raise StripeError(400, f"No such object: '{params['starting_after']}'", param="starting_after")
        items = items[ids.index(params["starting_after"]) + 1 :]
    elif params.get("ending_before"):
        ids = [o["id"] for o in items]
        if params["ending_before"] not in ids:
            raise StripeError(400, f"No such object: '{params['ending_before']}'", param="ending_before")
        items = items[: ids.index(params["ending_before"])][-limit:]
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def _route_template(endpoint: str, args: dict[str, str]) -> str:
    """``GET /v1/customers`` or ``GET /v1/customers/{id}``: how stats count requests."""
    kind = args.get("kind", endpoint)
    return f"/v1/{kind}" if endpoint in ("collection", "account") else f"/v1/{kind}/{{id}}"


def _rate_headers(exc: StripeError) -> dict[str, str]:
    if exc.status == 429:
        return {"Retry-After": "1", "Stripe-Rate-Limited-Reason": exc.rate_limited_reason or "global-rate"}
    return {}


def _created_range(created: Any) -> tuple[float, float]:
    """``created`` (an exact value or gt/gte/lt/lte) as an inclusive [low, high] range."""
    if created in (None, ""):
        return float("-inf"), float("inf")
    if not isinstance(created, dict):
        return int(created), int(created)
    low, high = float("-inf"), float("inf")
    if "gte" in created:
        low = int(created["gte"])
    if "gt" in created:
        low = max(low, int(created["gt"]) + 1)
    if "lte" in created:
        high = int(created["lte"])
    if "lt" in created:
        high = min(high, int(created["lt"]) - 1)
    return low, high


def _matches(kind: str, obj: dict[str, Any], params: dict[str, Any], created: tuple[float, float]) -> bool:
    if not created[0] <= obj.get("created", 0) <= created[1]:
        return False
    if kind == "subscription":
        status = params.get("status")
        if status in (None, ""):
            if obj["status"] in HIDDEN_BY_DEFAULT:
                return False
        elif status != "all" and obj["status"] != status:
            return False
    if (
        kind in ("subscription", "invoice")
        and params.get("customer")
        and obj["customer"] != params["customer"]
    ):
        return False
    if kind == "invoice":
        if params.get("status") and obj["status"] != params["status"]:
            return False
        subscription = (obj.get("parent") or {}).get("subscription_details", {}).get("subscription")
        if params.get("subscription") and subscription != params["subscription"]:
            return False
    if kind == "customer" and params.get("email") and obj.get("email") != params["email"]:
        return False
    if kind == "event":
        types = params.get("types") or ([params["type"]] if params.get("type") else [])
        if types and not any(
            obj["type"] == t or (t.endswith("*") and obj["type"].startswith(t[:-1])) for t in types
        ):
            return False
    return True


def _expand(sandbox: Sandbox, account: Account, obj: Any, paths: list[str]) -> Any:
    for path in paths:
        _expand_path(account, obj, path.split("."))
    return obj


def _expand_path(account: Account, node: Any, parts: list[str]) -> None:
    if not parts or node is None:
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        for element in node:
            _expand_path(account, element, parts)
        return
    if not isinstance(node, dict) or head not in node:
        return
    value = node[head]
    if not rest:
        node[head] = _resolve_ids(account, value)
        return
    _expand_path(account, value, rest)


def _resolve_ids(account: Account, value: Any) -> Any:
    if isinstance(value, str):
        found = account.find(value)
        return {k: v for k, v in found.items() if k != "expired"} if found else value
    if isinstance(value, list):
        return [_resolve_ids(account, v) for v in value]
    return value


def _authorize_page(params: dict[str, Any]) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(str(v))}">'
        for k, v in params.items()
        if isinstance(v, str) and k != "decision"
    )
    client = html.escape(str(params.get("client_id")))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Connect with Stripe (sandbox)</title></head>
<body><main><h1>Connect your Stripe account</h1>
<p>The application <strong>{client}</strong> asks for read and write access.</p>
<form method="get" action="/oauth/authorize">{hidden}
<button type="submit" name="decision" value="approve">Connect my Stripe account</button>
<button type="submit" name="decision" value="deny">Deny access</button></form></main></body></html>"""


def serve(
    port: int, host: str = "127.0.0.1", app: SandboxApp | None = None
) -> tuple[BaseWSGIServer, SandboxApp]:
    """Start the sandbox (HTTP server and webhook deliverer) in background threads."""
    app = app or SandboxApp()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log on the console
    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="stripe-sandbox", daemon=True).start()
    threading.Thread(target=app.deliver_forever, name="stripe-sandbox-webhooks", daemon=True).start()
    return server, app
