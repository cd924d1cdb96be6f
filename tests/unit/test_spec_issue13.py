"""Issue 13: one validator that catches what `pulumi up` would hit, and never crashes.

Each case of the issue is a malformed stack file a new user would write; `erpops spec validate
--stack S` must answer exit 2 with a line naming the key, the value, what is wrong and a fix, and
`render`, `size` and the Pulumi program must refuse exactly the same specs with the same lines
(render, the program and the inventory generator: tests/tool/test_spec_issue13_tools.py).
"""

from __future__ import annotations

import copy
import itertools
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from erpops import cli, spec, specdocs
from erpops.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")
_DELETE = object()

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret key
GITHUB_TOKEN = "ghp_" + "R2d2C3po" * 4 + "BB8x"
SLACK_TOKEN = "xoxb-" + "1234567890-" * 2 + "AbCdEfGhIjKlMnOpQrStUvWx"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")


def raw_spec(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"][spec.SPEC_KEY]


def put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    if value is _DELETE:
        doc.pop(leaf, None)
    else:
        doc[leaf] = value


def project(tmp_path: Path, stack: str, raw: Any, siblings: bool = True) -> Path:
    """A project like the shipped one (its other stack files included), with `stack` holding `raw`."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    if siblings:
        for other in STACKS:
            if other != stack:
                shutil.copy(ROOT / f"Pulumi.{other}.yaml", tmp_path / f"Pulumi.{other}.yaml")
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {spec.SPEC_KEY: raw}}))
    return tmp_path


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(sys, "argv", ["erpops", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def problem_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  - ")]


# (base stack, key path, value as YAML gives it, key path of the problem, text of the fix)
CASES = [
    # crashed with a traceback, exit 1
    pytest.param("dev", "odoo.web.cpu", -2, "odoo.web.cpu", "must be positive", id="negative-cpu-number"),
    pytest.param("dev", "odoo.web.cpu", 1e-9, "odoo.web.cpu", "in exponent form: write it like 2",
                 id="exponent-cpu-number"),
    pytest.param("prod", "kubernetes.tls_secret", "Erp_Example_TLS", "kubernetes.tls_secret", "e.g. erp-example-tls",
                 id="tls-secret-not-a-secret-name"),
    # accepted, then broken at apply or at runtime
    pytest.param("dev", "odoo.web.cpu", 0, "odoo.web.cpu", "a pod needs CPU to run; set at least 250m", id="zero-cpu"),
    pytest.param("dev", "postgres.storage", "0Gi", "postgres.storage", "at least 1Gi", id="zero-storage"),
    pytest.param("staging", "redis.memory", "0", "redis.memory", "at least 32Mi", id="zero-redis-memory"),
    pytest.param("dev", "odoo.web.memory", "1Pi", "odoo.web.memory", "more than any node has", id="petabyte-pod"),
    pytest.param("prod", "odoo.web.workers", 2000, "odoo.web.workers", "at most 256", id="2000-workers"),
    pytest.param("dev", "postgres.max_connections", 300000, "postgres.max_connections", "at most 262143",
                 id="max-connections-above-postgres-limit"),
    pytest.param("dev", "backup.schedule", "99 99 * * *", "backup.schedule", "minute 0-59, hour 0-23",
                 id="cron-99-99"),
    pytest.param("dev", "odoo.dbfilter", "^(odoo_dev", "odoo.dbfilter", "not a valid regular expression",
                 id="dbfilter-not-a-regex"),
    pytest.param("dev", "odoo.dbfilter", "^odoo_prod$", "odoo.dbfilter", "does not match the stack's database "
                 "'odoo_dev'", id="dbfilter-misses-the-database"),
    pytest.param("dev", "kubernetes.storage_class", "Fast_SSD", "kubernetes.storage_class", "e.g. fast-ssd",
                 id="storage-class-name"),
    pytest.param("dev", "kubernetes.ingress_namespace", "Ingress_Nginx", "kubernetes.ingress_namespace",
                 "e.g. ingress-nginx", id="namespace-name"),
    pytest.param("dev", "kubernetes.host", "a" * 70 + ".example.com", "kubernetes.host",
                 "at most 63 characters between dots", id="70-character-dns-label"),
    pytest.param("dev", "kubernetes.context", AWS_SECRET, "kubernetes.context", "an AWS secret access key",
                 id="aws-secret-key-in-a-plain-field"),
    pytest.param("dev", "odoo.image", f"ghcr.io/acme/odoo:{GITHUB_TOKEN}", "odoo.image", "looks like a token",
                 id="github-token-in-a-plain-field"),
    pytest.param("dev", "mail.outgoing.user", SLACK_TOKEN, "mail.outgoing.user", "looks like",
                 id="slack-token-in-a-plain-field"),
    pytest.param("dev", "kubernetes.context", JWT, "kubernetes.context", "(detect-secrets)",
                 id="jwt-found-by-detect-secrets"),
    pytest.param("prod", "tier", "dev", "tier", "set tier: prod or remove it", id="prod-stack-declaring-dev"),
    # ran in one entry point only
    pytest.param("dev", "kubernetes.ingress_namespace", "erpops-staging", "kubernetes.ingress_namespace",
                 "not an ingress controller namespace", id="ingress-namespace-of-another-stack"),
    pytest.param("dev", "object_storage.backup_bucket", "acme-erpops-staging-backups", "object_storage.backup_bucket",
                 "also used by stack staging", id="bucket-shared-with-a-sibling-stack"),
    pytest.param("dev", "kubernetes.host", "erp-staging.example.com", "kubernetes.host", "also used by stack staging",
                 id="host-shared-with-a-sibling-stack"),
    # unclear messages
    pytest.param("dev", "odoo.version", 17.0, "odoo.version", 'quote it, version: "17.0"', id="unquoted-version"),
    pytest.param("dev", "odoo.database", "Odoo-Dev", "odoo.database", "lowercase letters, digits and '_'",
                 id="name-error-in-words"),
    # bounds and forms of the issue's "what to build"
    pytest.param("dev", "odoo.web", {"replicas": 1, "cpu": "2", "memory": "16Gi", "workers": 40}, "odoo.web.workers",
                 "lower odoo.web.workers to 5", id="workers-beyond-the-pods-cpu"),
    pytest.param("dev", "odoo.web", {"replicas": 1, "cpu": "12", "memory": "16Gi", "workers": 25},
                 "odoo.web.workers", "raise postgres.memory to", id="max-connections-beyond-postgres-memory"),
    pytest.param("dev", "slo.requests", {"sale.order:create": {"p50_ms": 500, "p95_ms": 200, "p99_ms": 900}},
                 "slo.requests.sale.order:create", "p50 <= p95 <= p99", id="slo-percentiles-out-of-order"),
    pytest.param("dev", "health.redis_memory_ratio", {"warn": 80, "crit": 95}, "health", "write 0 to 1",
                 id="ratio-threshold-above-1"),
    pytest.param("dev", "backup.rpo_minutes", 1, "backup.rpo_minutes", "WAL is archived at least every 5 minutes",
                 id="rpo-below-wal-archiving"),
    pytest.param("dev", "backup.schedule", "*/10 * * * *", "backup.schedule", "more than once an hour",
                 id="base-backup-every-10-minutes"),
    pytest.param("dev", "backup.schedule", "0 2 1 * *", "backup.max_age_for_patch_hours", "erpops patch would refuse",
                 id="monthly-backup-against-patch-age"),
    pytest.param("dev", "backup.schedule", "0 0 30 2 *", "backup.schedule", "never fires", id="cron-never-fires"),
    pytest.param("dev", "mail.outgoing.cidrs", ["203.0.113.25/24"], "mail.outgoing.cidrs[0]", "203.0.113.0/24",
                 id="cidr-with-host-bits"),
]


@pytest.mark.parametrize(("base", "path", "value", "where", "fix"), CASES)
def test_each_case_of_the_issue_is_refused_with_key_and_fix(
    base: str, path: str, value: Any, where: str, fix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    raw = copy.deepcopy(raw_spec(base))
    put(raw, path, value)
    root = project(tmp_path, base, raw)
    code, out, err = run_cli(["--root", str(root), "spec", "validate", "--stack", base], monkeypatch, capsys)
    assert code == 2, f"exit {code}:\n{out}{err}"
    assert "Traceback" not in err
    lines = [line for line in problem_lines(err) if line.startswith(f"  - {where}: ")]
    assert lines, f"no problem line for {where} in:\n{err}"
    assert any(fix in line for line in lines), err
    for token in (AWS_SECRET, GITHUB_TOKEN, SLACK_TOKEN, JWT):
        assert token not in err, "a credential was echoed back"


@pytest.mark.parametrize(("path", "value"), [("odoo.dbfilter", f"^{GITHUB_TOKEN}$"),
                                           ("kubernetes.tls_secret", AWS_SECRET),
                                           ("secrets.odoo_admin_password", JWT)])
def test_a_flagged_credential_is_never_echoed_by_another_check(path: str, value: str) -> None:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, path, value)
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "dev")
    assert path in dict(caught.value.problems)
    assert value not in str(caught.value) and value[4:30] not in str(caught.value)


def test_a_stack_named_dev_dash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path, "dev-", raw_spec("dev"), siblings=False)
    code, _, err = run_cli(["--root", str(root), "spec", "validate", "--stack", "dev-"], monkeypatch, capsys)
    assert code == 2
    [line] = problem_lines(err)
    assert line.startswith("  - stack: 'dev-' is not a valid stack name") and "erpops-dev-" in line
    assert "e.g. dev" in line


def test_no_union_branch_name_leaks_into_a_key_path() -> None:
    for value in ([2], {"cores": 2}, None, True, "two"):
        raw = copy.deepcopy(raw_spec("dev"))
        put(raw, "odoo.web.cpu", value)
        with pytest.raises(SpecError) as caught:
            spec.validate(raw, "dev")
        paths = [p for p, _ in caught.value.problems]
        assert paths == ["odoo.web.cpu"], paths


def test_no_fix_is_only_a_regular_expression() -> None:
    bad = {"odoo.database": "Odoo-Dev", "image.build.repository": "Registry/Odoo", "kubernetes.context": "my cluster",
           "cnpg.operator_chart_version": "v1", "object_storage.region": "EU West"}
    raw = copy.deepcopy(raw_spec("staging"))
    for path, value in bad.items():
        put(raw, path, value)
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "staging")
    found = dict(caught.value.problems)
    assert set(bad) <= set(found), found
    for path in bad:
        assert "must match" not in found[path] and "^" not in found[path], found[path]
        assert "e.g." in found[path], found[path]


@pytest.mark.parametrize("command", [["spec", "validate", "--stack", "dev"], ["size", "--stack", "dev"]])
def test_cross_stack_rules_run_wherever_one_stack_is_loaded(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "object_storage.filestore_bucket", raw_spec("prod")["object_storage"]["backup_bucket"])
    root = project(tmp_path, "dev", raw)
    code, out, err = run_cli(["--root", str(root), *command], monkeypatch, capsys)
    assert code == 2, out
    assert any("object_storage.filestore_bucket: 'acme-erpops-prod-backups' is also used by stack prod" in line
               for line in problem_lines(err)), err
    # the loader every other entry point uses (patch, health, loadtest, inventory, rehearse)
    with pytest.raises(SpecError, match="also used by stack prod"):
        spec.load("dev", root)


@pytest.mark.parametrize(("command", "code"), [
    (["patch", "--stack", "dev", "--image", "odoo:17.0-20241011", "--check"], 2),
    (["loadtest", "gate", "--stack", "dev", "--host", "http://127.0.0.1:9"], 2),
    (["health", "--stack", "dev"], 3),  # Nagios UNKNOWN: the health contract, with the spec's report
], ids=["patch", "loadtest", "health"])
def test_the_operations_commands_refuse_a_bucket_shared_with_a_sibling(
    command: list[str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "object_storage.filestore_bucket", raw_spec("prod")["object_storage"]["backup_bucket"])
    root = project(tmp_path, "dev", raw)
    got, out, err = run_cli(["--root", str(root), *command], monkeypatch, capsys)
    assert got == code, out + err
    assert "'acme-erpops-prod-backups' is also used by stack prod" in " ".join((out + err).split()), out + err


def test_validate_without_stack_reports_a_shared_bucket_on_both_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "object_storage.backup_bucket", "acme-erpops-staging-backups")
    root = project(tmp_path, "dev", raw)
    code, _, err = run_cli(["--root", str(root), "spec", "validate"], monkeypatch, capsys)
    assert code == 2
    shared = [line for line in problem_lines(err) if "also used by stack" in line]
    assert [line.split(":")[0] for line in shared] == ["  - dev", "  - staging"], err


def test_the_shipped_stacks_still_pass_everywhere() -> None:
    for stack in STACKS:
        assert spec.load(stack, ROOT).stack == stack


# --------------------------------------------------------------------------------------------
# docs/spec.md: generated from the model, every field described
# --------------------------------------------------------------------------------------------

def test_docs_spec_md_is_in_sync_with_the_model() -> None:
    diff = specdocs.drift()
    assert diff == "", f"run `python -m erpops.specdocs`:\n{diff}"


def test_every_field_is_documented_with_type_default_and_bounds() -> None:
    text = (ROOT / "docs" / "spec.md").read_text()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines() if line.startswith("| ")}
    for key in ("odoo.web.cpu", "postgres.max_connections", "backup.schedule", "kubernetes.tls_secret",
                "health.pg_connections_ratio", "mail.incoming[].host", "slo.requests.<key>.p95_ms"):
        assert key in rows, key
    assert "dev: `1Gi`, staging: `4Gi`, prod: `16Gi`" in rows["postgres.memory"]
    assert "<= 262143" in rows["postgres.max_connections"]
    assert "RFC 1123 label" in rows["kubernetes.ingress_namespace"]


def test_a_field_without_description_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec.Autoscale.model_fields["enabled"], "description", None)
    with pytest.raises(SystemExit, match=re.escape("odoo.web.autoscale.enabled has no description")):
        specdocs.render()


def _models(model: type[Any], seen: set[type[Any]]) -> set[type[Any]]:
    from pydantic import BaseModel

    if model in seen:
        return seen
    seen.add(model)
    for info in model.model_fields.values():
        stack = [info.annotation]
        while stack:
            current = stack.pop()
            if isinstance(current, type) and issubclass(current, BaseModel):
                _models(current, seen)
            stack += list(getattr(current, "__args__", ()))
    return seen


def test_every_field_pattern_has_words_and_an_example() -> None:
    patterns = {getattr(m, "pattern", None) for model in _models(spec.Spec, set())
                for info in model.model_fields.values() for m in info.metadata} - {None}
    missing = patterns - set(spec._PATTERN_WORDS)
    assert not missing, f"describe these patterns in spec._PATTERN_WORDS (words, example): {missing}"


def test_a_missing_key_says_what_it_is_for() -> None:
    raw = copy.deepcopy(raw_spec("prod"))
    del raw["mail"]["incoming"][0]["cidrs"]
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "prod")
    assert ("mail.incoming[0].cidrs", "required: add this key to the spec (Addresses of the mail server: the "
            "egress policy opens the port to these only)") in caught.value.problems


@pytest.mark.parametrize("expr", ["0 2 * * *", "*/15 1-3 * * 1-5", "0 2 1,15 * MON", "30 1 * JAN-MAR sun",
                                  "0 2 1 * *", "0 */6 * * *", "0 3 * * 0,6", "5 4 31 * *"])
def test_backup_schedule_gaps_agree_with_croniters_own_iteration(expr: str) -> None:
    from datetime import UTC, datetime, timedelta

    from croniter import croniter

    from erpops.spec_types import HORIZON_DAYS, cron_gaps

    it = croniter(expr, datetime(2026, 1, 1, tzinfo=UTC))
    runs = [it.get_next(datetime)]
    # dense schedules repeat weekly: 1500 runs show every gap; sparse ones are followed over the whole horizon
    while runs[-1] - runs[0] < timedelta(days=HORIZON_DAYS - 7) and len(runs) < 1500:
        runs.append(it.get_next(datetime))
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert cron_gaps(expr) == (min(gaps), max(gaps))


@pytest.mark.parametrize("path", ["mail.outgoing.password_key", "image.build.registry_password_key"])
def test_a_password_pasted_where_a_config_key_name_belongs_is_refused(path: str) -> None:
    raw = copy.deepcopy(raw_spec("prod"))
    put(raw, path, "S3cr3t-P@ssw0rd!")
    if path.startswith("image."):
        put(raw, "image.build.registry_username_key", "registryUser")
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "prod")
    found = dict(caught.value.problems)
    assert "not the name of a Pulumi config key" in found[path] and "pulumi config set --secret" in found[path]
    assert "S3cr3t" not in str(caught.value)
