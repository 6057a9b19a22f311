"""revsync's errors, as one tree (no dependencies: any layer, the domain included, may raise them).

Every error revsync raises on purpose derives from ``RevsyncError`` and, when a caller can act on
it, from one of the categories below, which say what went wrong in the domain's words, never as an
HTTP status. ``code`` is a stable, machine-readable word safe to show a caller (``str(error)`` its
message). ``revsync.http_errors`` is the one place a category becomes a status (the receiver and the
tenant API answer through it); the worker reads ``RetryLater`` and ``Deferred`` (see below).

::

    RevsyncError
    ├── InvalidInput (also a ValueError)   what was sent cannot be used
    │   └── TooLarge                       ... because of its size
    ├── NotFound                           no such thing (or route)
    │   └── UnsupportedMethod              the thing exists, not this way of asking
    ├── Conflict                           the state does not allow it now (or changed meanwhile)
    ├── Forbidden                          not for this caller
    │   └── Unauthenticated                no caller known at all
    ├── UpstreamUnavailable                a service revsync depends on failed (Stripe, AWS)
    ├── RetryLater                         transient: the same request later may succeed
    │   └── Deferred                       not a failure: wait this long, then go on
    └── (uncategorised: revsync's own fault, never the caller's: SettingsError, SealedSecretError)
"""

from __future__ import annotations


class RevsyncError(Exception):
    """Base of revsync's own errors; ``code`` names the error for callers and logs."""

    code = "revsync_error"

    def __init__(self, message: str = "", code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(RevsyncError, ValueError):
    """The input (a request, an event, a value) cannot be used as it is: the sender must change it."""

    code = "invalid_input"


class TooLarge(InvalidInput):
    code = "too_large"


class NotFound(RevsyncError):
    code = "not_found"


class UnsupportedMethod(NotFound):
    code = "method_not_allowed"


class Conflict(RevsyncError):
    """What is stored does not allow it now (not connected, already running), or changed meanwhile."""

    code = "conflict"


class Forbidden(RevsyncError):
    code = "forbidden"


class Unauthenticated(Forbidden):
    code = "unauthorized"


class UpstreamUnavailable(RevsyncError):
    """A service revsync depends on (Stripe, an AWS service) failed or refused: not the caller's fault."""

    code = "upstream_unavailable"


class RetryLater(RevsyncError):
    """Transient: try again later. The worker retries the message (SQS visibility timeout) and parks
    it with its reason on its last allowed delivery; an HTTP caller is asked to retry."""

    code = "retry_later"


class Deferred(RetryLater):
    """Not now, and not a failure: Stripe's rate limit (or the account's shared budget) says wait.

    The worker hides the message for ``delay_seconds`` and never parks it for this reason.
    """

    code = "deferred"

    def __init__(self, delay_seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_seconds = delay_seconds

    def delay_for(self, receive_count: int) -> float:
        """How long to hide a message received ``receive_count`` times (the wait asked for)."""
        return self.delay_seconds


class CursorRejected(NotFound):
    """Stripe no longer accepts a list cursor (the object it names is gone): list from the top."""

    code = "cursor_rejected"


class SettingsError(RevsyncError):
    """A function's environment lacks a variable or holds a malformed one: its cold start fails."""

    code = "invalid_settings"
