"""API Gateway HTTP API and Lambda function URL events (payload format 2.0), as AWS builds them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from local.auth import LOGIN_PATH, LocalIssuer, TokenRequestError, login_page
from local.environment import REGION
from local.template import FUNCTION_URL_ID, HttpRoute, function_url_domain, http_routes

_TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/xml")


def match(route: HttpRoute, method: str, path: str) -> dict[str, str] | None:
    """Path parameters if ``method path`` is this route, else None."""
    if method.upper() != route.method:
        return None
    pattern, actual = route.path.strip("/").split("/"), path.strip("/").split("/")
    if len(pattern) != len(actual):
        return None
    params: dict[str, str] = {}
    for expected, segment in zip(pattern, actual, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            if not segment:
                return None
            params[expected[1:-1]] = segment
        elif expected != segment:
            return None
    return params


def _body(body: bytes, headers: dict[str, str]) -> tuple[str | None, bool]:
    """The event's body and isBase64Encoded: HTTP APIs and function URLs pass text bodies as they are
    and base64-encode everything else, including a body whose content type says text but whose bytes
    are not UTF-8."""
    if not body:
        return None, False
    if headers.get("content-type", "").startswith(_TEXT_TYPES):
        try:
            return body.decode(), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), True


def _query_parameters(query: str) -> dict[str, str] | None:
    """Decoded, and repeated keys joined with commas, as API Gateway and function URLs do."""
    parameters: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
    return parameters or None


def _request_context(method: str, path: str, headers: dict[str, str], route_key: str) -> dict[str, Any]:
    return {
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "timeEpoch": int(time.time() * 1000),
    }


def http_event(
    route: HttpRoute,
    path: str,
    path_parameters: dict[str, str],
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    encoded, is_base64 = _body(body, headers)
    return {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": _query_parameters(query),
        "pathParameters": path_parameters or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            **({"authorizer": authorizer} if authorizer else {}),
            "domainName": "localhost",
            "domainPrefix": "localhost",
            **_request_context(route.method, path, headers, route.route_key),
        },
        "body": encoded,
        "isBase64Encoded": is_base64,
    }


def function_url_event(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, query: str = ""
) -> dict[str, Any]:
    """A function URL's event (AuthType NONE): API Gateway's format 2.0 with no routes, so
    ``routeKey`` is ``$default`` and there are no path parameters, whatever the method and path."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    encoded, is_base64 = _body(body, headers)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        **({"queryStringParameters": parameters} if (parameters := _query_parameters(query)) else {}),
        "requestContext": {
            "accountId": "anonymous",
            "apiId": FUNCTION_URL_ID,
            "domainName": function_url_domain(REGION),
            "domainPrefix": FUNCTION_URL_ID,
            **_request_context(method.upper(), path, headers, "$default"),
        },
        **({"body": encoded} if encoded is not None else {}),
        "isBase64Encoded": is_base64,
    }


class GatewayResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: str
    cookies: list[str]


def _json(status: int, document: dict[str, Any]) -> GatewayResponse:
    return GatewayResponse(status, {"content-type": "application/json"}, json.dumps(document), [])


class Gateway:
    """The HTTP API as the template declares it: routes, the admin routes' JWT authorizer, and the
    local issuer's own two routes (``POST /_local/token``, ``GET /_local/login``)."""

    def __init__(self, issuer: LocalIssuer, invoke: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
        self.issuer, self._invoke = issuer, invoke

    def handle(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: str
    ) -> GatewayResponse:
        headers = {k.lower(): v for k, v in headers.items()}
        if path == "/_local/token" and method == "POST":
            try:
                token = self.issuer.issue(json.loads(body or b"null"))
            except (TokenRequestError, ValueError) as exc:
                return _json(400, {"error": "invalid_token_request", "message": str(exc)})
            return _json(200, {"access_token": token, "token_type": "Bearer"})
        if path == LOGIN_PATH and method == "GET":
            return_to = dict(parse_qsl(query)).get("return", "/settings")
            page = login_page(return_to)
            return GatewayResponse(200, {"content-type": "text/html; charset=utf-8"}, page, [])
        for route in http_routes():
            params = match(route, method, path)
            if params is None:
                continue
            authorizer = None
            if route.auth != "NONE":
                # Locally every admin route is a JWT route (local/template.py's parameters).
                authorizer = self.issuer.authorizer_context(headers.get("authorization"))
                if authorizer is None:
                    # API Gateway answers {"message": "Unauthorized"} itself; the handler never runs.
                    return _json(401, {"error": "unauthorized", "message": "Unauthorized"})
            event = http_event(route, path, params, body, headers, query, authorizer)
            return _response(self._invoke(route.function, event))
        return _json(404, {"error": "not_found", "message": "no such route"})


def _response(result: dict[str, Any]) -> GatewayResponse:
    return GatewayResponse(
        int(result["statusCode"]),
        dict(result.get("headers") or {}),
        result.get("body") or "",
        list(result.get("cookies") or []),
    )


class FunctionUrl:
    """A function's URL as the template declares it (``FunctionUrlConfig``, AuthType NONE): every
    method and path reach the function; there is no router and no authorizer in front of it."""

    def __init__(self, function: str, invoke: Callable[[str, dict[str, Any]], dict[str, Any]]) -> None:
        self.function, self._invoke = function, invoke

    def handle(
        self, method: str, path: str, body: bytes, headers: dict[str, str], query: str
    ) -> GatewayResponse:
        return _response(self._invoke(self.function, function_url_event(method, path, body, headers, query)))
