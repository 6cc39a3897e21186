"""Working time by a business calendar (`calendars/<name>.json`): what SLA
clocks count.

A calendar gives the hours of each weekday in its time zone (none named:
`LOOM_TIMEZONE`), public holidays off, and the weekend days worked instead
(调休) with their own hours. `add` finds the moment a stretch of working
time ends; `elapsed` measures the working time between two moments. Both
skip pauses (a ticket waiting on its customer). Ranges are wall-clock
times of each day, so a day that changes its clocks (DST) keeps its
office hours; durations are real time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Iterator

from loomcrm.metadata.model import BusinessCalendar

from .expressions.settings import timezone_name, zone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# how far a search looks ahead: a calendar without working time never ends
HORIZON_DAYS = 3660

Interval = tuple[datetime, datetime]


class NoWorkingTime(ValueError):
    """The calendar has no working time within the horizon."""


def _range(text: str) -> tuple[time, time | None]:
    start, end = text.split("-")
    return time.fromisoformat(start), None if end == "24:00" else time.fromisoformat(end)


@dataclass(frozen=True)
class WorkingTime:
    calendar: BusinessCalendar

    @property
    def zone(self):
        return zone(self.calendar.timezone or timezone_name())

    def ranges_of(self, day: date) -> list[str]:
        """The working ranges of a day, as the calendar writes them."""
        if day in self.calendar.holidays:
            return []
        if day in self.calendar.workdays:
            return list(self.calendar.workday_hours)
        return list(self.calendar.hours.get(DAYS[day.weekday()], []))

    def intervals(self, day: date) -> list[Interval]:
        """The day's working time as aware UTC intervals."""
        out = []
        for text in self.ranges_of(day):
            start, end = _range(text)
            begin = datetime.combine(day, start, self.zone)
            finish = datetime.combine(day + timedelta(days=1), time(0), self.zone) if end is None \
                else datetime.combine(day, end, self.zone)
            out.append((begin.astimezone(timezone.utc), finish.astimezone(timezone.utc)))
        return out

    def _from(self, moment: datetime) -> Iterator[Interval]:
        """Working intervals from `moment` on, the first one cut at it."""
        day = moment.astimezone(self.zone).date()
        for offset in range(HORIZON_DAYS):
            for begin, finish in self.intervals(day + timedelta(days=offset)):
                if finish > moment:
                    yield max(begin, moment), finish
        raise NoWorkingTime(f"calendar {self.calendar.name!r} has no working time within {HORIZON_DAYS} days")

    def add(self, start: datetime, duration: timedelta, pauses: Iterable[Interval] = ()) -> datetime:
        """The moment `duration` of working time after `start` has passed,
        not counting `pauses`."""
        start = _utc(start)
        left = duration
        paused = _merged(pauses)
        for begin, finish in self._from(start):
            for piece_begin, piece_end in _minus(begin, finish, paused):
                span = piece_end - piece_begin
                if span >= left:
                    return piece_begin + left
                left -= span
        raise AssertionError("unreachable")   # `_from` ends by raising

    def elapsed(self, start: datetime, end: datetime, pauses: Iterable[Interval] = ()) -> timedelta:
        """The working time from `start` to `end`, less `pauses`."""
        start, end = _utc(start), _utc(end)
        total = timedelta(0)
        if end <= start:
            return total
        paused = _merged(pauses)
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            for begin, finish in self.intervals(day):
                for piece_begin, piece_end in _minus(max(begin, start), min(finish, end), paused):
                    total += piece_end - piece_begin
            day += timedelta(days=1)
        return total


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("working time needs aware datetimes")
    return moment.astimezone(timezone.utc)


def _merged(pauses: Iterable[Interval]) -> list[Interval]:
    """Pauses in order, overlapping ones joined."""
    out: list[Interval] = []
    for begin, end in sorted((_utc(b), _utc(e)) for b, e in pauses):
        if end <= begin:
            continue
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def _minus(begin: datetime, end: datetime, pauses: list[Interval]) -> list[Interval]:
    """[begin, end) without the (merged, ordered) pauses."""
    pieces, cursor = [], begin
    for pause_begin, pause_end in pauses:
        if pause_end <= cursor or pause_begin >= end:
            continue
        if pause_begin > cursor:
            pieces.append((cursor, pause_begin))
        cursor = max(cursor, pause_end)
    if cursor < end:
        pieces.append((cursor, end))
    return pieces
