"""API Gateway HTTP API (payload format 2.0) events, as API Gateway builds them."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from local.template import HttpRoute

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
