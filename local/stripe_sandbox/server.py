"""The sandbox's HTTP face: Stripe's API (``routes.ROUTES``), OAuth, webhook delivery and a control API.

Faithful where revsync depends on it: API keys (each key an account, ``Stripe-Account`` for a
connected one), 429 ``rate_limit`` errors from Stripe's limiters, 400 ``parameter_unknown`` for any
parameter a route does not implement, every object shaped for the claimed API version. Control
routes (not Stripe's) live under ``/_sandbox``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local.stripe_sandbox import clocks, connect, customers, discounts, payment_methods
from local.stripe_sandbox.core import Account, OAuthError, Sandbox, StripeError
from local.stripe_sandbox.events import Deliverer
from local.stripe_sandbox.forms import decode
from local.stripe_sandbox.limits import Limiters, Limits
from local.stripe_sandbox.rest import expand, page
from local.stripe_sandbox.routes import ROUTES, SUPPORTED_PARAMS, Route
from local.stripe_sandbox.shapes import API_VERSION, public

__all__ = ["SUPPORTED_PARAMS", "SandboxApp", "serve"]

_OAUTH = ("authorize", "token", "deauthorize")
_CONTROL = {
    "/_sandbox/clock/advance": "advance",
    "/_sandbox/config": "config",
    "/_sandbox/customers/<oid>/payment_failure": "payment_failure",
    "/_sandbox/customers/<oid>/discount": "customer_coupon",
    "/_sandbox/payment_methods/<oid>/card_updated": "card_updated",
    "/_sandbox/stats": "stats",
    "/_sandbox/seed": "seed",
    "/_sandbox/flush": "flush",
}


def _rules() -> list[Rule]:
    api = [
        Rule(route.path.replace("{", "<").replace("}", ">"), endpoint=index, methods=[route.method])
        for index, route in enumerate(ROUTES)
    ]
    oauth = [Rule(f"/oauth/{name}", endpoint=f"oauth_{name}") for name in _OAUTH]
    control = [Rule(path, endpoint=f"control_{name}") for path, name in _CONTROL.items()]
    return api + oauth + control


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


def _unknown(name: str, route: Route) -> StripeError:
    removed = route.removed.get(name)
    if removed is None:
        return StripeError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
    return StripeError(
        400,
        f"Received unknown parameter: {name}. Stripe removed it in API version {removed.version}; "
        f"the sandbox answers in {API_VERSION}, as an account on a current version does.",
        code=removed.code,
        param=name,
    )


def _unrecognized(request: Request) -> StripeError:
    return StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}).")


class SandboxApp:
    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox or Sandbox()
        self.urls = Map(_rules())
        self.limiters = Limiters()
        self.requests: dict[str, int] = {}
        self.deliverer = Deliverer(self.sandbox)

    # --- WSGI -----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self.urls.bind_to_environ(environ).match()
            response = self.dispatch(request, endpoint, dict(args))
        except StripeError as exc:
            response = _json(exc.body(), exc.status, _rate_headers(exc))
        except OAuthError as exc:
            response = _json({"error": exc.error, "error_description": exc.description}, 400)
        except (NotFound, MethodNotAllowed):
            error = _unrecognized(request)
            response = _json(error.body(), error.status)
        except HTTPException as exc:
            response = exc.get_response()
        return response(environ, start_response)

    def _count(self, key: str) -> None:
        self.requests[key] = self.requests.get(key, 0) + 1

    def dispatch(self, request: Request, endpoint: int | str, args: dict[str, str]) -> Response:
        if isinstance(endpoint, str) and endpoint.startswith("control_"):
            control: Callable[..., Response] = getattr(self, endpoint)
            return control(request, **args)
        if endpoint != "oauth_authorize" and self._outage():
            raise StripeError(500, "An unknown error occurred (sandbox outage).", type_="api_error")
        if isinstance(endpoint, str):
            oauth: Callable[[Request], Response] = getattr(self, endpoint)
            return oauth(request)
        route = ROUTES[endpoint]
        with self.sandbox.lock:
            account = self.sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
        self._count(f"{account.id} {route.key}")
        reason = self.limiters.admit(account.id, route.key, self._limits())
        if reason is not None:
            self._count(f"{account.id} 429")
            self._count(f"{account.id} 429 {reason} {route.key}")
            raise StripeError(
                429,
                "Too many requests hit the API too quickly. We recommend an exponential "
                "backoff of your requests.",
                code="rate_limit",
                rate_limited_reason=reason,
            )
        try:
            latency = float(self.sandbox.settings["latency_ms"]) / 1000
            if latency:
                time.sleep(latency)
            return self._answer(request, route, account, [args[name] for name in route.ids])
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

    def _answer(self, request: Request, route: Route, account: Account, ids: list[str]) -> Response:
        version = request.headers.get("Stripe-Version")
        if version and version != API_VERSION:
            raise StripeError(
                400,
                f"The sandbox answers in Stripe API version {API_VERSION} only (the installed stripe "
                f"package's); this request asked for {version}.",
            )
        params = _params(request)
        for name in sorted(params):
            if name not in route.params:
                raise _unknown(name, route)
        sandbox = self.sandbox
        with sandbox.lock, sandbox.at(clocks.request_time(sandbox, account, params, ids)):
            result = route.handler(sandbox, account, params, *ids)
            if isinstance(result, list):
                result = page(result, params, request.path)
            paths = params.get("expand") or []
            if not paths:
                return _json(public(result))
            # Expanding writes into the answer: copy it first (JSON is the cheapest deep copy here).
            return _json(public(expand(account, json.loads(json.dumps(result)), paths)))

    def _outage(self) -> bool:
        """Whether this request falls in a configured outage (``fail_next_requests``)."""
        with self.sandbox.lock:
            failing = int(self.sandbox.settings["fail_next_requests"] or 0)
            if failing > 0:
                self.sandbox.settings["fail_next_requests"] = failing - 1
                self._count("outage 500")
        return failing > 0

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
            code = connect.authorize(self.sandbox, params["client_id"], params.get("stripe_account"))
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
            return _json(connect.exchange(self.sandbox, platform, str(params.get("code", ""))))

    def oauth_deauthorize(self, request: Request) -> Response:
        params = _params(request)
        with self.sandbox.lock:
            platform = self.sandbox.account_for_key(_api_key(request))
            return _json(
                connect.deauthorize(
                    self.sandbox, platform, str(params.get("client_id")), str(params.get("stripe_user_id"))
                )
            )

    # --- control --------------------------------------------------------------------------------

    def control_advance(self, request: Request) -> Response:
        body = request.get_json(silent=True) or _params(request)
        with self.sandbox.lock:
            now = clocks.advance_sandbox(self.sandbox, int(body.get("seconds", 0)))
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
            customers.set_payment_failure(self.sandbox, account, oid, bool(body.get("failing", True)))
        return _json({"customer": oid, "failing": bool(body.get("failing", True))})

    def control_customer_coupon(self, request: Request, oid: str) -> Response:
        """Give a customer a coupon. Stripe dropped the ``coupon`` parameter of customers in
        2025-03-31.basil (customer-level discounts now come from the Dashboard or checkout), so the
        sandbox offers this control route in its place."""
        body = request.get_json(silent=True) or {}
        with self.sandbox.lock:
            account = self.sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
            customer = self.sandbox.get(account, "customer", oid)
            discounts.set_customer_coupon(self.sandbox, account, customer, str(body.get("coupon")))
        return _json(customer)

    def control_card_updated(self, request: Request, oid: str) -> Response:
        """The card network renewed a saved card: ``{"exp_month", "exp_year"}``, as Stripe's card
        account updater does (``payment_method.automatically_updated``); no Stripe API call does it."""
        body = request.get_json(silent=True) or _params(request)
        with self.sandbox.lock:
            account = self.sandbox.resolve(_api_key(request), request.headers.get("Stripe-Account"))
            updated = payment_methods.automatically_update(
                self.sandbox, account, oid, int(body.get("exp_month", 0)), int(body.get("exp_year", 0))
            )
        return _json(public(updated))

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

    # --- webhook delivery (events.Deliverer) ------------------------------------------------------

    @property
    def delivered(self) -> int:
        return self.deliverer.delivered

    @property
    def failed_deliveries(self) -> int:
        return self.deliverer.failed

    def pending(self) -> int:
        return self.deliverer.pending()

    def deliver_forever(self) -> None:
        self.deliverer.deliver_forever()

    def stop(self) -> None:
        self.deliverer.stop()


def _rate_headers(exc: StripeError) -> dict[str, str]:
    if exc.status == 429:
        return {"Retry-After": "1", "Stripe-Rate-Limited-Reason": exc.rate_limited_reason or "global-rate"}
    return {}


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
