"""Neutralization of a real Odoo 17 database: what was live is off, Odoo's keepers stay, and success is proven."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpops.backup import neutralize as neutralize_module
from erpops.backup.neutralize import (
    MAIL_SINK_HOST,
    NeutralizationIncomplete,
    Rule,
    live_items,
    neutralize,
    read_identity,
)
from erpops.backup.odoozip import import_odoo_zip
from erpops.errors import OperationFailed, UsageError
from erpops.local import LocalPostgres
from erpops.pg import Pg, quote_ident

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "odoo17-mfg.zip"
PRISTINE = "mfg_neutralize_src"
_names = itertools.count()


@pytest.fixture(scope="module")
def client(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


@pytest.fixture(scope="module")
def pristine(client: Pg, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fixture backup, imported once; tests work on copies of it."""
    if not FIXTURE.is_file():
        pytest.skip(f"Odoo 17 backup fixture not found at {FIXTURE} (shared/fixtures/ sits beside the repo)")
    import_odoo_zip(FIXTURE, client, PRISTINE, tmp_path_factory.mktemp("filestore"))
    yield PRISTINE
    client.psql(f"DROP DATABASE IF EXISTS {quote_ident(PRISTINE)} WITH (FORCE)")


@pytest.fixture
def db(client: Pg, pristine: str) -> Iterator[str]:
    """A fresh copy of the imported production-like database."""
    name = f"mfg_copy_{next(_names)}"
    client.psql(f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(pristine)}")
    yield name
    client.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def rows(client: Pg, db: str, sql: str) -> list[str]:
    return client.psql(sql, db).splitlines()


def active_crons(client: Pg, db: str) -> list[str]:
    return rows(client, db,
                "SELECT coalesce(d.module || '.' || d.name, c.id::text) FROM ir_cron c LEFT JOIN ir_model_data d "
                "ON d.model = 'ir.cron' AND d.res_id = c.id WHERE c.active ORDER BY 1")  # fmt: skip


def live_mail_servers(client: Pg, db: str) -> list[str]:
    return rows(client, db, f"SELECT name FROM ir_mail_server WHERE active AND smtp_host <> '{MAIL_SINK_HOST}'")


def test_the_fixture_is_live_before(client: Pg, db: str) -> None:
    assert live_mail_servers(client, db) == ["Production SMTP"]
    assert rows(client, db, "SELECT name FROM fetchmail_server WHERE active") == ["Production IMAP"]
    assert len(active_crons(client, db)) == 13


def test_live_items_lists_every_live_thing(client: Pg, db: str) -> None:
    items = live_items(client, db)
    assert "ir_mail_server #1 Production SMTP (smtp.example.com:587) is active" in items
    assert "fetchmail_server #1 Production IMAP (imap.example.com) is active" in items
    assert "ir_config_parameter database.is_neutralized is not true" in items
    crons = [i for i in items if i.startswith("ir_cron ")]
    assert len(crons) == 12  # 13 active, but base.autovacuum_job is one Odoo keeps
    assert any("mail.ir_cron_mail_scheduler_action (Mail: Email Queue Manager)" in c for c in crons)
    assert not any("base.autovacuum_job" in c for c in crons)
    assert len(items) == 15


def test_neutralize_turns_off_what_was_live_and_proves_it(client: Pg, db: str) -> None:
    before = read_identity(client, db)
    report = neutralize(client, db)

    assert report["remaining"] == []
    assert live_items(client, db) == []
    assert live_mail_servers(client, db) == []
    assert rows(client, db, "SELECT name, smtp_host, smtp_port FROM ir_mail_server WHERE active") == [
        f"neutralization - disable emails|{MAIL_SINK_HOST}|1025"
    ]
    assert rows(client, db, "SELECT count(*) FROM fetchmail_server WHERE active") == ["0"]
    assert active_crons(client, db) == ["base.autovacuum_job"]
    assert rows(client, db, "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'") == ["true"]
    assert rows(client, db, "SELECT active FROM ir_ui_view WHERE key = 'web.neutralize_banner'") == ["t"]

    after = read_identity(client, db)
    assert after["database.uuid"] != before["database.uuid"]
    assert after["database.secret"] != before["database.secret"]
    assert report["uuid_changed"] and report["secret_changed"] and report["is_neutralized"]
    assert report["uuid"] == after["database.uuid"]
    assert after["database.secret"] not in repr(report), "the report must not carry the secret"

    assert report["changed"]["ir_cron"] == 12
    assert report["changed"]["fetchmail_server"] == 1
    assert report["changed"]["ir_mail_server"] == 2  # the production server off, Odoo's sink in
    assert {"base", "mail", "payment", "web"} <= set(report["modules_applied"])
    assert "delivery" not in report["modules_applied"]  # not installed in the fixture


def test_a_second_run_changes_nothing_more(client: Pg, db: str) -> None:
    neutralize(client, db)
    first_uuid = read_identity(client, db)["database.uuid"]
    again = neutralize(client, db)

    assert again["remaining"] == []
    assert set(again["changed"].values()) == {0}, again["changed"]
    assert rows(client, db, "SELECT count(*) FROM ir_mail_server WHERE smtp_host = 'invalid'") == ["1"]
    assert active_crons(client, db) == ["base.autovacuum_job"]
    assert again["uuid"] != first_uuid  # each run still hands the copy a new identity


def test_a_trigger_that_revives_a_mail_server_makes_neutralize_refuse(client: Pg, db: str) -> None:
    client.psql(
        """
        CREATE FUNCTION keep_smtp_alive() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.smtp_host = 'smtp.example.com' THEN NEW.active := true; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER keep_smtp_alive BEFORE UPDATE ON ir_mail_server
            FOR EACH ROW EXECUTE FUNCTION keep_smtp_alive();
        """,
        db,
    )
    with pytest.raises(NeutralizationIncomplete) as caught:
        neutralize(client, db)
    assert isinstance(caught.value, OperationFailed)
    assert caught.value.exit_code == 4
    assert caught.value.remaining == ["ir_mail_server #1 Production SMTP (smtp.example.com:587) is active"]
    assert "do not start Odoo on this database" in str(caught.value)
    assert "Production SMTP" in str(caught.value)


def test_a_missing_rule_is_caught_by_the_verification(client: Pg, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    without_fetchmail = tuple(r for r in neutralize_module.RULES if r.table != "fetchmail_server")
    monkeypatch.setattr(neutralize_module, "RULES", without_fetchmail)
    with pytest.raises(NeutralizationIncomplete, match=r"fetchmail_server #1 Production IMAP .* is active"):
        neutralize(client, db)


def test_a_failing_statement_rolls_everything_back(client: Pg, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = read_identity(client, db)
    broken = Rule(None, "test: a broken statement", "ir_cron", "UPDATE ir_cron SET no_such_column = 1")
    monkeypatch.setattr(neutralize_module, "RULES", (*neutralize_module.RULES, broken))
    message = r"(?s)in the rule from test: a broken statement; rolled back.*no_such_column"
    with pytest.raises(OperationFailed, match=message):
        neutralize(client, db)
    assert live_mail_servers(client, db) == ["Production SMTP"]
    assert len(active_crons(client, db)) == 13
    assert read_identity(client, db) == before


def test_a_database_without_fetchmail_server_is_neutralized_too(client: Pg, db: str) -> None:
    client.psql("DROP TABLE fetchmail_server CASCADE", db)
    report = neutralize(client, db)
    assert "fetchmail_server" not in report["changed"]
    assert report["remaining"] == []


def test_an_enabled_payment_provider_and_an_enterprise_code_are_turned_off(client: Pg, db: str) -> None:
    client.psql(
        "UPDATE payment_provider SET state = 'enabled' WHERE name->>'en_US' = 'Stripe';"
        "INSERT INTO ir_config_parameter (key, value) VALUES ('database.enterprise_code', 'M2611ABCDEF')",
        db,
    )
    items = live_items(client, db)
    assert any(i.startswith("payment_provider #") and "Stripe is enabled" in i for i in items)
    assert "ir_config_parameter database.enterprise_code is set" in items
    report = neutralize(client, db)
    assert report["changed"]["payment_provider"] == 1
    assert rows(client, db, "SELECT state FROM payment_provider WHERE name->>'en_US' = 'Stripe'") == ["disabled"]
    assert rows(client, db, "SELECT count(*) FROM ir_config_parameter WHERE key = 'database.enterprise_code'") == ["0"]


def test_neutralize_refuses_a_database_that_is_missing_or_not_odoo(client: Pg) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        neutralize(client, "no_such_db")
    with pytest.raises(UsageError, match="is not an Odoo database"):
        live_items(client, "postgres")
