"""The embedded local stack: `make up` runs it in the foreground.

- AWS: moto in server mode (SQS, DynamoDB, Step Functions, SSM, Secrets Manager) on
  ``REVSYNC_AWS_PORT`` (5000), with the template's tables and queues.
- Gateway: an HTTP server on ``REVSYNC_API_PORT`` (3000) serving exactly the template's routes by
  calling the same handlers with API Gateway v2 events, plus ``POST /_local/flush``.
- The receiver's function URL on ``REVSYNC_WEBHOOK_PORT`` (unset: a free port, printed): every
  request goes to the receiver as a function URL event; the sandbox delivers the platform's Connect
  webhooks there. Not a fixed port, so two stacks on other API ports never collide on it.
- Pollers: feed each queue of the template's SQS event sources (the events queue to the worker, the
  catch-up queue to the reconciler) like the Lambda event-source mapping.
- Stream poller: feeds the sync table's stream to the revenue rollup like Lambda's DynamoDB
  event-source mapping (``local/streams.py``).
- Stripe: the sandbox on ``REVSYNC_STRIPE_PORT`` (12111), unless ``REVSYNC_STRIPE_API_BASE`` points
  at another Stripe API. The platform key is ``REVSYNC_STRIPE_SECRET_KEY`` (``sk_test_platform``) and
  the Connect webhook secret ``REVSYNC_WEBHOOK_SECRET`` (``whsec_local``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local import apigw, lambda_runtime, moto_fifo, moto_speedups, poller, stepfunctions, streams
from local.auth import LocalIssuer
from local.aws import DEFAULT_PLATFORM_KEY, DEFAULT_WEBHOOK_SECRET, create_resources
from local.environment import LOCAL_AWS, REGION, EnvironmentPatch, functions_environment
from local.http import http
from local.stripe_sandbox.server import SandboxApp
from local.stripe_sandbox.server import serve as serve_sandbox
from local.template import LocalNames, QueueSource, queue_sources, schedules

log = logging.getLogger("revsync.local")


@dataclass(frozen=True, slots=True)
class Ports:
    api: int = 3000
    webhook: int = 0  # the receiver's function URL; 0: any free port (LocalStack.webhook_url says which)
    aws: int = 5000
    stripe: int = 12111

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            api=int(os.environ.get("REVSYNC_API_PORT", "3000")),
            webhook=int(os.environ.get("REVSYNC_WEBHOOK_PORT", "0")),
            aws=int(os.environ.get("REVSYNC_AWS_PORT", "5000")),
            stripe=int(os.environ.get("REVSYNC_STRIPE_PORT", "12111")),
        )


@dataclass
class LocalStack:
    ports: Ports = field(default_factory=Ports.from_env)
    stripe_api_base: str | None = field(
        default_factory=lambda: os.environ.get("REVSYNC_STRIPE_API_BASE") or None
    )
    platform_key: str = field(
        default_factory=lambda: os.environ.get("REVSYNC_STRIPE_SECRET_KEY", DEFAULT_PLATFORM_KEY)
    )
    webhook_secret: str = field(
        default_factory=lambda: os.environ.get("REVSYNC_WEBHOOK_SECRET", DEFAULT_WEBHOOK_SECRET)
    )
    # The missed-events schedule (ReconcileMinutes in AWS); 0 switches it off.
    reconcile_seconds: float = field(
        default_factory=lambda: float(os.environ.get("REVSYNC_RECONCILE_SECONDS", "60"))
    )
    # Locally a failed message is retried after this many seconds, not the queue's 180.
    retry_seconds: int = field(
        default_factory=lambda: int(os.environ.get("REVSYNC_LOCAL_RETRY_SECONDS", "1"))
    )
    names: LocalNames | None = None
    sandbox: SandboxApp | None = None
    # What ``flush`` waits with (tests pass their own: no wall-clock time in a test).
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    _servers: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _function_locks: dict[str, threading.Lock] = field(default_factory=dict)
    # Per polled queue (the template's SQS event sources): whether its poller holds a batch, and counts.
    _pollers_busy: dict[str, threading.Event] = field(default_factory=dict)
    queue_stats: dict[str, poller.PollStats] = field(default_factory=dict)
    _rollup_busy: threading.Event = field(default_factory=threading.Event)
    _rollup_polling: bool = False  # the stream poller runs (flush waits for it to read the stream)
    _rollup_polls: int = 0  # complete polls of the sync table's stream
    _rollup_delivered: int = 0  # records the last one delivered
    _environment: EnvironmentPatch = field(default_factory=EnvironmentPatch)
    issuer: LocalIssuer = field(default_factory=LocalIssuer)
    gateway: apigw.Gateway = field(init=False)
    _wiring: lambda_runtime.Wiring = field(default_factory=lambda_runtime.Wiring)

    def __post_init__(self) -> None:
        self.gateway = apigw.Gateway(self.issuer, self._invoke)
        self.webhook_function_url = apigw.FunctionUrl("WebhookFunction", self._invoke)

    @property
    def poll_stats(self) -> poller.PollStats:
        """The events queue's poller counts (the worker's batches)."""
        return self.queue_stats.setdefault("EventsQueue", poller.PollStats())

    def token(self, tenant_id: str | None = None) -> str:
        """A bearer token for ``tenant_id``, or the operator's (scope ``revsync/admin``) without one."""
        return self.issuer.issue({"tenant_id": tenant_id} if tenant_id else {"scope": "revsync/admin"})

    def admin(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, Any]:
        """An admin route over HTTP with a bearer token (the operator's unless ``token`` is given)."""
        bearer = token if token is not None else self.token()
        return http(method, f"{self.api_url}{path}", body, headers={"authorization": f"Bearer {bearer}"})

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def webhook_url(self) -> str:
        """The receiver's function URL (the template's ConnectWebhookUrl without its path)."""
        return f"http://127.0.0.1:{self.ports.webhook}"

    @property
    def aws_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.aws}"

    @property
    def stripe_url(self) -> str:
        return self.stripe_api_base or f"http://127.0.0.1:{self.ports.stripe}"

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's and our servers' access logs
        moto_speedups.install()
        moto_fifo.install()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.ports.aws, verbose=False)
        moto.start()
        self._servers.append(moto)
        # moto's backends live in this process: start from an empty account even if a stack ran before.
        urllib.request.urlopen(urllib.request.Request(f"{self.aws_url}/moto-api/reset", method="POST"))  # noqa: S310
        self._environment.set(
            {
                **LOCAL_AWS,
                "AWS_ENDPOINT_URL": self.aws_url,
                "MOTO_PORT": str(self.ports.aws),  # where moto's state machine interpreter calls Lambda
                "REVSYNC_WEBHOOK_SECRET": self.webhook_secret,
                "REVSYNC_LOCAL_CLIENT_TIMEOUT_SECONDS": "30",
                "REVSYNC_STRIPE_SECRET_KEY": self.platform_key,
            }
        )
        stepfunctions.install()
        self.names = create_resources(REGION, endpoint_url=self.aws_url)
        # Bound before the functions' environment is set: the tenant API names this URL.
        function_url = make_server("127.0.0.1", self.ports.webhook, self._function_url, threaded=True)
        self.ports = replace(self.ports, webhook=function_url.server_port)
        threading.Thread(target=function_url.serve_forever, name="function-url", daemon=True).start()
        self._servers.append(function_url)
        self._environment.set(
            {
                **functions_environment(self.names),
                "REVSYNC_STRIPE_API_BASE": self.stripe_url,
                "PUBLIC_BASE_URL": self.api_url,
                "WEBHOOK_BASE_URL": f"{self.webhook_url}/",
            }
        )
        self._wiring.wire_all()
        if self.stripe_api_base is None:
            sandbox_server, self.sandbox = serve_sandbox(self.ports.stripe)
            self._servers.append(sandbox_server)
        gateway = make_server("127.0.0.1", self.ports.api, self._gateway, threaded=True)
        threading.Thread(target=gateway.serve_forever, name="gateway", daemon=True).start()
        self._servers.append(gateway)
        for source in queue_sources():
            self._pollers_busy[source.queue] = threading.Event()
            self.queue_stats.setdefault(source.queue, poller.PollStats())
            threading.Thread(
                target=self._poll_forever, args=(source,), name=f"poller-{source.queue}", daemon=True
            ).start()
        self._rollup_polling = True
        threading.Thread(target=self._poll_stream_forever, name="stream-poller", daemon=True).start()
        if self.reconcile_seconds > 0:
            threading.Thread(target=self._reconcile_forever, name="reconcile-schedule", daemon=True).start()
        if self.sandbox is not None:
            self.register_connect_endpoint()
        return self

    def register_connect_endpoint(self) -> None:
        """The platform's Connect webhook endpoint, signed with the stack's webhook secret: the
        receiver's function URL, as README's deploy section registers it."""
        import stripe  # noqa: PLC0415 (dev-only convenience)

        client = stripe.StripeClient(self.platform_key, base_addresses={"api": self.stripe_url})
        client.v1.webhook_endpoints.create(
            params={  # type: ignore[typeddict-unknown-key]
                "url": f"{self.webhook_url}/webhooks/stripe",
                "connect": True,
                "enabled_events": ["*"],
                "secret": self.webhook_secret,  # sandbox extension: choose the secret
            }
        )

    def _wait_for_executions(self, timeout: float = 60) -> None:
        """Let state machine executions end before the stack goes away (they run in moto's threads)."""
        if self.names is None:
            return
        sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=self.aws_url)
        deadline = time.monotonic() + timeout
        for arn in self.names.state_machine_arns.values():
            while time.monotonic() < deadline:
                running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
                if not running:
                    break
                time.sleep(0.1)

    def stop(self) -> None:
        self._wait_for_executions()
        self._stop.set()
        for server in reversed(self._servers):
            if isinstance(server, BaseWSGIServer):
                server.shutdown()
            elif isinstance(server, ThreadedMotoServer):
                server.stop()
        if self.sandbox is not None:
            self.sandbox.stop()
        stepfunctions.uninstall()
        self._environment.restore()

    def wire(self, logical_id: str, environment: dict[str, str] | None = None, **overrides: Any) -> Any:
        """``logical_id``'s graph built again with ``overrides`` and ``environment`` (variables over
        the template's), as local.inprocess.InProcessStack.wire; returns it."""
        return self._wiring.wire(logical_id, environment, **overrides)

    def unwire(self, logical_id: str) -> Any:
        """``logical_id``'s graph as the stack first built it (without what ``wire`` gave it)."""
        return self._wiring.unwire(logical_id)

    def graph(self, logical_id: str) -> Any:
        """The graph ``logical_id``'s handler runs with."""
        return lambda_runtime.graph(logical_id)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the gateway ----------------------------------------------------------------------------

    def _invoke(self, logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
        # One request at a time per function, like one warm Lambda container.
        lock = self._function_locks.setdefault(logical_id, threading.Lock())
        with lock:
            return lambda_runtime.invoke(logical_id, event)

    def _gateway(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/_local/flush" and request.method == "POST":
            flushed = self.flush()
            # Not flushed by the deadline: a 503 saying what is left, never a 200 to misread as done.
            response = Response(json.dumps(flushed), status=200 if flushed["flushed"] else 503)
            response.mimetype = "application/json"
            if not flushed["flushed"] and flushed.get("deferred_until"):
                response.headers["Retry-After"] = str(max(1, round(flushed["deferred_until"] - self.clock())))
            return response(environ, start_response)
        result = self.gateway.handle(
            request.method,
            request.path,
            request.get_data(),
            dict(request.headers.items()),
            request.query_string.decode(),
        )
        return self._respond(result, environ, start_response)

    def _function_url(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        # A function URL passes the path as it was sent (percent-encoded); werkzeug's is decoded.
        raw_path = str(environ.get("RAW_URI") or request.path).split("?", 1)[0]
        result = self.webhook_function_url.handle(
            request.method,
            raw_path,
            request.get_data(),
            dict(request.headers.items()),
            request.query_string.decode(),
        )
        return self._respond(result, environ, start_response)

    @staticmethod
    def _respond(result: apigw.GatewayResponse, environ: dict[str, Any], start_response: Any) -> Any:
        response = Response(result.body, status=result.status, headers=result.headers)
        for cookie in result.cookies:
            response.headers.add("Set-Cookie", cookie)
        return response(environ, start_response)

    # --- the poller -----------------------------------------------------------------------------

    def run_schedules(self) -> None:
        """EventBridge Scheduler's part, once: each of the template's schedules sends its function its
        input (the catch-up schedule queues a job per connected tenant; the catch-up queue's poller
        runs them)."""
        for schedule in schedules():
            self._invoke(schedule.function, schedule.payload)

    def _reconcile_forever(self) -> None:
        """The schedules every ``reconcile_seconds`` (ReconcileMinutes in AWS)."""
        while not self._stop.wait(self.reconcile_seconds):
            try:
                self.run_schedules()
            except Exception:  # keep the schedule, as Scheduler does
                log.exception("scheduled run failed")

    def _poll_forever(self, source: QueueSource) -> None:
        """The event source mapping's part for one queue: batches of its size to its function."""
        assert self.names is not None
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=self.aws_url)
        queue_url = self.names.queue_urls[source.queue]
        busy = self._pollers_busy[source.queue]
        while not self._stop.is_set():
            busy.set()
            try:
                received = poller.poll_once(
                    sqs,
                    queue_url,
                    lambda e: self._invoke(source.function, e),
                    REGION,
                    self.queue_stats[source.queue],
                    retry_visibility=self.retry_seconds,
                    batch_size=source.batch_size,
                )
            except Exception:  # keep polling, as the event-source mapping does
                log.exception("poller error")
                received = 0
            finally:
                busy.clear()
            if not received:
                self._stop.wait(0.05)

    def _poll_stream_forever(self) -> None:
        assert self.names is not None
        mapping = streams.mapping("RollupFunction", self.names, self._invoke, REGION, self.aws_url)
        while not self._stop.is_set():
            self._rollup_busy.set()
            try:
                delivered = mapping.poll_once()
            except Exception:  # keep polling, as the event-source mapping does
                log.exception("stream poller error")
                delivered = 0
            finally:
                self._rollup_busy.clear()
            self._rollup_delivered = delivered
            self._rollup_polls += 1
            if not delivered:
                self._stop.wait(0.05)

    def queue_depth(self, logical_id: str) -> int:
        assert self.names is not None
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=self.aws_url)
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.names.queue_urls[logical_id],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def backlog(self, logical_id: str) -> moto_fifo.Backlog:
        assert self.names is not None
        return moto_fifo.backlog(self.names.queue_urls[logical_id], REGION)

    def flush(self, timeout: float = 120) -> dict[str, Any]:
        """Return once Stripe has nothing left to deliver, every polled queue (events, catch-up jobs)
        is empty and their functions idle, and the revenue rollup has read the sync table's stream to
        its end since. Messages hidden by a deferral (Stripe's rate limit, DynamoDB's throttling) are
        waited for too, with the messages of their FIFO group queued behind them. Past ``timeout``,
        the answer says what is left: deliveries, messages queued, messages still deferred and until
        when."""
        deadline = self.clock() + timeout
        quiet = 0
        polls = self._rollup_polls
        while True:
            pending = self.sandbox.pending() if self.sandbox else 0
            backlogs = [self.backlog(source.queue) for source in queue_sources()]
            busy = (
                pending
                or any(backlog.messages for backlog in backlogs)
                or any(event.is_set() for event in self._pollers_busy.values())
                or self._rollup_busy.is_set()
                or self._rollup_delivered
            )
            quiet = 0 if busy else quiet + 1
            polls = self._rollup_polls if not quiet else polls
            # Two whole polls of the stream since the rest went quiet: the last writes were read.
            stream_read = not self._rollup_polling or self._rollup_polls >= polls + 2
            dead_letters = self.backlog("EventsDeadLetterQueue").messages
            if quiet >= 3 and stream_read:  # stable across a few looks: nothing in flight
                return {"flushed": True, "dead_letters": dead_letters}
            if self.clock() >= deadline:
                return {
                    "flushed": False,
                    "dead_letters": dead_letters,
                    "undelivered": pending,
                    "queued": sum(backlog.ready + backlog.blocked for backlog in backlogs),
                    "deferred": sum(backlog.hidden for backlog in backlogs),
                    "deferred_until": max(
                        (b.hidden_until for b in backlogs if b.hidden_until is not None), default=None
                    ),
                }
            self.sleep(0.05)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    stack = LocalStack().start()
    print("revsync local stack is up (Ctrl-C to stop)")
    print(f"  API gateway     {stack.api_url}   (routes from template.yaml; POST /_local/flush)")
    print(f"  AWS (moto)      {stack.aws_url}")
    print(f"  Stripe          {stack.stripe_url}" + ("   (sandbox)" if stack.sandbox else "   (external)"))
    if stack.sandbox:  # Stripe's own CLI, pointed at the sandbox (`make stripe-cli` installs it)
        cli = "local/stripe-cli/node_modules/.bin/stripe"
        print(f"  Stripe CLI      {cli} trigger <event> --api-key sk_test_<any>")
        print(f"                  --api-base {stack.stripe_url}   (make stripe-cli installs it)")
    # The secret itself is never printed: it is REVSYNC_WEBHOOK_SECRET (whsec_local unless overridden).
    print(f"  Connect webhook {stack.webhook_url}/webhooks/stripe  (the receiver's function URL; the API's")
    print(f"                  {stack.api_url}/webhooks/stripe works too; secret: $REVSYNC_WEBHOOK_SECRET)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stack.stop()


if __name__ == "__main__":
    main()
