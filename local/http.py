"""A tiny JSON-over-HTTP client for talking to the local stack (demo and end-to-end tests)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def _decode(raw: bytes) -> Any:
    """JSON when it is JSON (the API), else the text (an HTML page)."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (only the local stack's URLs)
        url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (the local stack)
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _decode(error.read())
