"""The receiver's graph (functions/webhook): the tenant routes it reads, the secrets that may sign a
webhook, the events queue and the dead-letter queue. Nothing here imports PynamoDB or the stripe SDK."""

import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from revsync.infra import aws
from revsync.infra.queue import DeadLetters, SqsEventQueue
from revsync.infra.secrets import PlatformSecrets, TenantSecrets, WebhookSecretSource
from revsync.services.receive import EventQueue, ParkedEvents, TenantDirectory, WebhookSecrets
from revsync.settings import ReceiverSettings
from revsync.store.tenant_lookup import DynamoTenantDirectory


class Receiver(NamedTuple):
    settings: ReceiverSettings
    tenants: TenantDirectory
    secrets: WebhookSecrets
    queue: EventQueue
    parked: ParkedEvents
    clock: Callable[[], float]


def build(settings: ReceiverSettings, **overrides: Any) -> Receiver:
    aws.configure(settings.aws)
    platform = PlatformSecrets(webhook_secret=settings.webhook_secret_param)
    return Receiver(
        settings=settings,
        tenants=DynamoTenantDirectory(settings.tenants_table),
        secrets=WebhookSecretSource(platform, TenantSecrets(settings.tenant_secrets_key)),
        queue=SqsEventQueue(settings.events_queue_url, settings.tenant_message_groups),
        parked=DeadLetters(settings.dead_letter_queue_url),
        clock=time.time,
    )._replace(**overrides)


def from_environ(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Receiver:
    return build(ReceiverSettings.from_environ(environ), **overrides)
