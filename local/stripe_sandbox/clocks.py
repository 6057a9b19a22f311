"""Time: the sandbox's own clock and Stripe's test clocks, and what falls due when either moves on.

Objects live on the sandbox's clock (the wall clock plus ``/_sandbox/clock/advance``) or on a test
clock (``/v1/test_helpers/test_clocks``): a customer created with ``test_clock``, and everything of
that customer's, is stamped with the clock's frozen time (``created``, periods, its events'
``created``) and moves only when the clock is advanced. Advancing runs what falls due in time order,
each at its own moment: schedules' phases, then subscriptions (trial notices and ends, renewals,
cancellations), then invoice payment retries, discounts ending, quotes expiring (that order when
they fall on the same second: a phase change comes before the renewal it bills).
"""

from __future__ import annotations

import heapq
from types import ModuleType

from local.stripe_sandbox import customers, discounts, invoices, quotes, schedules, subscriptions
from local.stripe_sandbox.catalog import DAY, period_seconds
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.events import emit

KIND = "test_helpers.test_clock"
DELETES_AFTER = 30 * DAY  # Stripe deletes a test clock 30 days after it is created
# The kinds with work that falls due, each module's ``due`` and ``run_due``, first first on a tie.
DUE: tuple[tuple[str, ModuleType], ...] = (
    ("subscription_schedule", schedules),
    ("subscription", subscriptions),
    ("invoice", invoices),
    ("discount", discounts),
    ("quote", quotes),
)


def clock_of(account: Account, obj: Obj) -> str | None:
    """The test clock an object lives on (its own ``test_clock``, else its customer's), or None."""
    if "test_clock" in obj:
        return obj["test_clock"] or None
    customer = account.table("customer").get(str(obj.get("customer") or ""))
    return (customer or {}).get("test_clock") or None


def request_time(sb: Sandbox, account: Account, params: Obj, ids: list[str]) -> int | None:
    """The frozen time a request about a test clock's objects happens at (None: the sandbox's time):
    the ``test_clock`` it names, else the clock of the object its path names, else of the customer,
    invoice, subscription, payment intent or charge a parameter names."""
    clock_id = params.get("test_clock") if isinstance(params.get("test_clock"), str) else None
    if not clock_id:
        named = [
            *ids[:1],
            *(params.get(k) for k in ("customer", "invoice", "subscription", "payment_intent", "charge")),
        ]
        for candidate in named:
            found = account.find(candidate) if isinstance(candidate, str) and candidate else None
            if found is not None and found.get("object") != KIND:
                clock_id = clock_of(account, found)
                break
    clock = account.table(KIND).get(clock_id or "")
    return int(clock["frozen_time"]) if clock and not clock.get("deleted") else None


def run(sb: Sandbox, account: Account, clock_id: str | None, start: int, until: int) -> None:
    """Run, in time order, all that falls due up to ``until`` for the objects on one clock (None:
    the sandbox's), each at its moment (never before ``start``, where the clock stood)."""
    queue: list[tuple[int, int, int, str, str]] = []  # (when, kind's rank, seq, kind, id)
    seq = 0

    def push(rank: int, kind: str, module: ModuleType, obj: Obj) -> None:
        nonlocal seq
        if clock_of(account, obj) != clock_id or obj.get("deleted"):
            return
        found = module.due(sb, account, obj)
        if found is not None and found[0] <= until:
            seq += 1
            heapq.heappush(queue, (max(found[0], start), rank, seq, kind, obj["id"]))

    sizes = {}
    for rank, (kind, module) in enumerate(DUE):
        table = account.table(kind)
        sizes[kind] = len(table)
        for obj in list(table.values()):
            push(rank, kind, module, obj)
    for _ in range(100_000):
        if not queue:
            return
        when, rank, _, kind, object_id = heapq.heappop(queue)
        module, obj = DUE[rank][1], account.table(kind)[object_id]
        found = module.due(sb, account, obj)
        if found is None or max(found[0], start) != when:  # stale: moved since it was queued
            if found is not None:
                push(rank, kind, module, obj)
            continue
        with sb.at(when):
            module.run_due(sb, account, obj, found[1])
        push(rank, kind, module, obj)
        for other_rank, (other_kind, other) in enumerate(DUE):  # objects made meanwhile
            table = account.table(other_kind)
            for new in list(table.values())[sizes[other_kind] :]:
                push(other_rank, other_kind, other, new)
            sizes[other_kind] = len(table)
    raise StripeError(
        500, "The clock has too much to run at once: advance it in smaller steps.", type_="api_error"
    )


# --- the sandbox's own clock -----------------------------------------------------------------------


def advance_sandbox(sb: Sandbox, seconds: int) -> int:
    """``/_sandbox/clock/advance``: every account's objects not on a test clock move ``seconds`` on."""
    start = sb.now()
    until = start + seconds
    for account in list(sb.accounts.values()):
        run(sb, account, None, start, until)
    sb.clock_offset += seconds
    return sb.now()


# --- Stripe's test clocks --------------------------------------------------------------------------


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    frozen = params.get("frozen_time")
    if frozen in (None, ""):
        raise StripeError(400, "Missing required param: frozen_time.", param="frozen_time")
    now = sb.now()
    clock = sb.put(
        account,
        {
            "id": sb.new_id("clock"),
            "object": KIND,
            "created": now,
            "deletes_after": now + DELETES_AFTER,
            "frozen_time": int(frozen),
            "livemode": False,
            "name": params.get("name"),
            "status": "ready",
            "status_details": {"advancing": None},
        },
    )
    emit(sb, account, "test_helpers.test_clock.created", clock)
    return clock


def _live(sb: Sandbox, account: Account, clock_id: str) -> Obj:
    clock = sb.get(account, KIND, clock_id)
    if clock.get("deleted"):
        raise StripeError(
            404, f"No such test_clock: '{clock_id}'", code="resource_missing", param="test_clock"
        )
    return clock


def retrieve(sb: Sandbox, account: Account, params: Obj, clock_id: str) -> Obj:
    return _live(sb, account, clock_id)


def advance(sb: Sandbox, account: Account, params: Obj, clock_id: str) -> Obj:
    """Move the clock to ``frozen_time``: what falls due on it runs, in time order. Stripe answers
    while the clock is ``advancing`` (``…advancing`` is sent, then ``…ready`` when done); the sandbox
    runs it all before it answers, so the answer shows the clock as it started advancing."""
    clock = _live(sb, account, clock_id)
    target = params.get("frozen_time")
    if target in (None, ""):
        raise StripeError(400, "Missing required param: frozen_time.", param="frozen_time")
    start, until = int(clock["frozen_time"]), int(target)
    if until <= start:
        raise StripeError(
            400,
            "The frozen_time must be later than the test clock's current frozen_time.",
            param="frozen_time",
        )
    longest = _longest_advance(account, clock_id)
    if longest is not None and until - start > longest:
        raise StripeError(
            400,
            "A test clock advances at most two intervals of its shortest subscription at a time "
            f"(here {longest // DAY} days): advance it in steps.",
            param="frozen_time",
        )
    clock.update(status="advancing", status_details={"advancing": {"target_frozen_time": until}})
    emit(sb, account, "test_helpers.test_clock.advancing", clock)
    answer = dict(clock)
    run(sb, account, clock_id, start, until)
    clock.update(frozen_time=until, status="ready", status_details={"advancing": None})
    emit(sb, account, "test_helpers.test_clock.ready", clock)
    return answer


def _longest_advance(account: Account, clock_id: str) -> int | None:
    periods = [
        period_seconds(item["price"])
        for subscription in account.table("subscription").values()
        if subscription.get("test_clock") == clock_id and subscription["status"] not in subscriptions.ENDED
        for item in subscription["items"]["data"]
    ]
    return 2 * min(periods) if periods else None


def delete(sb: Sandbox, account: Account, params: Obj, clock_id: str) -> Obj:
    """Deleting a test clock deletes its customers (and so ends their subscriptions)."""
    clock = _live(sb, account, clock_id)
    with sb.at(int(clock["frozen_time"])):
        for customer in list(account.table("customer").values()):
            if customer.get("test_clock") == clock_id and not customer.get("deleted"):
                customers.delete(sb, account, {}, customer["id"])
    emit(sb, account, "test_helpers.test_clock.deleted", clock)
    account.table(KIND)[clock_id] = {"id": clock_id, "object": KIND, "deleted": True}
    return {"id": clock_id, "object": KIND, "deleted": True}
