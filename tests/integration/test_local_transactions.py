"""The local stack's cheaper moto transactions still roll back exactly what a cancelled one changed,
and a transaction that goes through is the same as with moto's own whole-table backup."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local import moto_speedups

pytestmark = pytest.mark.integration


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    moto_speedups.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="t", Item={"pk": {"S": "a"}, "sk": {"S": "state"}, "v": {"N": "1"}})
        client.put_item(TableName="t", Item={"pk": {"S": "a"}, "sk": {"S": "total"}, "n": {"N": "10"}})
        yield client


def _items(client: Any) -> dict[str, dict[str, Any]]:
    return {item["sk"]["S"]: item for item in client.scan(TableName="t")["Items"]}


def _add(sk: str, amount: int) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": "t",
            "Key": {"pk": {"S": "a"}, "sk": {"S": sk}},
            "UpdateExpression": "ADD n :n",
            "ExpressionAttributeValues": {":n": {"N": str(amount)}},
        }
    }


def _put_state(version: int, expected: int) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": "t",
            "Item": {"pk": {"S": "a"}, "sk": {"S": "state"}, "v": {"N": str(version)}},
            "ConditionExpression": "v = :v",
            "ExpressionAttributeValues": {":v": {"N": str(expected)}},
        }
    }


def test_a_cancelled_transaction_changes_nothing(dynamodb: Any) -> None:
    before = _items(dynamodb)
    # The first two apply before the third's condition fails: both are undone, the new item too.
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(TransactItems=[_add("total", 5), _add("new", 7), _put_state(2, 99)])
    assert _items(dynamodb) == before


def test_a_transaction_that_goes_through_applies_every_part(dynamodb: Any) -> None:
    dynamodb.transact_write_items(TransactItems=[_put_state(2, 1), _add("total", 5), _add("new", 7)])
    items = _items(dynamodb)
    assert (items["state"]["v"], items["total"]["n"], items["new"]["n"]) == (
        {"N": "2"},
        {"N": "15"},
        {"N": "7"},
    )


def test_a_query_of_a_partition_answers_as_moto_does_without_scanning_the_table(dynamodb: Any) -> None:
    for pk, sk in (("b", "2"), ("b", "1"), ("c", "1"), ("b", "3")):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": pk}, "sk": {"S": sk}})

    def query(pk: str, **kwargs: Any) -> list[str]:
        found = dynamodb.query(
            TableName="t",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            **kwargs,
        )
        return [item["sk"]["S"] for item in found["Items"]]

    assert query("b") == ["1", "2", "3"]
    assert query("b", ScanIndexForward=False, Limit=2) == ["3", "2"]
    assert query("a") == ["state", "total"]
    assert query("none") == []
