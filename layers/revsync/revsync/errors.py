"""revsync's failures that cross layers, as one hierarchy (no dependencies: any layer may raise them).

HTTP routes map ``ApiError`` to responses in one place (the tenant API handler); the worker maps
these: ``Deferred`` delays a message without counting against it, ``RetryLater`` retries it and, on
its last allowed delivery, parks it with the reason.
"""

from __future__ import annotations


class RevsyncError(Exception):
    """Base of revsync's own errors."""


class InvalidInput(RevsyncError, ValueError):
    """The input (a request, an event, a value) cannot be used as it is: the sender must change it."""

    code = "invalid_input"


class RetryLater(RevsyncError):
    """Transient: retry the message later (SQS visibility timeout); parked if it keeps failing."""


class Deferred(RetryLater):
    """Not now, and not a failure: Stripe's rate limit (or the account's shared budget) says wait.

    The worker hides the message for ``delay_seconds`` and never parks it for this reason.
    """

    def __init__(self, delay_seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_seconds = delay_seconds

    def delay_for(self, receive_count: int) -> float:
        """How long to hide a message received ``receive_count`` times (the wait asked for)."""
        return self.delay_seconds


class CursorRejected(RevsyncError):
    """Stripe no longer accepts a list cursor (the object it names is gone): list from the top."""


class ApiError(RevsyncError):
    """A caller's mistake (4xx) or a dependency's failure (5xx), with a stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
