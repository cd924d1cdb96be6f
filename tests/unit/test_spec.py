"""The environment spec: every bad input gives one error listing key paths and fixes, exit 2."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from erpops import cli, spec
from erpops.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]


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


_DELETE = object()


def write_project(tmp_path: Path, stack: str, raw: Any) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: erpops\nruntime: python\nmain: infra/\n")
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {spec.SPEC_KEY: raw}}))
    return tmp_path


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(sys, "argv", ["erpops", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_are_valid(stack: str) -> None:
    sized = spec.load(stack, ROOT)
    assert sized.spec.tier == stack
    assert sized.budget.max_connections >= sized.budget.server_connections


def test_prod_defaults_are_highly_available_and_dev_small() -> None:
    prod = spec.tier_defaults("prod")
    dev = spec.tier_defaults("dev")
    assert prod["postgres"]["instances"] >= 3
    assert prod["odoo"]["web"]["replicas"] >= 2
    assert prod["pooler"]["instances"] >= 2
    assert dev["postgres"]["instances"] == 1 and dev["odoo"]["web"]["replicas"] == 1


def test_minimal_prod_spec_gets_ha_defaults(tmp_path: Path) -> None:
    raw = {k: raw_spec("prod")[k] for k in ("kubernetes", "object_storage", "filestore", "image", "drill")}
    raw["odoo"] = {"version": "17.0", "image": "odoo:17.0-20241010"}
    sized = spec.validate(raw, "prod")
    assert sized.spec.postgres.instances == 3
    assert sized.spec.odoo.web.replicas == 3
    assert sized.database == "odoo_prod"


# Each case: (stack to start from, key path, bad value, expected key path in the error, fix text)
BAD_SPECS = [
    pytest.param("dev", "odoo.web.replicas", "three", "odoo.web.replicas", "write a whole number", id="wrong-type"),
    pytest.param("dev", "databse", "x", "databse", "unknown key", id="unknown-top-key"),
    pytest.param("dev", "odoo.wrokers", 3, "odoo.wrokers", "allowed here: cron, database", id="unknown-nested-key"),
    pytest.param("dev", "odoo.version", "15.0", "odoo.version", "use one of '16.0', '17.0' or '18.0'",
                 id="unsupported-odoo-version"),
    pytest.param("dev", "postgres.memory", "128Mi", "postgres.memory", "at least 256Mi", id="pg-memory-too-low"),
    pytest.param("dev", "postgres.memory", "4GB", "postgres.memory", "write it like 512Mi or 4Gi",
                 id="bad-memory-quantity"),
    pytest.param("dev", "postgres.disk", "floppy", "postgres.disk", "'ssd', 'hdd', 'san' or 'nvme'", id="bad-disk"),
    pytest.param("dev", "secrets.odoo_admin_password", "S3cr3t-P@ssw0rd!", "secrets.odoo_admin_password",
                 "pulumi config set --secret odooAdminPassword", id="secret-value-pasted"),
    pytest.param("dev", "secrets.s3_access_key_id", "AKIAIOSFODNN7EXAMPLE", "secrets.s3_access_key_id",
                 "not the name of a Pulumi config key", id="aws-key-pasted"),
    pytest.param("dev", "object_storage.endpoint", "https://admin:hunter2@minio.example.com",
                 "object_storage.endpoint", "remove user:password@", id="credentials-in-endpoint"),
    pytest.param("dev", "odoo.image", "odoo:latest", "odoo.image", "not a pinned tag", id="image-latest"),
    pytest.param("dev", "odoo.image", "odoo", "odoo.image", "odoo@sha256:", id="image-without-tag"),
    pytest.param("dev", "odoo.image", "odoo:16.0-20241010", "odoo.image", "does not match odoo.version 17.0",
                 id="image-version-mismatch"),
    pytest.param("prod", "postgres.instances", 1, "postgres.instances", "set postgres.instances to 3",
                 id="prod-single-postgres"),
    pytest.param("prod", "odoo.web.replicas", 1, "odoo.web.replicas", "at least 2", id="prod-single-web"),
    pytest.param("staging", "filestore.mode", "pod-local", "filestore.mode", "set filestore.mode to shared-volume",
                 id="replicas-without-shared-filestore"),
    pytest.param("staging", "image.build.enabled", False, "filestore.mode", "not known to carry them",
                 id="object-storage-with-the-stock-image"),
    pytest.param("staging", "redis.enabled", True, "redis.enabled", "nothing would use Redis",
                 id="redis-without-a-consumer"),
    pytest.param("dev", "filestore.volume", _DELETE, "filestore.volume", "ReadWriteMany StorageClass",
                 id="shared-volume-without-a-claim"),
    pytest.param("staging", "mail.outgoing", {"host": "smtp.example.com", "cidrs": ["203.0.113.25/32"]},
                 "mail.outgoing.sink", "keeps mail neutralized", id="non-prod-real-smtp"),
    pytest.param("staging", "mail.incoming", [{"host": "imap.example.com", "cidrs": ["203.0.113.26/32"]}],
                 "mail.incoming", "must not fetch real mailboxes", id="non-prod-fetchmail"),
    pytest.param("prod", "mail.outgoing.cidrs", [], "mail.outgoing.cidrs", "", id="smtp-without-addresses"),
    pytest.param("staging", "secrets.backup_s3_access_key_id", _DELETE, "secrets.backup_s3_access_key_id",
                 "CloudNativePG needs its own key", id="one-key-for-odoo-and-backups"),
    pytest.param("prod", "kubernetes.ingress_class", "traefik", "kubernetes.ingress_class", "ingress-nginx only",
                 id="ingress-class-without-odoo-settings"),
    pytest.param("staging", "object_storage.endpoint", _DELETE, "object_storage.endpoint",
                 "required when mode is s3-compatible", id="s3-compatible-without-endpoint"),
    pytest.param("staging", "object_storage.backup_bucket", "acme-erpops-staging-filestore",
                 "object_storage.backup_bucket", "name another bucket", id="backup-in-filestore-bucket"),
    pytest.param("staging", "object_storage.filestore_bucket", "Acme_Bucket", "object_storage.filestore_bucket",
                 "not a valid S3 bucket name", id="bad-bucket-name"),
    pytest.param("dev", "backup.schedule", "daily", "backup.schedule", "5-field cron", id="bad-cron"),
    pytest.param("prod", "postgres.max_connections", 100, "postgres.max_connections",
                 "raise postgres.max_connections to", id="max-connections-below-budget"),
    pytest.param("prod", "pooler.default_pool_size", 20, "pooler.default_pool_size",
                 "raise pooler.default_pool_size to 168", id="pool-below-budget"),
    pytest.param("dev", "odoo.web.workers", 12, "odoo.web.workers", "raise odoo.web.memory to",
                 id="workers-beyond-memory"),
    pytest.param("dev", "kubernetes.host", "not a host", "kubernetes.host", "wrong form", id="bad-host"),
    pytest.param("dev", "odoo.web.replicas", 0, "odoo.web.replicas", "at least 1", id="zero-replicas"),
    pytest.param("dev", "kubernetes", "prod-cluster", "kubernetes", "expected a mapping", id="section-not-mapping"),
    pytest.param("dev", "odoo.modules", "mrp,stock", "odoo.modules", "expected a list", id="modules-not-list"),
    pytest.param("dev", "health.pg_connections_ratio", {"warn": 0.95, "crit": 0.9}, "health",
                 "pg_connections_ratio: warn 0.95 must be below crit 0.9", id="health-levels-swapped"),
]


@pytest.mark.parametrize(("base", "path", "value", "where", "fix"), BAD_SPECS)
def test_bad_spec_gives_one_error_with_key_and_fix(
    base: str, path: str, value: Any, where: str, fix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    raw = copy.deepcopy(raw_spec(base))
    put(raw, path, value)
    root = write_project(tmp_path, base, raw)
    code, out, err = run_cli(["--root", str(root), "spec", "validate", "--stack", base], monkeypatch, capsys)
    assert code == 2
    assert out == ""
    assert err.count("invalid erpops spec") == 1
    problem_lines = [line for line in err.splitlines() if line.startswith(f"  - {where}: ")]
    assert problem_lines, f"no problem line for {where} in:\n{err}"
    assert any(fix in line for line in problem_lines), err


def test_connection_budget_overflow_names_the_arithmetic(tmp_path: Path) -> None:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "odoo.web.workers", 12)
    put(raw, "odoo.web.memory", "8Gi")
    put(raw, "odoo.web.cpu", "6")
    put(raw, "odoo.db_maxconn", 16)
    put(raw, "pooler.max_client_conn", 100)
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "dev")
    [message] = [m for p, m in caught.value.problems if p == "odoo.web.workers" and "max_client_conn" in m]
    assert "1 replica x (12 workers + 1 gevent) x db_maxconn 16 = 208 connections" in message
    assert "but pooler.max_client_conn is 100" in message
    assert "raise pooler.max_client_conn" in message and "or lower odoo.web.workers" in message


def test_every_problem_is_reported_at_once() -> None:
    raw = copy.deepcopy(raw_spec("dev"))
    put(raw, "odoo.version", "15.0")
    put(raw, "postgres.disk", "floppy")
    put(raw, "secrets.odoo_admin_password", "hunter2 is my password")
    with pytest.raises(SpecError) as caught:
        spec.validate(raw, "dev")
    paths = {p for p, _ in caught.value.problems}
    assert {"odoo.version", "postgres.disk", "secrets.odoo_admin_password"} <= paths


def test_missing_spec_and_unknown_tier(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="add an `erpops:spec:` mapping"):
        spec.validate(None, "dev")
    with pytest.raises(SpecError, match="set tier to dev, staging or prod"):
        spec.validate({"odoo": {}}, "qa")


def test_cross_stack_segregation_refuses_shared_bucket() -> None:
    dev = spec.load("dev", ROOT)
    raw = copy.deepcopy(raw_spec("staging"))
    put(raw, "object_storage.backup_bucket", dev.spec.object_storage.backup_bucket)
    staging = spec.validate(raw, "staging")
    problems = spec.cross_stack_problems([dev, staging])
    assert any("also used by stack dev" in msg for _, msg in problems)
    assert spec.cross_stack_problems([spec.load(s, ROOT) for s in ("dev", "staging", "prod")]) == []


def _prod_with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw_spec("prod"))
    for path, value in changes.items():
        put(raw, path.replace("__", "."), value)
    return raw


def _problems(raw: dict[str, Any], stack: str = "prod") -> dict[str, str]:
    with pytest.raises(SpecError) as exc:
        spec.validate(raw, stack)
    return dict(exc.value.problems)


def test_prod_refuses_an_in_cluster_redis_for_sessions() -> None:
    raw = _prod_with(redis__enabled=True, filestore__sessions="redis", image__build__enabled=False,
                     image__addons=["fs_storage", "fs_attachment", "session_redis"])
    problems = _problems(raw)
    assert "single point of failure" in problems["redis.mode"]
    # a managed (replicated) endpoint is accepted
    raw["redis"].update(mode="managed", endpoint="sessions.example.cache.amazonaws.com:6379",
                        cidrs=["10.20.0.0/24"])
    raw["secrets"]["redis_password"] = "redisPassword"
    assert spec.validate(raw, "prod").spec.redis.mode == "managed"


def test_session_store_addon_must_be_in_the_image() -> None:
    raw = _prod_with(image__build__enabled=False, image__addons=["fs_storage", "fs_attachment"])
    assert "session_db addon in the image" in _problems(raw)["filestore.sessions"]


def test_modules_the_image_lacks_are_refused() -> None:
    raw = _prod_with(odoo__modules=["base", "web", "fs_attachment"], image__build__enabled=False,
                     filestore__mode="shared-volume", filestore__volume={"storage_class": "efs"},
                     filestore__sessions="filesystem")
    assert "not in the image" in _problems(raw)["odoo.modules"]


def test_build_is_refused_for_a_series_without_pinned_addons() -> None:
    # OCA's 16.0 wheels need Python >= 3.10; the official 16.0 image has 3.9: the message says why
    raw = _prod_with(odoo__version="16.0", odoo__image="odoo:16.0-20250101")
    message = _problems(raw)["image.build.enabled"]
    assert "no pinned addon set for Odoo 16.0" in message
    assert "Python 3.9" in message and "shared-volume" in message


def test_every_new_spec_field_is_described() -> None:
    """docs/spec.md is generated from the field descriptions: the sections of issue 11 carry one each."""
    for model in (spec.Filestore, spec.SharedVolume, spec.ImageBuild, spec.Image, spec.IngressSettings,
                  spec.OutgoingMail, spec.IncomingMail, spec.Mail, spec.Monitoring, spec.CloudNativePG):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
