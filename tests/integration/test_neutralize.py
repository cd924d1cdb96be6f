"""Neutralization of a real Odoo 17 database: what was live is off, Odoo's keepers stay, and success is proven."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from erpops.backup import neutralize as neutralize_module
from erpops.backup.interop import COMMANDS
from erpops.backup.neutralize import (
    MAIL_SINK_HOST,
    NeutralizationIncomplete,
    NeutralizationUncovered,
    Rule,
    live_items,
    neutralize,
    neutralize_or_drop,
    read_identity,
)
from erpops.backup.odoozip import import_odoo_zip
from erpops.errors import OperationFailed, UsageError
from erpops.local import LocalPostgres
from erpops.pg import Pg, quote_ident

pytestmark = pytest.mark.integration

PRISTINE = "mfg_neutralize_src"
_names = itertools.count()


@pytest.fixture(scope="module")
def client(pg: LocalPostgres) -> Pg:
    return Pg.from_local(pg)


@pytest.fixture(scope="module")
def pristine(client: Pg, tmp_path_factory: pytest.TempPathFactory, odoo_fixture: Path) -> Iterator[str]:
    """The fixture backup, imported once; tests work on copies of it."""
    import_odoo_zip(odoo_fixture, client, PRISTINE, tmp_path_factory.mktemp("filestore"))
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


# -- issue 12: neutralization that covers what Odoo covers ---------------------------------------------


def install(client: Pg, db: str, *modules: str) -> None:
    """Mark modules installed, as Odoo's ir_module_module shows them (their tables are made by the test)."""
    for module in modules:
        client.psql(f"UPDATE ir_module_module SET state = 'installed' WHERE name = '{module}';"
                    f"INSERT INTO ir_module_module (name, state) SELECT '{module}', 'installed' "
                    f"WHERE NOT EXISTS (SELECT 1 FROM ir_module_module WHERE name = '{module}')", db)


def test_a_pre_17_iap_token_too_long_for_disabled_gets_odoo_s_dummy(client: Pg, db: str) -> None:
    client.psql("INSERT INTO iap_account (service_name, account_token) VALUES "
                "('sms', repeat('a', 40)), ('ocr', 'b0c9a6e0f5d4')", db)
    assert "iap_account #1 (sms) holds a live token" in live_items(client, db)
    report = neutralize(client, db)  # before: value too long for type character varying(43)
    assert report["remaining"] == []
    assert rows(client, db, "SELECT service_name, account_token FROM iap_account ORDER BY id") == [
        "sms|dummy_value+disabled", "ocr|b0c9a6e0f5d4+disabled"]


def _oauth_recaptcha_paypal(client: Pg, db: str) -> None:
    """auth_oauth, google_recaptcha and payment_paypal as Odoo 17 leaves them installed and configured."""
    install(client, db, "auth_oauth", "google_recaptcha", "payment_paypal")
    client.psql(
        """
        CREATE TABLE auth_oauth_provider (id serial PRIMARY KEY, name varchar, client_id varchar, enabled boolean);
        INSERT INTO auth_oauth_provider (name, client_id, enabled) VALUES ('Google', 'g-123.apps', true),
                                                                           ('Odoo.com', 'odoo-1', false);
        INSERT INTO ir_config_parameter (key, value) VALUES ('recaptcha_public_key', '6LcPUBLIC'),
                                                            ('recaptcha_private_key', '6LcPRIVATE');
        ALTER TABLE payment_provider ADD COLUMN paypal_email_account varchar, ADD COLUMN paypal_pdt_token varchar;
        UPDATE payment_provider SET code = 'paypal', state = 'test', paypal_email_account = 'shop@example.com',
               paypal_pdt_token = 'PDT-SECRET' WHERE name->>'en_US' = 'PayPal';
        """,
        db,
    )


def test_oauth_recaptcha_and_paypal_are_live_then_neutralized_as_odoo_does(client: Pg, db: str) -> None:
    _oauth_recaptcha_paypal(client, db)
    [paypal_id] = rows(client, db, "SELECT id FROM payment_provider WHERE code = 'paypal'")
    items = live_items(client, db)
    assert "auth_oauth_provider #1 still holds enabled (auth_oauth)" in items
    assert "ir_config_parameter recaptcha_private_key is set (google_recaptcha)" in items
    assert "ir_config_parameter recaptcha_public_key is set (google_recaptcha)" in items
    assert f"payment_provider #{paypal_id} still holds paypal_email_account, paypal_pdt_token (payment_paypal)" in items
    assert not any("PDT-SECRET" in i or "6LcPRIVATE" in i for i in items), "a live check must not show a secret"

    report = neutralize(client, db)
    assert report["remaining"] == []
    assert {"auth_oauth", "google_recaptcha", "payment_paypal"} <= set(report["modules_applied"])
    assert rows(client, db, "SELECT count(*) FROM auth_oauth_provider WHERE enabled") == ["0"]
    assert rows(client, db, "SELECT key, value FROM ir_config_parameter WHERE key LIKE 'recaptcha%' ORDER BY 1") == [
        "recaptcha_private_key|", "recaptcha_public_key|"]
    assert rows(client, db, "SELECT count(*) FROM payment_provider WHERE paypal_email_account IS NOT NULL "
                            "OR paypal_pdt_token IS NOT NULL") == ["0"]
    assert neutralize(client, db)["changed"].get("auth_oauth_provider") == 0  # a second run changes nothing


def test_an_installed_module_without_a_rule_refuses_before_changing_anything(client: Pg, db: str) -> None:
    install(client, db, "voip")  # Enterprise: ships data/neutralize.sql, erpops has no rule for it
    with pytest.raises(NeutralizationUncovered) as caught:
        neutralize(client, db)
    assert caught.value.exit_code == 4 and caught.value.modules == ["voip"]
    assert "--allow-unneutralized voip" in str(caught.value) and "--addons-path" in str(caught.value)
    assert live_mail_servers(client, db) == ["Production SMTP"]  # nothing was changed

    report = neutralize(client, db, allow_unneutralized=["voip"])
    assert report["uncovered_allowed"] == ["voip"] and report["remaining"] == []


def _addons(root: Path, files: dict[str, str | None]) -> Path:
    """An addons directory: module -> its data/neutralize.sql text (None: the module ships none)."""
    for module, sql in files.items():
        (root / module / "data").mkdir(parents=True)
        (root / module / "__manifest__.py").write_text(repr({'name': module}) + "\n")
        if sql is not None:
            (root / module / "data" / "neutralize.sql").write_text(sql)
    return root


# The tests' own neutralize files (not Odoo's): enough to turn the fixture's live items off.
BASE_SQL = """-- test base file
UPDATE ir_mail_server SET active = false;
UPDATE ir_cron SET active = false
 WHERE id NOT IN (SELECT res_id FROM ir_model_data WHERE model = 'ir.cron' AND module = 'base'
                   AND name = 'autovacuum_job');
INSERT INTO ir_config_parameter (key, value) VALUES ('database.is_neutralized', true)
    ON CONFLICT (key) DO UPDATE SET value = true
"""


def test_with_odoo_addons_the_installed_modules_own_files_run(client: Pg, db: str, tmp_path: Path) -> None:
    addons = _addons(tmp_path, {"base": BASE_SQL, "mail": "UPDATE fetchmail_server SET active = false;\n",
                                "web": None, "stock": None})
    report = neutralize(client, db, addons_path=[addons])
    assert report["mode"] == "odoo-addons" and report["remaining"] == []
    assert report["odoo_files"] == [str(addons / "base/data/neutralize.sql"), str(addons / "mail/data/neutralize.sql")]
    # The file's statements have no `WHERE active`: the server, every cron but one (21 - 1), the flag.
    assert report["changed"]["base/data/neutralize.sql"] == 1 + 20 + 1
    assert report["changed"]["mail/data/neutralize.sql"] == 1
    assert active_crons(client, db) == ["base.autovacuum_job"]
    # web was found without a file: erpops' own web rule did not run in its place.
    assert rows(client, db, "SELECT active FROM ir_ui_view WHERE key = 'web.neutralize_banner'") == ["f"]
    # iap is not in that addons path: erpops' rule ran for it.
    assert "iap" in report["modules_applied"] and "iap" in report["not_in_addons_path"]
    assert "base" not in report["not_in_addons_path"]


def test_an_odoo_file_that_leaves_something_live_is_caught(client: Pg, db: str, tmp_path: Path) -> None:
    addons = _addons(tmp_path, {"base": BASE_SQL, "mail": None})
    with pytest.raises(NeutralizationIncomplete, match=r"fetchmail_server #1 Production IMAP .* is active"):
        neutralize(client, db, addons_path=[addons])


def test_a_wrong_addons_path_or_a_psql_command_is_refused_before_anything(client: Pg, db: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--addons-path: .* is not a directory"):
        neutralize(client, db, addons_path=[tmp_path / "nope"])
    with pytest.raises(UsageError, match=r"--addons-path: no base module"):
        neutralize(client, db, addons_path=[_addons(tmp_path / "a", {"mail": None})])
    evil = _addons(tmp_path / "b", {"base": BASE_SQL + ";\n\\! touch /tmp/erpops-owned\n"})
    with pytest.raises(UsageError, match="psql meta-command"):
        neutralize(client, db, addons_path=[evil])
    assert live_mail_servers(client, db) == ["Production SMTP"]


def test_neutralize_or_drop_leaves_no_half_neutralized_import(client: Pg, db: str, tmp_path: Path) -> None:
    install(client, db, "voip")
    fs = tmp_path / "filestore" / db
    fs.mkdir(parents=True)
    with pytest.raises(NeutralizationUncovered):
        neutralize_or_drop(client, db, fs)
    assert not client.database_exists(db) and not fs.exists()


def test_import_odoo_zip_neutralize_through_the_cli(pg: LocalPostgres, client: Pg, tmp_path: Path,
                                                    odoo_fixture: Path) -> None:
    group = click.Group("erpops", commands={c.name: c for c in COMMANDS})
    name = f"mfg_cli_{next(_names)}"
    try:
        result = CliRunner().invoke(group, ["import", "odoo-zip", str(odoo_fixture), "--to", name, "--filestore",
                                            str(tmp_path), "--neutralize", "--json"], env=pg.env())
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["neutralized"] is True and out["neutralize_report"]["remaining"] == []
        assert live_items(client, name) == []
        assert live_mail_servers(client, name) == []
    finally:
        client.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def test_restore_refuses_neutralized_for_an_uncovered_module_unless_allowed(pg: LocalPostgres, client: Pg, db: str,
                                                                          tmp_path: Path) -> None:
    from erpops.backup import engine
    from erpops.backup.commands import COMMANDS as BACKUP_COMMANDS
    from erpops.backup.storage import open_target

    install(client, db, "voip")
    target_url = f"file://{tmp_path / 'sets'}"
    set_id = engine.backup(open_target(target_url), client, db, stack="dev")["set_id"]
    group = click.Group("erpops", commands={c.name: c for c in BACKUP_COMMANDS})
    env = {**pg.env(), "ERPOPS_BACKUP_TARGET": target_url}
    restored = f"{db}_restored"
    try:
        refused = CliRunner().invoke(group, ["restore", set_id, "--to", restored, "--skip-filestore", "--json"],
                                     env=env)
        out = json.loads(refused.stdout)
        assert out["ok"] is False and out["exit_code"] == 4, refused.output
        assert "voip" in out["error"] and "--allow-unneutralized voip" in out["error"]
        assert not client.database_exists(restored), "a refused restore leaves no database behind"

        allowed = CliRunner().invoke(group, ["restore", set_id, "--to", restored, "--skip-filestore",
                                             "--allow-unneutralized", "voip"], env=env)
        assert allowed.exit_code == 0, allowed.output
        assert "NOT neutralized, accepted: voip (--allow-unneutralized)" in allowed.stdout
        assert live_items(client, restored) == []
    finally:
        client.psql(f"DROP DATABASE IF EXISTS {quote_ident(restored)} WITH (FORCE)")


def test_backup_neutralized_refuses_an_uncovered_module_unless_allowed(pg: LocalPostgres, client: Pg, db: str,
                                                                      tmp_path: Path) -> None:
    from erpops.backup import engine
    from erpops.backup.commands import COMMANDS as BACKUP_COMMANDS
    from erpops.backup.storage import open_target

    install(client, db, "voip")
    target_url = f"file://{tmp_path / 'sets'}"
    (tmp_path / "sets").mkdir()
    group = click.Group("erpops", commands={c.name: c for c in BACKUP_COMMANDS})
    env = {**pg.env(), "ERPOPS_BACKUP_TARGET": target_url}
    before = set(client.psql("SELECT datname FROM pg_database").split())

    refused = CliRunner().invoke(group, ["backup", "--db", db, "--neutralized", "--json"], env=env)
    out = json.loads(refused.stdout)
    assert out["ok"] is False and out["exit_code"] == 4, refused.output
    assert "voip" in out["error"] and "--allow-unneutralized voip" in out["error"]
    assert engine.list_sets(open_target(target_url)) == [], "a refused neutralized backup stores no set"
    assert set(client.psql("SELECT datname FROM pg_database").split()) == before, "the scratch copy is dropped"
    assert live_mail_servers(client, db) == ["Production SMTP"], "the source database is never touched"

    allowed = CliRunner().invoke(group, ["backup", "--db", db, "--neutralized", "--allow-unneutralized", "voip"],
                                 env=env)
    assert allowed.exit_code == 0, allowed.output
    assert "neutralized: yes" in allowed.stdout
    assert "NOT neutralized, accepted: voip (--allow-unneutralized)" in allowed.stdout
    [stored] = engine.list_sets(open_target(target_url))
    manifest = engine.load_manifest(open_target(target_url), stored["set_id"])
    assert manifest.neutralized is True
    assert manifest.source["neutralize_report"]["uncovered_allowed"] == ["voip"]
    restored = f"{db}_from_neutralized"
    try:
        from erpops.backup.restore import restore

        restore(open_target(target_url), stored["set_id"], pg=client, db=restored, skip_filestore=True,
                neutralize=False)
        assert live_items(client, restored) == [] and live_mail_servers(client, restored) == []
    finally:
        client.psql(f"DROP DATABASE IF EXISTS {quote_ident(restored)} WITH (FORCE)")
    assert live_mail_servers(client, db) == ["Production SMTP"]


def test_backup_neutralize_options_are_checked_first(pg: LocalPostgres, client: Pg, db: str, tmp_path: Path) -> None:
    from erpops.backup.commands import COMMANDS as BACKUP_COMMANDS

    group = click.Group("erpops", commands={c.name: c for c in BACKUP_COMMANDS})
    env = {**pg.env(), "ERPOPS_BACKUP_TARGET": f"file://{tmp_path}"}
    result = CliRunner().invoke(group, ["backup", "--db", db, "--allow-unneutralized", "voip", "--json"], env=env)
    out = json.loads(result.stdout)
    assert out["exit_code"] == 2 and "need --neutralized" in out["error"]
    result = CliRunner().invoke(group, ["backup", "--db", db, "--neutralized", "--addons-path",
                                        str(tmp_path / "missing"), "--json"], env=env)
    out = json.loads(result.stdout)
    assert out["exit_code"] == 2 and "--addons-path" in out["error"] and "is not a directory" in out["error"]
    assert list(tmp_path.iterdir()) == [], "nothing written to the target"


def test_import_options_that_need_neutralize_are_refused_first(tmp_path: Path, odoo_fixture: Path) -> None:
    group = click.Group("erpops", commands={c.name: c for c in COMMANDS})
    result = CliRunner().invoke(group, ["import", "odoo-zip", str(odoo_fixture), "--to", "never_made",
                                        "--allow-unneutralized", "voip", "--json"])
    out = json.loads(result.stdout)
    assert out["exit_code"] == 2 and "need --neutralize" in out["error"]
    result = CliRunner().invoke(group, ["import", "odoo-zip", str(odoo_fixture), "--to", "never_made", "--neutralize",
                                        "--addons-path", str(tmp_path / "missing"), "--json"])
    out = json.loads(result.stdout)
    assert out["exit_code"] == 2 and "--addons-path" in out["error"] and "is not a directory" in out["error"]


def test_a_failing_odoo_file_is_named_and_rolls_everything_back(client: Pg, db: str, tmp_path: Path) -> None:
    broken = "-- broken\nUPDATE fetchmail_server SET no_such_column = 1;\n"
    addons = _addons(tmp_path, {"base": BASE_SQL, "mail": broken})
    with pytest.raises(OperationFailed, match=rf"(?s)in the rule from {addons}/mail/data/neutralize.sql; rolled back"):
        neutralize(client, db, addons_path=[addons])
    assert live_mail_servers(client, db) == ["Production SMTP"]
    assert len(active_crons(client, db)) == 13


# Tables in the shape Odoo 16.0 gives them, for the modules whose 16.0 neutralize files differ
# from 17.0's (their columns as the 16.0 files name them). No 16.0 backup is at hand: this is it.
ODOO16_SQL = """
CREATE TABLE ir_model_data (id serial PRIMARY KEY, module varchar, name varchar, model varchar, res_id int);
INSERT INTO ir_module_module (name, state) VALUES ('account_edi_proxy_client', 'installed'),
  ('google_calendar', 'installed'), ('microsoft_calendar', 'installed'), ('payment', 'installed'),
  ('payment_paypal', 'installed'), ('iap', 'installed');
CREATE TABLE account_edi_proxy_client_user (id serial PRIMARY KEY, id_client varchar, edi_format_id int);
INSERT INTO account_edi_proxy_client_user (id_client) VALUES ('it-prod-1');
CREATE TABLE google_calendar_credentials (id serial PRIMARY KEY, calendar_rtoken varchar, calendar_token varchar,
                                          synchronization_stopped boolean);
INSERT INTO google_calendar_credentials (calendar_rtoken, calendar_token, synchronization_stopped)
  VALUES ('g-refresh', 'g-access', false);
CREATE TABLE res_users (id serial PRIMARY KEY, login varchar, microsoft_calendar_token varchar,
                        microsoft_calendar_rtoken varchar, microsoft_synchronization_stopped boolean);
INSERT INTO res_users (login, microsoft_calendar_token, microsoft_calendar_rtoken, microsoft_synchronization_stopped)
  VALUES ('admin', 'ms-access', 'ms-refresh', false);
CREATE TABLE payment_provider (id serial PRIMARY KEY, name jsonb, code varchar, state varchar,
                               paypal_email_account varchar, paypal_seller_account varchar, paypal_pdt_token varchar);
INSERT INTO payment_provider (name, code, state, paypal_email_account, paypal_seller_account, paypal_pdt_token)
  VALUES ('{"en_US": "PayPal"}', 'paypal', 'enabled', 'shop@example.com', 'SELLER1', 'PDT1');
CREATE TABLE iap_account (id serial PRIMARY KEY, service_name varchar, account_token varchar);
INSERT INTO iap_account (service_name, account_token) VALUES ('sms', repeat('c', 40));
"""


@pytest.fixture
def odoo16(client: Pg) -> Iterator[str]:
    from erpops.demo import ODOO_BASE_SQL

    name = f"odoo16_{next(_names)}"
    client.psql(f"CREATE DATABASE {quote_ident(name)}")
    client.psql(ODOO_BASE_SQL + ODOO16_SQL, name)
    yield name
    client.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def test_a_16_0_shaped_database_is_covered_and_neutralized(client: Pg, odoo16: str) -> None:
    items = live_items(client, odoo16)
    assert "ir_config_parameter account_edi_proxy_client.demo is not true (16.0 EDI proxy live)" in items
    assert any(i.startswith("google_calendar_credentials #1 still holds calendar_rtoken, calendar_token, "
                            "synchronization_stopped") for i in items)
    assert any(i.startswith("res_users #1 still holds microsoft_calendar_token") for i in items)
    assert any("paypal_seller_account" in i for i in items)

    report = neutralize(client, odoo16)
    assert report["remaining"] == []
    assert {"account_edi_proxy_client", "google_calendar", "microsoft_calendar", "payment_paypal"} <= set(
        report["modules_applied"])
    assert rows(client, odoo16, "SELECT value FROM ir_config_parameter WHERE key = 'account_edi_proxy_client.demo'"
                ) == ["True"]
    assert rows(client, odoo16, "SELECT calendar_rtoken IS NULL, synchronization_stopped "
                                "FROM google_calendar_credentials") == ["t|t"]
    assert rows(client, odoo16, "SELECT concat(paypal_email_account, paypal_seller_account, paypal_pdt_token), "
                                "state FROM payment_provider") == ["|disabled"]
    # iap_account.account_token is unbounded in 16.0: the long token gets the dummy all the same.
    assert rows(client, odoo16, "SELECT account_token FROM iap_account") == ["dummy_value+disabled"]


# Odoo 18.0's shape for modules whose 18.0 files are new or differ (columns as the 18.0 files name them).
ODOO18_SQL = """
CREATE TABLE ir_model_data (id serial PRIMARY KEY, module varchar, name varchar, model varchar, res_id int);
INSERT INTO ir_module_module (name, state) VALUES ('payment', 'installed'), ('payment_paypal', 'installed'),
  ('certificate', 'installed'), ('cloud_storage', 'installed'), ('cloud_storage_google', 'installed'),
  ('google_calendar', 'installed'), ('l10n_in', 'installed'), ('pos_pine_labs', 'installed');
CREATE TABLE payment_provider (id serial PRIMARY KEY, name jsonb, code varchar, state varchar,
                               paypal_email_account varchar, paypal_client_id varchar, paypal_client_secret varchar);
INSERT INTO payment_provider (name, code, state, paypal_email_account, paypal_client_id, paypal_client_secret)
  VALUES ('{"en_US": "PayPal"}', 'paypal', 'test', 'shop@example.com', 'AZ-client', 'EK-secret');
CREATE TABLE certificate_certificate (id serial PRIMARY KEY, pkcs12_password varchar);
INSERT INTO certificate_certificate (pkcs12_password) VALUES ('p12-secret');
CREATE TABLE certificate_key (id serial PRIMARY KEY, password varchar);
INSERT INTO certificate_key (password) VALUES ('key-secret');
INSERT INTO ir_config_parameter (key, value) VALUES ('cloud_storage_provider', 'google'),
  ('cloud_storage_google_bucket_name', 'prod-bucket'), ('cloud_storage_google_account_info', '{"private_key": 1}');
CREATE TABLE res_users_settings (id serial PRIMARY KEY, google_calendar_rtoken varchar, google_calendar_token varchar,
                                 google_synchronization_stopped boolean);
INSERT INTO res_users_settings (google_calendar_rtoken, google_calendar_token) VALUES ('r', 't');
CREATE TABLE res_company (id serial PRIMARY KEY, l10n_in_edi_production_env boolean);
INSERT INTO res_company (l10n_in_edi_production_env) VALUES (true);
CREATE TABLE pos_payment_method (id serial PRIMARY KEY, pine_labs_test_mode boolean, pine_labs_merchant varchar,
                                 pine_labs_security_token varchar);
INSERT INTO pos_payment_method (pine_labs_test_mode, pine_labs_merchant, pine_labs_security_token)
  VALUES (false, 'M-1', 'T-1'), (NULL, NULL, NULL);
"""


@pytest.fixture
def odoo18(client: Pg) -> Iterator[str]:
    from erpops.demo import ODOO_BASE_SQL

    name = f"odoo18_{next(_names)}"
    client.psql(f"CREATE DATABASE {quote_ident(name)}")
    client.psql(ODOO_BASE_SQL + ODOO18_SQL, name)
    yield name
    client.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def test_an_18_0_shaped_database_is_covered_and_neutralized(client: Pg, odoo18: str) -> None:
    items = live_items(client, odoo18)
    for expected in ("payment_provider #1 still holds paypal_email_account, paypal_client_id, paypal_client_secret",
                     "certificate_certificate #1 still holds pkcs12_password (certificate)",
                     "certificate_key #1 still holds password (certificate)",
                     "ir_config_parameter cloud_storage_provider is set (cloud_storage)",
                     "ir_config_parameter cloud_storage_google_account_info is set (cloud_storage_google)",
                     "res_users_settings #1 still holds google_calendar_rtoken, google_calendar_token",
                     "res_company #1 still holds l10n_in_edi_production_env (l10n_in)",
                     "pos_payment_method #1 still holds pine_labs_test_mode, pine_labs_merchant"):
        assert any(i.startswith(expected) for i in items), (expected, items)
    assert not any(v in i for i in items for v in ("EK-secret", "p12-secret", "key-secret", "prod-bucket")), \
        "a live check must not show a value"

    report = neutralize(client, odoo18)
    assert report["remaining"] == []
    assert rows(client, odoo18, "SELECT count(*) FROM ir_config_parameter WHERE key LIKE 'cloud_storage%'") == ["0"]
    assert rows(client, odoo18, "SELECT pkcs12_password FROM certificate_certificate") == ["dummy"]
    assert rows(client, odoo18, "SELECT pine_labs_test_mode, pine_labs_merchant FROM pos_payment_method "
                                "ORDER BY id") == ["t|dummymerchant", "t|dummymerchant"]
    assert rows(client, odoo18, "SELECT l10n_in_edi_production_env FROM res_company") == ["f"]
