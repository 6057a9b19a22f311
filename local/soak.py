"""``make soak``: 10,000 hostile and odd inputs over HTTP against the local stack (the webhook ones
alternately on the HTTP API and on the receiver's function URL); prints the counts.

The inputs are local/fuzz.py's (the same generator the hypothesis suite draws from), seeded 0..N-1 so
a run is repeatable. Exits non-zero on any 5xx, on a forged input that was queued, or on anything
lost: a queued message still on the queue after the flush, or a parked delivery missing from the
dead-letter queue.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import time
from collections import Counter

from revsync.domain.tenancy import Connection, Tenant
from revsync.store.tenants import TenantStore

from local.fuzz import FuzzInput, acknowledged, fuzz_input
from local.stack import LocalStack

DIRECT_SECRET = "whsec_soak_direct_secret"


def _send(connection: http.client.HTTPConnection, item: FuzzInput) -> tuple[int, object] | None:
    path = item.path + (f"?{item.query}" if item.query else "")
    try:
        connection.putrequest(item.method, path, skip_accept_encoding=True)
        for name, value in item.headers.items():
            # What a raw client puts on the wire: the header's UTF-8 bytes.
            connection.putheader(name, value.encode("utf-8", "surrogatepass").decode("latin-1"))
        connection.putheader("Content-Length", str(len(item.body)))
        connection.endheaders(item.body)
    except (ValueError, http.client.HTTPException):
        connection.close()
        return None  # no HTTP client can send it (an invalid header name): nothing to test
    response = connection.getresponse()
    raw = response.read()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode("utf-8", "replace")


def main() -> int:
    inputs = int(os.environ.get("SOAK_INPUTS", "10000"))
    os.environ.setdefault("REVSYNC_LOCAL_RETRY_SECONDS", "0")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the counts, not 10,000 log lines
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    started = time.monotonic()
    with LocalStack() as stack:
        now = int(time.time())
        TenantStore().save(
            Tenant("soak", Connection("connected", "oauth", "acct_soak")).with_config("metadata.app_id"), now
        )
        sealed = stack.graph("TenantApiFunction").secrets.seal(
            "soakdirect", "rk_test_soak_direct_key", DIRECT_SECRET
        )
        TenantStore().save(
            Tenant("soakdirect", Connection("connected", "api_key", sealed=sealed)).with_config("id"), now
        )
        # Webhook inputs alternate between the HTTP API's route and the receiver's function URL.
        ports = {"api": stack.ports.api, "url": stack.ports.webhook}
        connections = {
            name: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for name, port in ports.items()
        }
        statuses: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        parked_bodies: set[bytes] = set()
        forged_queued = unsendable = 0
        for serial in range(inputs):
            item = fuzz_input(
                random.Random(serial),  # noqa: S311 (seeded on purpose: a repeatable run)
                secret=stack.webhook_secret,
                now=int(time.time()),
                account="acct_soak",
                direct_tenant="soakdirect",
                direct_secret=DIRECT_SECRET,
                serial=serial,
            )
            entrance = "url" if serial % 2 and item.path.startswith("/webhooks/") else "api"
            answer = _send(connections[entrance], item)
            if answer is None:
                unsendable += 1
                connections[entrance] = http.client.HTTPConnection("127.0.0.1", ports[entrance], timeout=30)
                continue
            status, body = answer
            statuses[f"{status // 100}xx"] += 1
            outcome = acknowledged(status, body) if item.path.startswith("/webhooks/") else "callback"
            reason = body.get("ignored") if isinstance(body, dict) else None
            outcomes[f"{item.kind}:{outcome}" + (f" ({reason})" if reason else "")] += 1
            if outcome == "queued" and not item.signed:
                forged_queued += 1
            if outcome == "parked":
                parked_bodies.add(item.body)
        stack.flush()
        stuck = stack.queue_depth("EventsQueue")
        dead_letters = stack.queue_depth("EventsDeadLetterQueue")
        missing_parked = max(0, len(parked_bodies) - dead_letters)
        worker = stack.poll_stats
    elapsed = time.monotonic() - started
    lost = stuck + missing_parked
    print(f"soak: {inputs} inputs over HTTP in {elapsed:.0f} s ({unsendable} no HTTP client can send)")
    print(f"  answers        {dict(sorted(statuses.items()))}")
    for key, count in sorted(outcomes.items()):
        print(f"  {key:<28} {count}")
    print(
        f"  worker         received {worker.received}, succeeded {worker.succeeded}, failed {worker.failed}"
    )
    print(f"  dead letters   {dead_letters} (parked by the receiver: {len(parked_bodies)} distinct)")
    print(f"  5xx {statuses.get('5xx', 0)}   forged queued {forged_queued}   lost {lost}")
    return 1 if statuses.get("5xx", 0) or forged_queued or lost else 0


if __name__ == "__main__":
    sys.exit(main())
