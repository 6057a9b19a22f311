"""API Gateway HTTP API (payload format 2.0) events, as API Gateway builds them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from local.auth import LOGIN_PATH, LocalIssuer, TokenRequestError, login_page
from local.template import HttpRoute, http_routes

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
    content_type = headers.get("content-type", "")
    # HTTP APIs pass text bodies as they are and base64-encode everything else, including a body
    # whose content type says text but whose bytes are not UTF-8.
    is_text = content_type.startswith(_TEXT_TYPES) or not body
    if is_text:
        try:
            body.decode()
        except UnicodeDecodeError:
            is_text = False
    # Decoded, and repeated keys joined with commas, as API Gateway does.
    query_parameters: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        query_parameters[key] = f"{query_parameters[key]},{value}" if key in query_parameters else value
    return {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": query_parameters or None,
        "pathParameters": path_parameters or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            **({"authorizer": authorizer} if authorizer else {}),
            "domainName": "localhost",
            "http": {
                "method": route.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": (body.decode() if is_text else base64.b64encode(body).decode()) if body else None,
        "isBase64Encoded": bool(body) and not is_text,
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
            result = self._invoke(route.function, event)
            return GatewayResponse(
                int(result["statusCode"]),
                dict(result.get("headers") or {}),
                result.get("body") or "",
                list(result.get("cookies") or []),
            )
        return _json(404, {"error": "not_found", "message": "no such route"})
