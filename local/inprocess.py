"""The whole pipeline in one process on moto: used by the integration tests and by ``make demo``.

Tables, queues and function environments come from template.yaml; HTTP requests are matched against
the template's routes and handed to the real handlers as API Gateway v2 events; the events queue is
drained into the real worker the way the SQS event-source mapping would, and the sync table's stream
into the revenue rollup the way the DynamoDB one would (local/streams.py). Each function runs with the
graph its composition root builds (revsync.bootstrap), with the stack's clock; tests replace parts of
it through ``wire`` (a fake Stripe, a recording queue).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import boto3
from moto import mock_aws
from revsync.domain.signature import compute_signature

from local import apigw, lambda_runtime, moto_fifo, moto_speedups, poller, streams
from local.auth import LocalIssuer
from local.aws import create_resources, read_change_feed, remove_change_feed_tap
from local.environment import LOCAL_AWS, REGION, EnvironmentPatch, functions_environment
from local.template import LocalNames, function_urls, queue_sources


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class InProcessStack:
    """``clock``: what every function takes for "now" (tests pass a fixed one: nothing they check may
    depend on wall-clock time passing)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        moto_speedups.install()
        moto_fifo.install()
        self._mock = mock_aws()
        self._environment = EnvironmentPatch()
        self.names: LocalNames | None = None
        self._rollup: streams.StreamMapping | None = None
        self.clock = clock
        self._wiring = lambda_runtime.Wiring(clock=lambda: self.clock())  # noqa: PLW0108 (tests move stack.clock)
        self.issuer = LocalIssuer(clock=lambda: self.clock())  # noqa: PLW0108 (tests move stack.clock)
        self.gateway = apigw.Gateway(self.issuer, lambda_runtime.invoke)
        # Only public URLs exist in the template (AuthType NONE): nothing in front of the function.
        assert set(function_urls().values()) <= {"NONE"}, function_urls()
        self.function_urls = {
            logical_id: apigw.FunctionUrl(logical_id, lambda_runtime.invoke) for logical_id in function_urls()
        }

    def token(self, tenant_id: str | None = None) -> str:
        """A bearer token for ``tenant_id``, or the operator's (scope ``revsync/admin``) without one."""
        return self.issuer.issue({"tenant_id": tenant_id} if tenant_id else {"scope": "revsync/admin"})

    def __enter__(self) -> InProcessStack:
        self._environment.set(LOCAL_AWS)
        self._mock.start()
        self.names = create_resources(REGION)
        self._environment.set(functions_environment(self.names))
        self._wiring.wire_all()
        return self

    def wire(self, logical_id: str, environment: Mapping[str, str] | None = None, **overrides: Any) -> Any:
        """``logical_id``'s graph built again with ``overrides`` (parts of it by name: a fake Stripe, a
        recording queue) and ``environment`` (variables over the template's), kept until the stack
        ends; the handler runs with it from now on. Returns the graph."""
        return self._wiring.wire(logical_id, environment, **overrides)

    def graph(self, logical_id: str) -> Any:
        """The graph ``logical_id``'s handler runs with (its adapters, as its composition root built
        them for this stack)."""
        return lambda_runtime.graph(logical_id)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._mock.stop()
        self._environment.restore()

    # --- clients ------------------------------------------------------------------------------

    def client(self, service: Any) -> Any:
        return boto3.client(service, region_name=REGION)

    def queue_url(self, logical_id: str) -> str:
        assert self.names is not None
        return self.names.queue_urls[logical_id]

    # --- HTTP through the template's routes ---------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        *,
        token: str | None = None,
    ) -> HttpResponse:
        """Through the template's routes. Admin routes get the operator's bearer token unless
        ``token`` (a tenant's, or "" for none) or an ``authorization`` header is given."""
        headers = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        if not any(key.lower() == "authorization" for key in headers):
            bearer = self.token() if token is None else token
            if bearer:
                headers["authorization"] = f"Bearer {bearer}"
        raw = body.encode() if isinstance(body, str) else (body or b"")
        result = self.gateway.handle(method, path, raw, headers, query)
        return HttpResponse(result.status, result.headers, result.body)

    def post_webhook(
        self,
        event: dict[str, Any] | None,
        secret: str | list[str],
        *,
        tenant_id: str | None = None,
        timestamp: int | None = None,
        body: bytes | None = None,
        signature: str | None = None,
        content_type: str = "application/json",
        via: Literal["api", "url"] = "api",
    ) -> HttpResponse:
        """POST a Stripe event to the receiver, signed as Stripe signs it (or as the caller overrides),
        on the HTTP API's route or (``via="url"``) on the receiver's function URL."""
        raw = body if body is not None else json.dumps(event).encode()
        if signature is None:
            stamp = int(self.clock()) if timestamp is None else timestamp
            secrets = [secret] if isinstance(secret, str) else secret
            signature = f"t={stamp}," + ",".join(f"v1={compute_signature(s, stamp, raw)}" for s in secrets)
        headers = {"content-type": content_type}
        if signature:
            headers["stripe-signature"] = signature
        path = "/webhooks/stripe" if tenant_id is None else f"/webhooks/stripe/{tenant_id}"
        if via == "url":
            return self.url_request("WebhookFunction", "POST", path, raw, headers)
        return self.request("POST", path, raw, headers)

    def deliver(self, events: list[dict[str, Any]], secret: str) -> None:
        """Each event POSTed to the receiver (each acknowledged), then the queue drained."""
        for event in events:
            assert self.post_webhook(event, secret).status == 200
        self.drain()

    def change_feed(self) -> list[dict[str, Any]]:
        """The change feed's events since the last read (the local tap queue, drained)."""
        assert self.names is not None
        return read_change_feed(boto3.session.Session(region_name=REGION), None, self.names)

    def without_change_feed_tap(self) -> None:
        """The change feed as deployed: no local tap queue behind it (for benchmarks)."""
        assert self.names is not None
        remove_change_feed_tap(boto3.session.Session(region_name=REGION), None, self.names)

    def url_request(
        self, function: str, method: str, path: str, body: bytes, headers: dict[str, str], query: str = ""
    ) -> HttpResponse:
        """A request to ``function``'s URL."""
        result = self.function_urls[function].handle(method, path, body, headers, query)
        return HttpResponse(result.status, result.headers, result.body)

    # --- the queue ----------------------------------------------------------------------------

    def drain(
        self, max_batches: int = 1000, queue: str = "EventsQueue", *, rollup: bool = True
    ) -> poller.PollStats:
        """Feed ``queue`` to the function the template gives it as an SQS event source, in batches
        of its size, until it is empty (the events queue to the worker by default); then
        (``rollup``) the sync table's stream into the revenue rollup."""
        [source] = [s for s in queue_sources() if s.queue == queue]
        stats = poller.drain(
            self.client("sqs"),
            self.queue_url(queue),
            lambda event: lambda_runtime.invoke(source.function, event),
            REGION,
            max_batches=max_batches,
            batch_size=source.batch_size,
        )
        if rollup:
            self.drain_stream()
        return stats

    def drain_stream(self, max_batches: int = 1000) -> streams.StreamStats:
        """The sync table's stream into the revenue rollup, as Lambda's mapping would feed it."""
        if self._rollup is None:
            assert self.names is not None
            self._rollup = streams.mapping("RollupFunction", self.names, lambda_runtime.invoke, REGION)
        return self._rollup.drain(max_batches)

    def queue_depth(self, logical_id: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(logical_id),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
