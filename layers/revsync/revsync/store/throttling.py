"""DynamoDB throttling, mapped in one place: a wait, never a failure.

When DynamoDB refuses a call for capacity (a partition past its 1,000 write or 3,000 read units a
second, an on-demand table past twice its previous peak, an account's request limit) and the SDK's
own retries are spent (PynamoDB's ``MAX_RETRY_ATTEMPTS``, boto3's ``total_max_attempts``), a store
raises ``Throttled``: a ``Deferred``, so the worker hides the message for a while and never counts it
toward parking. Every store class the write path uses is wrapped with ``defers_when_throttled``.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable
from typing import Any, TypeVar

from revsync.errors import Deferred

# The error codes DynamoDB answers for capacity (its API reference's common and per-operation errors).
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
# A transaction that was throttled is cancelled with this reason on the item that was.
TRANSACTION_THROTTLED = "ThrottlingError"
# The first wait, doubled at each receive of the same message, up to the cap: DynamoDB's own
# throttling passes in seconds, but an on-demand table growing past twice its previous peak can take
# minutes, and the queue's redrive (QueueRedriveReceiveCount, 50 receives) must not come first: at
# this cap 50 receives wait about three and a half hours.
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 300.0

T = TypeVar("T")


class Throttled(Deferred):
    """DynamoDB refused for capacity: try again later, waiting longer each time (with jitter, so the
    messages throttled together do not come back together)."""

    def delay_for(self, receive_count: int) -> float:
        backoff = self.delay_seconds * 2.0 ** min(max(receive_count, 1) - 1, 16)
        return min(MAX_DELAY_SECONDS, backoff) * random.uniform(1.0, 1.5)  # noqa: S311 (jitter)


def throttling_code(exc: BaseException) -> str | None:
    """The throttling code of a DynamoDB error (PynamoDB's or botocore's), None for any other error."""
    response = getattr(exc, "response", None)  # botocore's ClientError
    response = response if isinstance(response, dict) else {}
    # PynamoDB's errors wrap botocore's and name its code.
    code = getattr(exc, "cause_response_code", None) or response.get("Error", {}).get("Code")
    if code in THROTTLING_CODES:
        return str(code)
    # A cancelled transaction names a reason per item: PynamoDB's objects, or botocore's dicts.
    reasons = [getattr(r, "code", None) for r in getattr(exc, "cancellation_reasons", None) or ()]
    reasons += [r.get("Code") for r in response.get("CancellationReasons", ())]
    return TRANSACTION_THROTTLED if TRANSACTION_THROTTLED in reasons else None


def _deferring(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            code = throttling_code(exc)
            if code is None:
                raise
            raise Throttled(
                FIRST_DELAY_SECONDS, f"DynamoDB throttled {method.__qualname__} ({code})"
            ) from exc

    return call


def defers_when_throttled(cls: type[T]) -> type[T]:
    """Every public method of a store class raises ``Throttled`` where DynamoDB throttled it."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _deferring(member))
    return cls
