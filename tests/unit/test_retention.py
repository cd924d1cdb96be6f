"""GFS retention as pure functions: a list of set dates in, keep/delete out; never the newest verified set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from erpops.backup import manifest as mf
from erpops.backup.retention import Rules, SetEntry, plan, unreferenced


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def entry(text: str, verified: bool | None = True) -> SetEntry:
    when = at(text)
    return SetEntry(f"prod-mfg-{when.strftime('%Y%m%dT%H%M%SZ')}-abcdef", when, verified)


def kept(decisions: list) -> list[str]:
    return [d.created.strftime("%Y-%m-%d %H:%M") for d in decisions if d.keep]


def daily_sets(days: int, start: str = "2026-11-30 02:00") -> list[SetEntry]:
    first = at(start)
    return [SetEntry(f"prod-mfg-{(first - timedelta(days=i)).strftime('%Y%m%dT%H%M%SZ')}-00000{i % 10}",
                     first - timedelta(days=i), True) for i in range(days)]


def test_daily_keeps_the_newest_set_of_each_of_the_last_n_days() -> None:
    sets = [entry("2026-11-30 02:00"), entry("2026-11-30 14:00"), entry("2026-11-29 02:00"),
            entry("2026-11-28 02:00"), entry("2026-11-27 02:00")]
    decisions = plan(sets, Rules(daily=2, weekly=0, monthly=0))
    assert kept(decisions) == ["2026-11-30 14:00", "2026-11-29 02:00"]
    assert [d.created for d in decisions] == sorted((s.created for s in sets), reverse=True)


def test_weekly_keeps_the_newest_per_iso_week() -> None:
    # 2026-11-30 is a Monday (ISO week 49); 23..29 is week 48; 16..22 week 47.
    sets = daily_sets(21)
    decisions = plan(sets, Rules(daily=1, weekly=3, monthly=0))
    assert kept(decisions) == ["2026-11-30 02:00", "2026-11-29 02:00", "2026-11-22 02:00"]
    reasons = {d.created.strftime("%Y-%m-%d"): d.reasons for d in decisions if d.keep}
    assert reasons["2026-11-30"] == ["daily 2026-11-30", "weekly 2026-W49", "newest verified set"]
    assert reasons["2026-11-29"] == ["weekly 2026-W48"]


def test_monthly_keeps_the_newest_per_month() -> None:
    sets = daily_sets(100)
    decisions = plan(sets, Rules(daily=1, weekly=0, monthly=4))
    assert kept(decisions) == ["2026-11-30 02:00", "2026-10-31 02:00", "2026-09-30 02:00", "2026-08-31 02:00"]


def test_staging_defaults_keep_7_daily_and_4_weekly() -> None:
    decisions = plan(daily_sets(60), Rules(daily=7, weekly=4, monthly=0))
    # Days 11-30..11-24, plus weeks W47 (11-22) and W46 (11-15): W49 and W48's newest are daily ones.
    assert kept(decisions) == [f"2026-11-{d} 02:00" for d in (30, 29, 28, 27, 26, 25, 24, 22, 15)]
    assert sum(not d.keep for d in decisions) == 51


@pytest.mark.parametrize("verified_index", [0, 5, 59])
def test_the_newest_verified_set_is_never_deleted(verified_index: int) -> None:
    sets = [SetEntry(s.set_id, s.created, i == verified_index) for i, s in enumerate(daily_sets(60))]
    decisions = plan(sets, Rules(daily=1, weekly=0, monthly=0))
    newest_verified = sets[verified_index].set_id
    by_id = {d.set_id: d for d in decisions}
    assert by_id[newest_verified].keep
    assert "newest verified set" in by_id[newest_verified].reasons


def test_a_failed_verify_does_not_count_as_verified() -> None:
    sets = [entry("2026-11-30 02:00", verified=False), entry("2026-11-20 02:00", verified=True),
            entry("2026-11-10 02:00", verified=True)]
    decisions = plan(sets, Rules(daily=1, weekly=0, monthly=0))
    assert kept(decisions) == ["2026-11-30 02:00", "2026-11-20 02:00"]


def test_no_sets_no_decisions() -> None:
    assert plan([], Rules()) == []


def test_days_are_utc() -> None:
    # 23:30 in UTC-5 is 04:30 UTC the next day: one UTC day, two local days.
    from datetime import timezone

    minus5 = timezone(timedelta(hours=-5))
    a = SetEntry("a", datetime(2026, 11, 29, 23, 30, tzinfo=minus5), True)
    b = SetEntry("b", datetime(2026, 11, 30, 1, 0, tzinfo=UTC), True)
    decisions = plan([a, b], Rules(daily=1, weekly=0, monthly=0))
    assert [d.set_id for d in decisions if d.keep] == ["a"]


def test_unreferenced_filestore_objects() -> None:
    def manifest(*sha1s: str) -> mf.Manifest:
        files = [mf.FilestoreFile(f"{s[:2]}/{s}", s, "0" * 64, 1) for s in sha1s]
        return mf.Manifest(odoo={}, set_id="x", created_at="2026-11-30T02:00:00Z", stack="prod", db_name="mfg",
                           erpops_version="0", pg_server_version=None, pg_server_version_num=None, artifacts=[],
                           filestore=files, row_counts={}, duration_seconds=0, neutralized=False)

    a, b, c = "a" * 40, "b" * 40, "c" * 40
    stored = [mf.filestore_key(x) for x in (a, b, c)]
    assert unreferenced(stored, [manifest(a), manifest(a, b)]) == {mf.filestore_key(c)}
    assert unreferenced(stored, []) == set(stored)
