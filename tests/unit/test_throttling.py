"""DynamoDB throttling is mapped once, in the store layer, to a deferral (revsync.store.throttling)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import (
    CancellationReason,
    GetError,
    PutError,
    QueryError,
    TransactWriteError,
    UpdateError,
    VerboseClientError,
)
from revsync.errors import Deferred
from revsync.store.throttling import (
    MAX_DELAY_SECONDS,
    THROTTLING_CODES,
    Throttled,
    defers_when_throttled,
    throttling_code,
)


def _client_error(code: str, operation: str = "PutItem", **extra: Any) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, **extra}
    return ClientError(response, operation)


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES))
@pytest.mark.parametrize("wrapper", [PutError, UpdateError, QueryError, GetError])
def test_pynamodb_and_botocore_throttling_are_recognised(code: str, wrapper: type[Exception]) -> None:
    assert throttling_code(wrapper("failed", _client_error(code))) == code
    assert throttling_code(_client_error(code)) == code  # the raw client's


def test_a_transaction_cancelled_for_throttling_is_recognised() -> None:
    reasons = [{"Code": "None"}, {"Code": "ThrottlingError", "Message": "throttled"}]
    raw = _client_error("TransactionCanceledException", "TransactWriteItems", CancellationReasons=reasons)
    assert throttling_code(raw) == "ThrottlingError"
    verbose = VerboseClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "m"}},
        "TransactWriteItems",
        cancellation_reasons=[None, CancellationReason(code="ThrottlingError", message=None)],
    )
    assert throttling_code(TransactWriteError("failed", verbose)) == "ThrottlingError"


@pytest.mark.parametrize(
    "exc",
    [
        PutError("failed", _client_error("ConditionalCheckFailedException")),
        _client_error("ValidationException"),
        _client_error(
            "TransactionCanceledException", CancellationReasons=[{"Code": "ConditionalCheckFailed"}]
        ),
        RuntimeError("a bug"),
    ],
)
def test_other_errors_are_not_throttling(exc: Exception) -> None:
    assert throttling_code(exc) is None


def test_a_store_raises_a_deferral_where_dynamodb_throttled() -> None:
    @defers_when_throttled
    class Store:
        def save(self, code: str) -> str:
            raise PutError("failed", _client_error(code))

        def plain(self) -> str:
            return "ok"

        @staticmethod
        def number(value: int) -> int:
            return value

    with pytest.raises(Throttled) as caught:
        Store().save("ProvisionedThroughputExceededException")
    assert isinstance(caught.value, Deferred)
    assert "ProvisionedThroughputExceededException" in str(caught.value)
    with pytest.raises(PutError):
        Store().save("ConditionalCheckFailedException")
    assert (Store().plain(), Store.number(3)) == ("ok", 3)


def test_the_wait_doubles_with_each_receive_up_to_its_cap() -> None:
    throttled = Throttled(1.0, "throttled")
    waits = [throttled.delay_for(n) for n in range(1, 40)]
    assert 1.0 <= waits[0] <= 1.5
    assert 8.0 <= waits[3] <= 12.0
    assert all(MAX_DELAY_SECONDS <= w <= 1.5 * MAX_DELAY_SECONDS for w in waits[9:])
    # The queue's redrive (QueueRedriveReceiveCount, 50) comes only after hours of throttling.
    assert sum(Throttled(1.0, "t").delay_for(n) for n in range(1, 50)) > 3 * 3600
    assert Deferred(2.0, "Stripe").delay_for(7) == 2.0  # a wait Stripe asked for stays as asked
