"""Health check plumbing without servers: grading, worst state, runner timeouts, output formats, CLI exit."""

from __future__ import annotations

import itertools
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from erpops import spec
from healthchecks import cli as health_cli
from healthchecks import metrics, output, s3
from healthchecks.core import Check, Level, Result, State, Targets, Thresholds, Unknown, run_checks, worst
from healthchecks.suite import all_names

REPO = Path(__file__).resolve().parents[2]

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


def parse_prometheus(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Read a textfile with prometheus_client's own text parser, as node_exporter's format is read; lint it.

    Returns {(sample name, labels): value}. Fails on anything the parser rejects and on the naming rules
    below (https://prometheus.io/docs/practices/naming/), for every family in the file.
    """
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        lint_family(family)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


# units that are not base units, as a name part (`_ms`, `_minutes`), or a counter's name without _total
NOT_BASE_UNITS = {"ms", "milliseconds", "us", "minutes", "minute", "hours", "hour", "days", "percent", "pct", "kb",
                  "kib", "mb", "mib", "gb", "gib", "kilobytes", "megabytes"}
LABELS = {"check", "stack", "mountpoint", "version", "serie"}


def lint_family(family: Any) -> None:
    name = family.name
    words = name.split("_")
    assert name.startswith("erpops_"), name
    assert not NOT_BASE_UNITS & set(words), f"{name}: not in base units (seconds, bytes, ratio)"
    assert all(a != b for a, b in itertools.pairwise(words)), f"{name}: a word repeats"
    assert family.type in ("gauge", "counter"), f"{name}: {family.type}"
    assert len(family.documentation.split()) >= 3 and family.documentation.split()[0] != words[-1], (
        f"{name}: HELP {family.documentation!r} says nothing")
    for sample in family.samples:
        assert set(sample.labels) <= LABELS, f"{name}: labels {sorted(sample.labels)} (node_exporter's: mountpoint)"
        if family.type == "counter":
            assert sample.name == f"{name}_total", f"{sample.name}: a counter's samples end in _total"
        else:
            assert not sample.name.endswith("_total"), f"{sample.name}: a gauge named like a counter"
        if name.endswith("_ratio"):
            assert 0 <= sample.value <= 1, f"{sample.name} = {sample.value}: a ratio is 0..1"
        if name.endswith("_info"):
            assert sample.value == 1 and set(sample.labels) - {"stack"}, f"{sample.name}: an _info metric"


def test_prometheus_textfile_parses_back(tmp_path: Path) -> None:
    results = [
        Result("pg.connections", State.WARN, "85 of 100", {"used": 85, "ratio": 0.85}, 0.012),
        Result("host.disk", State.OK, "ok", {"free_ratio:/var/lib/postgresql": 0.5}, 0.001),
        Result("redis.ping", State.UNKNOWN, 'refused "x"', {}, 0.0),
        Result("s3.backup_age", State.OK, "2 h old", {"age_minutes": 120.0, "rpo_minutes": 1440.0}, 0.2),
        Result("odoo.login", State.OK, "in 250 ms", {"latency_ms": 250.0}, 0.3),
    ]
    path = tmp_path / "erpops.prom"
    output.write_atomic(path, output.prometheus(results, "prod", now=1_800_000_000.5))
    samples = parse_prometheus(path.read_text())
    prod = ("stack", "prod")
    assert samples[("erpops_check_state", frozenset({("check", "pg.connections"), prod}))] == 1
    assert samples[("erpops_check_state", frozenset({("check", "redis.ping"), prod}))] == 3
    assert samples[("erpops_pg_connections_used_ratio", frozenset({prod}))] == 0.85
    assert samples[("erpops_host_filesystem_free_ratio",
                    frozenset({prod, ("mountpoint", "/var/lib/postgresql")}))] == 0.5
    assert samples[("erpops_backup_newest_age_seconds", frozenset({prod}))] == 7200  # minutes in, seconds out
    assert samples[("erpops_odoo_login_page_latency_seconds", frozenset({prod}))] == 0.25
    assert samples[("erpops_health_last_run_timestamp_seconds", frozenset({prod}))] == 1_800_000_000.5
    assert [p.name for p in tmp_path.iterdir()] == ["erpops.prom"]  # no temp file left behind


def _every_catalogued_metric() -> list[Result]:
    by_check: dict[str, dict[str, float]] = {}
    for (check, key), m in metrics.CATALOG.items():
        value = 0.5 if m.max == 1.0 else 42.0
        by_check.setdefault(check, {})[f"{key}:/data" if m.label else key] = value
    return [Result(check, State.OK, "ok", values, 0.01,
                   {"version": "17.0+e", "serie": "17.0"} if check == "odoo.version" else
                   {"version": "15.10"} if check == "pg.connect" else {})
            for check, values in by_check.items()]


def test_every_catalogued_metric_follows_the_naming_rules() -> None:
    samples = parse_prometheus(output.prometheus(_every_catalogued_metric(), "prod"))
    names = {name for name, _ in samples}
    assert "erpops_redis_evicted_keys_total" in names and "erpops_pg_blocks_hit_total" in names  # counters
    assert samples[("erpops_odoo_version_info", frozenset({("stack", "prod"), ("version", "17.0+e"),
                                                          ("serie", "17.0")}))] == 1
    assert samples[("erpops_pg_version_info", frozenset({("stack", "prod"), ("version", "15.10")}))] == 1
    assert not [n for n in names if "age_age" in n or "_ms" in n or "minutes" in n]


def test_every_metric_a_check_reports_is_in_the_catalog() -> None:
    """A metric key written in a check's source (`"key": value` in its metrics) has a catalog entry, so it
    is exported under a reviewed name with real HELP (a new check fails here until it gets one)."""
    import ast

    missing = []
    for module in ("host", "odoo", "postgres", "redis", "s3", "patch"):
        path = REPO / "healthchecks" / f"{module}.py"
        tree = ast.parse(path.read_text())
        checks = {call.args[1].id: call.args[0].value for call in ast.walk(tree)
                  if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Check"
                  and len(call.args) == 2 and isinstance(call.args[1], ast.Name)}
        for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in checks]:
            keys = set()
            for node in ast.walk(fn):
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) >= 3 \
                        and isinstance(node.value.elts[2], ast.Dict):
                    keys |= {k.value for k in node.value.elts[2].keys if isinstance(k, ast.Constant)}
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "metrics" for t in node.targets) \
                        and isinstance(node.value, ast.Dict):
                    keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
                if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "metrics" \
                        and isinstance(node.value, ast.Dict):
                    keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
                if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "metrics":
                    if isinstance(node.slice, ast.Constant):
                        keys.add(node.slice.value)
                    elif isinstance(node.slice, ast.JoinedStr) and isinstance(node.slice.values[0], ast.Constant):
                        keys.add(str(node.slice.values[0].value).partition(":")[0])  # f"free_ratio:{path}"
            missing += [f"{checks[fn.name]}.{k}" for k in keys if (checks[fn.name], k) not in metrics.CATALOG]
    assert missing == [], f"add these to healthchecks/metrics.py CATALOG: {sorted(missing)}"


def test_catalog_names_real_checks_and_thresholds() -> None:
    known = set(all_names())
    levels = set(Thresholds.defaults().levels)
    for (check, key), m in metrics.CATALOG.items():
        assert check in known, f"{check}.{key}: no such check"
        assert m.level is None or m.level in levels, f"{check}.{key}: no threshold {m.level}"


def test_a_metric_without_catalog_entry_still_gets_base_units_and_no_repeated_word() -> None:
    m, _ = metrics.describe("s3.backup_age", "age_minutes_new")
    assert m.name == "erpops_s3_backup_age_minutes_new"  # suffix not a unit: unchanged
    m, _ = metrics.describe("pg.xid_age", "age_ms")
    assert (m.name, m.scale) == ("erpops_pg_xid_age_seconds", 0.001)
    lint = output.prometheus([Result("pg.xid_age", State.OK, "x", {"age_ms": 1500.0})], "dev")
    assert parse_prometheus(lint)[("erpops_pg_xid_age_seconds", frozenset({("stack", "dev")}))] == 1.5


def test_the_naming_lint_catches_a_stuttering_or_non_base_unit_name() -> None:
    bad = "# HELP erpops_s3_backup_age_age_minutes age\n# TYPE erpops_s3_backup_age_age_minutes gauge\n" \
          "erpops_s3_backup_age_age_minutes 3\n"
    with pytest.raises(AssertionError, match="base units"):
        parse_prometheus(bad)
    with pytest.raises(AssertionError, match="repeats"):
        parse_prometheus(bad.replace("_minutes", "_seconds"))


def test_redis_memory_limit_matches_the_message() -> None:
    from healthchecks import redis

    th = Thresholds.defaults()
    th.redis_memory_bytes = 128 * 1024 * 1024
    with patch.object(redis, "_info", return_value={"used_memory": str(32 * 1024 * 1024), "maxmemory": "0",
                                                    "maxmemory_policy": "noeviction"}):
        _, message, values = redis.memory(Targets(redis_url="redis://x"), th)
    assert "128.0 MiB (container limit)" in message
    assert values["max_bytes"] == 128 * 1024 * 1024 and values["ratio"] == 0.25


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
                          Result("s3.bucket", State.UNKNOWN, "AccessDenied", {}),
                          Result("pg.cache_hit", State.OK, "99%", {"ratio": 0.99, "blocks_hit": 1234567890}),
                          Result("host.disk", State.OK, "ok", {"free_ratio:/data": 0.5})],
                         Thresholds.defaults().override(redis_latency_ms=(50, 200), pg_cache_hit_ratio_min=(0.95, 0.9),
                                                        disk_free_ratio_min=(0.2, 0.1)))
    status, perf = line.split(" | ")
    assert status == ("ERPOPS CRITICAL - pg.blocked_locks CRIT: 1 session blocked / by 42; "
                      "s3.bucket UNKNOWN: AccessDenied")
    items = perf.split(" ")
    # 'label'=value[UOM];[warn];[crit];[min];[max] in base units, thresholds from the spec
    assert "'redis.ping.latency'=0.0015s;0.05;0.2;0;" in items
    assert "'pg.blocked_locks.blocked_sessions'=1;;;0;" in items
    assert "'pg.cache_hit.ratio'=0.99;0.95:;0.9:;0;1" in items  # a minimum: alert below, Nagios' `x:` range
    assert "'pg.cache_hit.blocks_hit'=1234567890c;;;0;" in items  # a counter, no exponent
    assert "'host.disk.free_ratio[/data]'=0.5;0.2:;0.1:;0;1" in items
    perfdata = re.compile(r"^'[^'=]+'=-?[0-9.]+(s|%|B|c)?;(-?[0-9.]+:?)?;(-?[0-9.]+:?)?;(-?[0-9.]+)?;(-?[0-9.]+)?$")
    assert all(perfdata.match(i) for i in items), items


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


# ---- Redis over redis-py: TLS and Sentinel options --------------------------------------------------

def test_redis_tls_options_come_from_the_url_and_the_ca_file(tmp_path: Path) -> None:
    from healthchecks import redis

    plain = redis.connection_options(Targets(redis_url="redis://:s%40cret@10.0.0.7:6380/2"), 3.0)
    assert plain == {"socket_timeout": 3.0, "socket_connect_timeout": 3.0, "db": 2, "password": "s@cret"}
    tls = redis.connection_options(Targets(redis_url="rediss://app:pw@redis.example.com/0"), 3.0)
    assert tls["ssl"] is True and tls["username"] == "app" and "ssl_ca_certs" not in tls
    ca = tmp_path / "ca.pem"
    with_ca = redis.connection_options(Targets(redis_url="redis://redis.example.com", redis_ca_file=str(ca)), 3.0)
    assert with_ca["ssl"] is True and with_ca["ssl_ca_certs"] == str(ca)


def test_redis_refuses_another_scheme() -> None:
    from healthchecks import redis

    with pytest.raises(Unknown, match="redis:// or rediss://"):
        redis.connection_options(Targets(redis_url="http://redis.example.com"), 3.0)


def test_redis_through_sentinel_asks_the_sentinels_for_the_named_master() -> None:
    from redis.sentinel import SentinelConnectionPool

    from healthchecks import redis

    t = Targets(redis_url="rediss://:pw@ignored/1", redis_sentinels=(("10.0.0.5", 26379), ("10.0.0.6", 26379)),
                redis_sentinel_master="sessions")
    client = redis.client(t, 2.0)  # no connection yet: redis-py connects on the first command
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "sessions"
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [26379, 26379]
    assert pool.connection_kwargs["password"] == "pw" and pool.connection_kwargs["db"] == 1


def test_sentinels_alone_are_a_redis_target() -> None:
    from healthchecks.suite import checks_for

    names = [c.name for c in checks_for(Targets(redis_sentinels=(("10.0.0.5", 26379),), host=False))]
    assert names == ["redis.ping", "redis.memory", "redis.evictions", "redis.clients", "redis.persistence"]
