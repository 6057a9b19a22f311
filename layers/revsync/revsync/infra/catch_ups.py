"""The catch-up queue (SQS FIFO): one job per tenant per period (and a policy change's recompute, in
the same group), one message group per tenant, so a tenant's jobs run one at a time and never wait
for another tenant's."""

from __future__ import annotations

import json
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from revsync.domain.reconcile import QueuedJob
from revsync.infra import aws
from revsync.infra.queue import QueueError

BATCH = 10  # SendMessageBatch's limit


def job_body(job: QueuedJob) -> str:
    return json.dumps(job._asdict(), separators=(",", ":"))


class SqsCatchUpQueue:
    """The catch-up queue (``url``); a job is queued once per ``period_seconds`` (the schedule's)."""

    def __init__(self, url: str, period_seconds: int) -> None:
        self._url, self._period = url, period_seconds

    def send(self, jobs: Sequence[QueuedJob]) -> None:
        period = self._period
        for first in range(0, len(jobs), BATCH):
            entries = [
                {
                    "Id": str(index),
                    "MessageBody": job_body(job),
                    "MessageGroupId": job.tenant_id,
                    "MessageDeduplicationId": job.deduplication_id(period),
                }
                for index, job in enumerate(jobs[first : first + BATCH])
            ]
            for _ in range(2):  # entries SQS failed on their own (throttled) are sent once more
                try:
                    response = aws.sqs().send_message_batch(
                        QueueUrl=self._url,
                        Entries=entries,  # type: ignore[arg-type]
                    )
                except (BotoCoreError, ClientError) as exc:
                    raise QueueError(type(exc).__name__) from exc
                failed = {failure["Id"] for failure in response.get("Failed", [])}
                entries = [entry for entry in entries if entry["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise QueueError(f"{len(entries)} catch-up jobs not queued")
