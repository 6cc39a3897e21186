"""Working time by a business calendar, against hand-worked cases: office
hours with a lunch break in Shanghai, weekends, the National Day holidays
with their make-up working days (调休), pauses, a New York week across the
change to daylight time, and the bundle checks of `calendars/`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from loomcrm.metadata.checks import check_bundle
from loomcrm.metadata.model import Bundle, BundleManifest, BusinessCalendar
from loomcrm.runtime.business_hours import NoWorkingTime, WorkingTime

SHANGHAI = ZoneInfo("Asia/Shanghai")
CN = WorkingTime(BusinessCalendar.model_validate({
    "name": "cn_office", "timezone": "Asia/Shanghai",
    "holidays": [f"2026-10-0{d}" for d in range(1, 8)],
    "workdays": ["2026-09-27", "2026-10-10"]}))


def at(day: str, clock: str, tz=SHANGHAI) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=tz)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


@pytest.mark.parametrize("start, duration, due", [
    (at("2026-12-02", "10:00"), hours(4), at("2026-12-02", "15:00")),          # lunch 12-13 not counted
    (at("2026-12-02", "12:30"), hours(1), at("2026-12-02", "14:00")),          # from lunch: counting starts at 13:00
    (at("2026-12-04", "17:00"), hours(2), at("2026-12-07", "10:00")),          # Friday evening: Monday morning
    (at("2026-12-05", "15:00"), hours(1), at("2026-12-07", "10:00")),          # a Saturday
    (at("2026-12-02", "07:00"), hours(8), at("2026-12-02", "18:00")),          # a whole working day
    (at("2026-09-30", "17:00"), hours(2), at("2026-10-08", "10:00")),          # over the National Day week
    (at("2026-09-26", "10:00"), hours(1), at("2026-09-27", "10:00")),          # a Sunday worked (调休)
    (at("2026-10-09", "17:30"), hours(1), at("2026-10-10", "09:30")),          # a Saturday worked
    (at("2026-12-02", "10:00"), timedelta(0), at("2026-12-02", "10:00")),
    (at("2026-12-02", "18:00"), timedelta(0), at("2026-12-03", "09:00")),      # nothing left today
])
def test_adding_working_time(start, duration, due):
    assert CN.add(start, duration) == due
    assert CN.elapsed(start, due) == duration


def test_pauses_are_not_counted():
    waiting = [(at("2026-12-02", "11:00"), at("2026-12-02", "14:00"))]          # on the customer: 11-12, 13-14
    assert CN.add(at("2026-12-02", "10:00"), hours(4), waiting) == at("2026-12-02", "17:00")
    overlapping = waiting + [(at("2026-12-02", "13:30"), at("2026-12-02", "15:00"))]
    assert CN.add(at("2026-12-02", "10:00"), hours(4), overlapping) == at("2026-12-02", "18:00")
    assert CN.elapsed(at("2026-12-04", "17:00"), at("2026-12-07", "10:00"),
                      [(at("2026-12-07", "09:00"), at("2026-12-07", "09:30"))]) == hours(1.5)
    assert CN.elapsed(at("2026-12-07", "10:00"), at("2026-12-04", "17:00")) == timedelta(0)


def test_a_week_across_the_change_to_daylight_time():
    new_york = ZoneInfo("America/New_York")
    office = WorkingTime(BusinessCalendar.model_validate({
        "name": "ny", "timezone": "America/New_York",
        "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}))
    friday = at("2026-03-06", "16:00", new_york)                     # EST; clocks go forward on Sunday 8 March
    due = office.add(friday, hours(3))
    assert due == at("2026-03-09", "11:00", new_york)                # EDT: 15:00 UTC
    assert due.astimezone(timezone.utc) == datetime(2026, 3, 9, 15, 0, tzinfo=timezone.utc)
    assert office.elapsed(friday, due) == hours(3)


def test_round_the_clock_days_and_calendars_without_working_time():
    weekend = WorkingTime(BusinessCalendar.model_validate({
        "name": "weekend_desk", "timezone": "UTC", "hours": {"sat": ["00:00-24:00"], "sun": ["00:00-24:00"]}}))
    saturday = datetime(2026, 12, 5, 6, 0, tzinfo=timezone.utc)
    assert weekend.add(saturday, hours(30)) == datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert weekend.add(saturday, hours(48)) == datetime(2026, 12, 12, 6, 0, tzinfo=timezone.utc)
    never = WorkingTime(BusinessCalendar.model_validate({"name": "closed", "timezone": "UTC", "hours": {}}))
    with pytest.raises(NoWorkingTime):
        never.add(saturday, hours(1))
    with pytest.raises(ValueError):
        CN.add(datetime(2026, 12, 2, 10, 0), hours(1))               # a time without its zone


def test_the_bundle_checks_calendars():
    calendar = BusinessCalendar.model_validate({
        "name": "bad", "timezone": "Mars/Olympus",
        "hours": {"mon": ["09:00-12:00", "11:00-18:00"], "tue": ["18:00-09:00"]},
        "holidays": ["2026-10-01"], "workdays": ["2026-10-01"]})
    problems = check_bundle(Bundle(manifest=BundleManifest(format="loom/1", name="b", version="1.0.0"),
                                   calendars=[calendar]))
    assert {(p.file, p.path, p.code) for p in problems} == {
        ("calendars/bad.json", "timezone", "bad_calendar"), ("calendars/bad.json", "hours.mon[1]", "bad_calendar"),
        ("calendars/bad.json", "hours.tue[0]", "bad_calendar"), ("calendars/bad.json", "workdays[0]", "bad_calendar")}
    assert date(2026, 10, 1) in calendar.holidays
