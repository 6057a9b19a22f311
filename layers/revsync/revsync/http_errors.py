"""The one place an error category becomes an HTTP status: the receiver and the tenant API answer
with ``{"error": <code>, "message": <message>}`` and the status of the error's category.

An error outside these categories (revsync's own fault) has no status here: it is not the caller's
to fix and stays an error of the function. Kept free of imports beyond ``revsync.errors``: the
receiver's cold start is budgeted.
"""

from __future__ import annotations

from typing import Any

from revsync.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RetryLater,
    RevsyncError,
    TooLarge,
    Unauthenticated,
    UnsupportedMethod,
    UpstreamUnavailable,
)

# A subcategory before its category: the first class an error is an instance of gives its status.
STATUSES: tuple[tuple[type[RevsyncError], int], ...] = (
    (TooLarge, 413),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (UnsupportedMethod, 405),
    (NotFound, 404),
    (Conflict, 409),
    (UpstreamUnavailable, 502),
    (RetryLater, 503),
)
# The errors a route answers with a status (for a resolver's exception handler).
ANSWERED: tuple[type[RevsyncError], ...] = tuple(category for category, _ in STATUSES)


def status_of(error: RevsyncError) -> int | None:
    """The HTTP status of ``error``'s category; None for an error that is no caller's to fix."""
    for category, status in STATUSES:
        if isinstance(error, category):
            return status
    return None


def body(error: RevsyncError) -> dict[str, Any]:
    return {"error": error.code, "message": error.message}
