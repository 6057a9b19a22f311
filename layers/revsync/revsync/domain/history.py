"""MRR history and movements (DESIGN.md "MRR history and movements"), as pure functions.

Foundation for issue #13, not yet wired to storage or routes: a customer's MRR timeline is a
function of the *set* of its observations (MRR(t) is what the revenue rules give for the latest
observation of each object observed at or before t), each change of MRR(t) is a movement, and
months aggregate movements so that start + new + expansion + reactivation - contraction - churn = end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Literal, NamedTuple

from revsync.domain.events import Observation
from revsync.domain.record import derive_record
from revsync.domain.state import CustomerObjects, apply

Movement = Literal["new", "reactivation", "expansion", "contraction", "churn"]
MOVEMENTS: tuple[Movement, ...] = ("new", "expansion", "reactivation", "contraction", "churn")
_RANK = {"created": 0, "updated": 1, "fetched": 1, "deleted": 2}


class MrrPoint(NamedTuple):
    at: int
    mrr: int  # after the change
    movement: Movement
    amount: int


def mrr_timeline(customer_id: str, observations: Iterable[Observation]) -> list[tuple[int, int]]:
    """(time, MRR from then on) at each time the customer's MRR changed, oldest first.

    Observations are applied in time order (within a second by lifecycle step, then by content, so
    the result depends only on the set); duplicates change nothing, as in the write path.
    """
    ordered = sorted(
        observations,
        key=lambda o: (o["observed_at"], _RANK[o["source"]], json.dumps(o["snapshot"], sort_keys=True)),
    )
    objects = CustomerObjects(customer_id=customer_id)
    points: list[tuple[int, int]] = []
    current = 0
    for at, group in groupby(ordered, key=lambda o: o["observed_at"]):
        for observation in group:
            outcome = apply(objects, observation)
            if outcome.changed:
                objects = outcome.objects
        mrr = derive_record("", objects, None)["mrr"]
        if mrr != current:
            points.append((at, mrr))
            current = mrr
    return points


def movements(timeline: Sequence[tuple[int, int]]) -> list[MrrPoint]:
    """Each change classified by the MRR just before (b) and after (a) it."""
    classified: list[MrrPoint] = []
    before, ever_paid = 0, False
    for at, after in timeline:
        if after == before:
            continue
        if before == 0:
            kind: Movement = "reactivation" if ever_paid else "new"
            amount = after
        elif after == 0:
            kind, amount = "churn", before
        elif after > before:
            kind, amount = "expansion", after - before
        else:
            kind, amount = "contraction", before - after
        classified.append(MrrPoint(at, after, kind, amount))
        ever_paid = ever_paid or after > 0
        before = after
    return classified


class Month(NamedTuple):
    month: str  # YYYY-MM
    start: int  # first instant (Unix seconds, UTC)
    end: int  # first instant of the next month


def months(first: str, last: str) -> list[Month]:
    """Every UTC calendar month from ``first`` to ``last`` (``YYYY-MM``), inclusive."""
    year, month = (int(p) for p in first.split("-"))
    last_year, last_month = (int(p) for p in last.split("-"))
    found: list[Month] = []
    while (year, month) <= (last_year, last_month):
        next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
        found.append(Month(f"{year:04d}-{month:02d}", _epoch(year, month), _epoch(next_year, next_month)))
        year, month = next_year, next_month
    return found


def _epoch(year: int, month: int) -> int:
    """Seconds since 1970-01-01 of a month's first instant (UTC), without a clock or a timezone."""
    days = (year - 1970) * 365 + sum(1 for y in range(1970, year) if y % 4 == 0 and (y % 100 or y % 400 == 0))
    month_days = [
        31,
        29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ]
    return (days + sum(month_days[: month - 1])) * 86_400


def _mrr_at(points: Sequence[MrrPoint], instant: int) -> int:
    """MRR after every change at or before ``instant``."""
    mrr = 0
    for point in points:
        if point.at > instant:
            break
        mrr = point.mrr
    return mrr


def monthly(customers: Iterable[Sequence[MrrPoint]], first: str, last: str) -> list[dict[str, int | str]]:
    """One entry per month: MRR at its start and end, the five movements, customers paying."""
    histories = list(customers)
    report: list[dict[str, int | str]] = []
    for month in months(first, last):
        entry: dict[str, int | str] = {"month": month.month, **dict.fromkeys(MOVEMENTS, 0)}
        entry["mrr_start"] = sum(_mrr_at(h, month.start - 1) for h in histories)
        entry["mrr_end"] = sum(_mrr_at(h, month.end - 1) for h in histories)
        entry["customers_start"] = sum(1 for h in histories if _mrr_at(h, month.start) > 0)
        entry["customers_end"] = sum(1 for h in histories if _mrr_at(h, month.end - 1) > 0)
        for history in histories:
            for point in history:
                if month.start <= point.at < month.end:
                    entry[point.movement] = int(entry[point.movement]) + point.amount
        report.append(entry)
    return report
