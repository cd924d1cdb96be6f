"""Health check plumbing without servers: grading, worst state, runner timeouts, output formats, CLI exit."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from erpops import spec
from healthchecks import cli as health_cli
from healthchecks import output, s3
from healthchecks.core import Check, Level, Result, State, Targets, Thresholds, Unknown, run_checks, worst
from healthchecks.suite import all_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("level", "value", "expected"), [
    (Level(10, 20), 5, State.OK),
    (Level(10, 20), 10, State.WARN),
    (Level(10, 20), 25, State.CRIT),
    (Level(0.95, 0.90, higher_is_worse=False), 0.99, State.OK),
    (Level(0.95, 0.90, higher_is_worse=False), 0.93, State.WARN),
    (Level(0.95, 0.90, higher_is_worse=False), 0.5, State.CRIT),
])
def test_level_grades_both_directions(level: Level, value: float, expected: State) -> None:
    assert level.grade(value) is expected


@pytest.mark.parametrize(("states", "expected"), [
    ([], State.OK),
    ([State.OK, State.WARN], State.WARN),
    ([State.WARN, State.UNKNOWN], State.UNKNOWN),
    ([State.UNKNOWN, State.CRIT, State.OK], State.CRIT),  # an UNKNOWN must not mask a CRIT
])
def test_worst_state(states: list[State], expected: State) -> None:
    assert worst(states) is expected


def test_default_thresholds_cover_every_check() -> None:
    th = Thresholds.defaults()
    for name in ("odoo_latency_ms", "pg_connections_ratio", "pg_lock_wait_seconds", "redis_memory_ratio",
                 "backup_age_minutes", "disk_free_ratio_min", "cron_overdue_minutes", "s3_multipart_age_hours"):
        assert name in th.levels, name
    assert th["disk_free_ratio_min"].higher_is_worse is False
    assert th["pg_cache_hit_ratio_min"].higher_is_worse is False
    assert th["backup_age_minutes"] == Level(1440, 2880)


def test_thresholds_from_prod_spec() -> None:
    th = Thresholds.from_sized(spec.load("prod", ROOT))
    assert th.rpo_minutes == 60
    assert th["backup_age_minutes"] == Level(60, 120)
    assert th.odoo_version in spec.ODOO_VERSIONS
    assert th.pg_storage_bytes and th.pg_storage_bytes > 0


def test_runner_turns_timeouts_and_crashes_into_unknown() -> None:
    # The slow check is held by an event until the runner has answered: whether the runner waits
    # for it is then a fact about the code, not about how busy this machine is.
    release = threading.Event()
    finished: list[str] = []

    def slow(t: Targets, th: Thresholds) -> tuple[State, str, dict[str, float]]:
        release.wait(30)
        finished.append("slow")
        return State.OK, "too late", {}

    def broken(t: Targets, th: Thresholds) -> tuple[State, str, dict[str, float]]:
        raise KeyError("used_memory")

    def cannot(t: Targets, th: Thresholds) -> tuple[State, str, dict[str, float]]:
        raise Unknown("missing permission")

    def fine(t: Targets, th: Thresholds) -> tuple[State, str, dict[str, float]]:
        return State.OK, "fine", {"x": 1}

    checks = [Check("slow", slow), Check("broken", broken), Check("cannot", cannot), Check("fine", fine)]
    try:
        results = {r.check: r for r in run_checks(checks, Targets(), Thresholds.defaults(), timeout=0.3)}
        assert finished == []  # the runner answered without waiting for the check it timed out
    finally:
        release.set()
    assert results["slow"].state is State.UNKNOWN and "timed out" in results["slow"].message
    assert results["broken"].state is State.UNKNOWN and "KeyError" in results["broken"].message
    assert results["cannot"].state is State.UNKNOWN and results["cannot"].message == "missing permission"
    assert results["fine"].state is State.OK


_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def parse_prometheus(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict reader of the text format: every line is HELP, TYPE or a sample; TYPE precedes samples."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind == "gauge"
            typed.add(name)
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m["name"] in typed, f"{m['name']} has no TYPE line before its samples"
        labels = frozenset(tuple(kv.split("=", 1)) for kv in m["labels"].split(","))
        samples[(m["name"], frozenset((k, v.strip('"')) for k, v in labels))] = float(m["value"])
    return samples


def test_prometheus_textfile_parses_back(tmp_path: Path) -> None:
    results = [
        Result("pg.connections", State.WARN, "85 of 100", {"used": 85, "ratio": 0.85}, 0.012),
        Result("host.disk", State.OK, "ok", {"free_ratio:/var/lib/postgresql": 0.5}, 0.001),
        Result("redis.ping", State.UNKNOWN, 'refused "x"', {}, 0.0),
    ]
    path = tmp_path / "erpops.prom"
    output.write_atomic(path, output.prometheus(results, "prod"))
    samples = parse_prometheus(path.read_text())
    prod = ("stack", "prod")
    assert samples[("erpops_check_state", frozenset({("check", "pg.connections"), prod}))] == 1
    assert samples[("erpops_check_state", frozenset({("check", "redis.ping"), prod}))] == 3
    assert samples[("erpops_pg_connections_ratio", frozenset({prod}))] == 0.85
    assert samples[("erpops_host_disk_free_ratio", frozenset({prod, ("detail", "/var/lib/postgresql")}))] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["erpops.prom"]  # no temp file left behind


@pytest.mark.parametrize(("age", "expected"), [(timedelta(minutes=10), State.OK), (timedelta(hours=2), State.WARN)])
def test_incomplete_multipart_older_than_an_hour_warns(age: timedelta, expected: State) -> None:
    now = datetime.now(UTC)
    state, _, metrics = s3.grade_uploads([{"Key": "prod/sets/a/db.dump", "Initiated": now - age}], now,
                                         Thresholds.defaults())
    assert state is expected
    assert metrics["uploads"] == 1


def test_nagios_line_names_the_worst_first_and_carries_perfdata() -> None:
    line = output.nagios([Result("redis.ping", State.OK, "PONG", {"latency_ms": 1.5}),
                          Result("pg.blocked_locks", State.CRIT, "1 session blocked | by 42", {"blocked_sessions": 1}),
                          Result("s3.bucket", State.UNKNOWN, "AccessDenied", {})])
    status, perf = line.split(" | ")
    assert status == ("ERPOPS CRITICAL - pg.blocked_locks CRIT: 1 session blocked / by 42; "
                      "s3.bucket UNKNOWN: AccessDenied")
    assert perf == "'redis.ping.latency_ms'=1.5 'pg.blocked_locks.blocked_sessions'=1"


def test_json_output_is_machine_readable() -> None:
    doc = json.loads(output.to_json([Result("x", State.CRIT, "m", {"a": 1})], "dev", 0.1))
    assert doc["state"] == "CRIT" and doc["checks"][0]["metrics"] == {"a": 1}


@pytest.mark.parametrize(("state", "code"), [(State.OK, 0), (State.WARN, 1), (State.CRIT, 2), (State.UNKNOWN, 3)])
def test_cli_exit_code_is_the_nagios_code(monkeypatch: pytest.MonkeyPatch, state: State, code: int) -> None:
    def fixed(t: Targets, th: Thresholds) -> tuple[State, str, dict[str, float]]:
        return state, "fixed", {}

    monkeypatch.setattr(health_cli, "checks_for", lambda targets: [Check("host.fixed", fixed)])
    result = CliRunner().invoke(health_cli.health, ["--json"], obj={})
    assert result.exit_code == code, result.output
    assert json.loads(result.output)["state"] == state.name


def test_exit_code_survives_a_group_run_without_standalone_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """erpops.cli.main calls cli.main(standalone_mode=False): the code must still reach the shell."""
    import click

    monkeypatch.setattr(health_cli, "checks_for",
                        lambda targets: [Check("host.fixed", lambda t, th: (State.CRIT, "down", {}))])
    group = click.Group("erpops", commands={"health": health_cli.health})
    with pytest.raises(SystemExit) as exc:
        group.main(["health", "--json"], standalone_mode=False, obj={})
    assert exc.value.code == 2


def test_cli_bad_stack_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\n")
    result = CliRunner().invoke(health_cli.health, ["--stack", "nope"], obj={"root": tmp_path})
    assert result.exit_code == 3


@pytest.mark.parametrize("check", all_names())
def test_every_check_has_a_runbook(check: str) -> None:
    text = (ROOT / "runbooks" / "alerts" / f"{check}.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == ["Meaning", "Impact", "Diagnosis", "Mitigation"]
    assert f"-c {check}`" in text  # the re-check command names this check


@pytest.mark.parametrize(("args", "env", "bucket", "prefix"), [
    (["--stack", "prod"], {}, None, "prod"),  # bucket from the spec, prefix = stack, as the backup engine
    (["--stack", "prod"], {"ERPOPS_BACKUP_TARGET": "s3://other-backups/eu/prod"}, "other-backups", "eu/prod"),
    (["--s3-bucket", "b", "--s3-prefix", "/x/"], {"ERPOPS_BACKUP_TARGET": "s3://other/y"}, "b", "x"),
])
def test_cli_resolves_the_backup_target_like_the_backup_engine(
        monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], bucket: str | None, prefix: str) -> None:
    seen: list[Targets] = []

    def capture(targets: Targets) -> list[Check]:
        seen.append(targets)
        return [Check("host.fixed", lambda t, th: (State.OK, "", {}))]

    monkeypatch.delenv("ERPOPS_BACKUP_TARGET", raising=False)
    monkeypatch.setattr(health_cli, "checks_for", capture)
    result = CliRunner().invoke(health_cli.health, [*args, "--json"], obj={"root": ROOT}, env=env)
    assert result.exit_code == 0, result.output
    expected_bucket = bucket or spec.load("prod", ROOT).spec.object_storage.backup_bucket
    assert (seen[0].s3_bucket, seen[0].s3_prefix) == (expected_bucket, prefix)
