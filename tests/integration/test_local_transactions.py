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
                {"AttributeName": "g", "AttributeType": "S"},
                {"AttributeName": "r", "AttributeType": "N"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "sparse",
                    "KeySchema": [
                        {"AttributeName": "g", "KeyType": "HASH"},
                        {"AttributeName": "r", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
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


def test_a_query_of_an_index_answers_as_moto_does_sorting_only_what_it_keeps(dynamodb: Any) -> None:
    # A sparse index: items without ``g`` (or without ``r``) are not in it; two items tie on ``r``.
    for pk, sk, g, r in (
        ("b", "1", "x", 30),
        ("b", "2", "x", 10),
        ("c", "1", "x", 10),
        ("c", "2", "y", 5),
        ("d", "1", "x", None),
        ("d", "2", None, 7),
    ):
        item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"S": sk}}
        if g is not None:
            item["g"] = {"S": g}
        if r is not None:
            item["r"] = {"N": str(r)}
        dynamodb.put_item(TableName="t", Item=item)

    def query(g: str, condition: str = "", **kwargs: Any) -> tuple[list[str], Any]:
        found = dynamodb.query(
            TableName="t",
            IndexName="sparse",
            KeyConditionExpression="g = :g" + condition,
            ExpressionAttributeValues={":g": {"S": g}, **({":r": {"N": "20"}} if condition else {})},
            **kwargs,
        )
        return [item["pk"]["S"] + item["sk"]["S"] for item in found["Items"]], found.get("LastEvaluatedKey")

    assert query("x")[0] == ["b2", "c1", "b1"]
    assert query("x", ScanIndexForward=False)[0] == ["b1", "c1", "b2"]
    assert query("x", " AND r <= :r")[0] == ["b2", "c1"]
    assert query("y")[0] == ["c2"]
    assert query("z")[0] == []
    first, cursor = query("x", Limit=2)
    assert first == ["b2", "c1"]
    assert query("x", Limit=2, ExclusiveStartKey=cursor)[0] == ["b1"]
    # The speedup is cleared after the query: a scan still sees every item.
    assert len(dynamodb.scan(TableName="t")["Items"]) == 8
