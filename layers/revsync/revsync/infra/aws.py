"""Cached boto3 clients: one per process, created on first use (never at import time)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from revsync.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

# Fail fast inside a Lambda: the caller (API Gateway / SQS) retries the whole request.
_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})


def _client(service: Any) -> Any:
    return boto3.session.Session().client(service, region_name=get_settings().region, config=_CONFIG)


@lru_cache(maxsize=1)
def sqs() -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


@lru_cache(maxsize=1)
def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


@lru_cache(maxsize=1)
def stepfunctions() -> SFNClient:
    client: SFNClient = _client("stepfunctions")
    return client


def reset_clients() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    sqs.cache_clear()
    dynamodb.cache_clear()
    stepfunctions.cache_clear()
