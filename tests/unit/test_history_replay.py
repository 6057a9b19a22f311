"""The MRR timeline's replay (``revsync.domain.history.replay``, behind ``mrr_timeline``) against the
rule it replaced: the record derived from scratch at each second (quadratic and worse in a customer's
subscriptions). Random histories of several subscriptions and the customer, with currencies, customer
and subscription discounts (repeating ones ending between observations), deletions, imports,
same-second ties and duplicates, give the same timeline; and a replay resumed from a checkpoint gives
what the whole replay gives."""

from __future__ import annotations

import json
from itertools import groupby, pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from revsync.domain.events import Observation, Source
from revsync.domain.history import (
    Checkpoint,
    HistoryLog,
    TimelineStart,
    history_entries,
    movements,
    mrr_timeline,
    piece_end,
    replay,
)
from revsync.domain.record import derive_record
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.state import CustomerObjects, apply

from local import stripe_shapes as S

T0 = 1_767_225_600
STEP = 1_000  # observations fall on a coarse grid, so seconds are often shared
_RANK = {"imported": -1, "created": 0, "updated": 1, "fetched": 1, "deleted": 2}


def reference_timeline(observations: list[Observation]) -> list[tuple[int, str | None, int]]:
    """The previous ``mrr_timeline``: the whole record derived again at each second."""
    ordered = sorted(
        observations,
        key=lambda o: (o["observed_at"], _RANK[o["source"]], json.dumps(o["snapshot"], sort_keys=True)),
    )
    objects = CustomerObjects(customer_id="cus_1")
    points: list[tuple[int, str | None, int]] = []
    current: tuple[str | None, int] = (None, 0)
    provisional: set[str] = set()
    for at, group in groupby(ordered, key=lambda o: o["observed_at"]):
        for kept in group:
            snapshot = kept["snapshot"]
            key = f"{snapshot['object']}:{snapshot.get('id')}"
            observation: Observation = kept
            if str(kept["source"]) == "imported":
                observation = {**kept, "source": "updated"}
                if snapshot.get("status") in ("active", "past_due"):
                    if objects.current(observation) is not None:
                        continue
                    objects = objects.with_observation(observation)
                    provisional.add(key)
                    continue
            if key in provisional:
                provisional.discard(key)
                objects = objects.with_observation(observation)
                continue
            outcome = apply(objects, observation)
            if outcome.changed:
                objects = outcome.objects
        record = derive_record("", objects, None)
        now = (record["currency"], record["mrr"])
        if now != current and (now[1] or current[1]):
            points.append((at, now[0], now[1]))
        current = now
    return points


def _discount(draw: Any, at: int, owner: dict[str, Any]) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(["none", "none", "forever", "repeating", "amount", "once"]))
    if kind == "none":
        return []
    coupon = {
        "forever": S.coupon(percent_off=20, id="co_20"),
        "repeating": S.coupon(percent_off=50, duration="repeating", duration_in_months=3, id="co_50"),
        "amount": S.coupon(amount_off=700, currency="usd", id="co_7"),
        "once": S.coupon(percent_off=90, duration="once", id="co_90"),
    }[kind]
    end = at + draw(st.integers(-2, 6)) * STEP + draw(st.sampled_from([0, 1, -1]))
    discount = S.discount(coupon, start=at, end=end if kind == "repeating" else None)
    return [{**discount, **owner, "id": f"di_{kind}_{end}"}]


@st.composite
def _observation(draw: Any) -> Observation:
    at = T0 + draw(st.integers(0, 10)) * STEP
    if draw(st.integers(0, 4)) == 0:
        deleted = draw(st.integers(0, 5)) == 0
        raw = S.customer(
            "cus_1",
            currency=draw(st.sampled_from([None, "usd", "eur"])),
            the_discount=next(iter(_discount(draw, at, {"customer": "cus_1"})), None),
        )
        source: Source = "deleted" if deleted else draw(st.sampled_from(["created", "updated", "fetched"]))
        return Observation(
            snapshot=parse_customer(raw, deleted=deleted), observed_at=at, source=source, event_id=None
        )
    sub_id = draw(st.sampled_from(["sub_a", "sub_b", "sub_c"]))
    interval = draw(st.sampled_from(["month", "year", "week"]))
    currency = draw(st.sampled_from(["usd", "usd", "eur"]))
    amount = draw(st.sampled_from([999, 1000, 4900, 3333]))
    items = [
        {
            **S.subscription_item(
                S.price(amount, interval=interval, currency=currency, id=f"price_{amount}"),
                quantity=draw(st.integers(1, 4)),
                discounts=_discount(draw, at, {"subscription": sub_id}),
            ),
            "id": f"si_{sub_id}_{index}",
        }
        for index in range(draw(st.integers(1, 2)))
    ]
    status = draw(st.sampled_from(["active", "active", "past_due", "trialing", "canceled", "unpaid"]))
    raw = S.subscription(
        "cus_1",
        items,
        id=sub_id,
        status=status,
        currency=currency,
        created=T0 - draw(st.integers(0, 3)) * STEP,
        ended_at=at if status == "canceled" else None,
        discounts=_discount(draw, at, {"subscription": sub_id}),
    )
    source = draw(st.sampled_from(["created", "updated", "updated", "fetched", "deleted", "imported"]))
    if status == "canceled" and source == "created":
        source = "deleted"
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)


_histories = st.lists(_observation(), min_size=1, max_size=14)


@settings(max_examples=250, deadline=None)
@given(_histories, st.booleans(), st.randoms(use_true_random=False))
def test_the_replay_gives_the_timeline_the_record_gives_at_each_second(
    observations: list[Observation], imported: bool, rng: Any
) -> None:
    # As the write path keeps them (an import's reconstruction entries too), some twice, shuffled.
    log = HistoryLog().with_entries(e for o in observations for e in history_entries(o, imported=imported))
    kept = HistoryLog.from_json(log.to_json()).observations()
    shuffled = [*kept, *rng.sample(kept, k=len(kept) // 2)]
    rng.shuffle(shuffled)
    assert mrr_timeline("cus_1", shuffled) == reference_timeline(kept)
    assert mrr_timeline("cus_1", observations) == reference_timeline(observations)


@settings(max_examples=300, deadline=None)
@given(_histories, st.lists(st.integers(0, 12), max_size=3))
def test_a_replay_resumed_from_a_checkpoint_gives_the_whole_replay(
    observations: list[Observation], raw_cuts: list[int]
) -> None:
    """Cut anywhere: each piece replayed from the checkpoint taken at its start gives the whole
    timeline's points in its range, starting where the previous piece ended."""
    whole = mrr_timeline("cus_1", observations)
    cuts = sorted({T0 + c * STEP for c in raw_cuts})
    _, checkpoints = replay(observations, cuts=cuts)
    bounds = [None, *cuts, None]
    starts = [Checkpoint(), *checkpoints]
    glued: list[tuple[int, str | None, int]] = []
    previous = TimelineStart()
    for (low, high), checkpoint in zip(pairwise(bounds), starts, strict=True):
        part = [
            o
            for o in observations
            if (low is None or o["observed_at"] >= low) and (high is None or o["observed_at"] < high)
        ]
        points, _ = replay(part, checkpoint)
        assert checkpoint.start == previous
        assert movements(points, checkpoint.start) == [
            p for p in movements(whole) if (low is None or p.at >= low) and (high is None or p.at < high)
        ]
        glued += points
        previous = piece_end(points, checkpoint.start)
    assert glued == whole
