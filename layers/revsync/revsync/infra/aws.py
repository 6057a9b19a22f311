"""Cached boto3 clients: one per process, created on first use (never at import time), in the region
and with the timeouts ``configure`` was given (the composition root calls it: revsync.bootstrap)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from revsync.settings import AwsSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient

# Fail fast inside a Lambda: the caller (API Gateway / SQS) retries the whole request. A call's
# worst case, (connect + read) x attempts, must fit the shortest function timeout that makes it (the
# receiver's 5 s): tests/unit/test_timeouts.py checks every client against the template.
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 1.0
MAX_ATTEMPTS = 2
# Connections a process keeps to a service: a backfill step writes BACKFILL_WRITERS customers at once.
MAX_POOL_CONNECTIONS = 32
CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    # total_max_attempts counts the first attempt; botocore's "max_attempts" would be retries after it.
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    max_pool_connections=MAX_POOL_CONNECTIONS,
)


_configured: list[AwsSettings] = []  # the settings configure() was last given


def configure(settings: AwsSettings) -> None:
    """The region and timeouts of this process's clients, from now on (clients made before are
    forgotten)."""
    _configured[:] = [settings]
    reset_clients()


def _client(service: Any) -> Any:
    if not _configured:
        raise RuntimeError("AWS clients are not configured: revsync.bootstrap configures them")
    settings, config = _configured[0], CONFIG
    if settings.client_timeout_seconds:  # the local stack on a loaded machine, never deployed
        timeout = settings.client_timeout_seconds
        config = CONFIG.merge(Config(connect_timeout=timeout, read_timeout=timeout))
    return boto3.session.Session().client(service, region_name=settings.region, config=config)


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


@lru_cache(maxsize=1)
def events() -> EventBridgeClient:
    client: EventBridgeClient = _client("events")
    return client


@lru_cache(maxsize=1)
def ssm() -> SSMClient:
    client: SSMClient = _client("ssm")
    return client


@lru_cache(maxsize=1)
def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = _client("secretsmanager")
    return client


@lru_cache(maxsize=1)
def kms() -> KMSClient:
    client: KMSClient = _client("kms")
    return client


def reset_clients() -> None:
    """Forget cached clients (tests switch between moto contexts)."""
    ssm.cache_clear()
    secretsmanager.cache_clear()
    kms.cache_clear()
    events.cache_clear()
    sqs.cache_clear()
    dynamodb.cache_clear()
    stepfunctions.cache_clear()
