"""Every Odoo 16.0-18.0 Community module that ships data/neutralize.sql has an erpops rule."""

from __future__ import annotations

import pytest

from erpops.backup.neutralize import RULES, Rule, Schema, applicable_rules, uncovered_modules
from erpops.backup.neutralize_modules import ENTERPRISE_18, KNOWN, ODOO_CE


def _modules_with_rules() -> set[str]:
    return {rule.module for rule in RULES if rule.module}


@pytest.mark.parametrize("module", sorted({(v, m) for v, ms in ODOO_CE.items() for m in ms}), ids=lambda p: "-".join(p))
def test_every_listed_community_module_has_a_rule(module: tuple[str, str]) -> None:
    version, name = module
    assert name in _modules_with_rules(), (
        f"{name} ships data/neutralize.sql in Odoo {version} CE but erpops/backup/neutralize.py has no rule for it"
    )


def test_the_recorded_lists_are_the_counts_odoo_ships() -> None:
    # 17.0: the 52 files a real Odoo 17.0 CE shows (issue 12); 16.0 and 18.0 as read from their trees.
    assert {v: len(ms) for v, ms in ODOO_CE.items()} == {"16.0": 37, "17.0": 52, "18.0": 57}
    assert all("base" in ms and "mail" in ms and "payment" in ms for ms in ODOO_CE.values())
    assert not (ENTERPRISE_18 & ODOO_CE["18.0"])


def _schema(columns: dict[str, list[str]]) -> Schema:
    return Schema({table: dict.fromkeys(cols, "varchar") for table, cols in columns.items()})


def test_a_rule_written_as_data_sets_only_the_columns_this_version_has() -> None:
    paypal = next(r for r in RULES if r.module == "payment_paypal")
    v17 = _schema({"payment_provider": ["id", "paypal_email_account", "paypal_pdt_token"]})
    v18 = _schema({"payment_provider": ["id", "paypal_email_account", "paypal_client_id", "paypal_client_secret"]})
    sql17, sql18 = paypal.render(v17), paypal.render(v18)
    assert "paypal_pdt_token = NULL" in sql17 and "paypal_client_secret" not in sql17
    assert "paypal_client_secret = NULL" in sql18 and "paypal_pdt_token" not in sql18
    assert not paypal.applies(_schema({"payment_provider": ["id", "state"]}))


def test_an_installed_module_whose_columns_are_unknown_is_not_covered() -> None:
    schema = _schema({"auth_oauth_provider": ["id", "enabled"], "res_company": ["id"]})
    # l10n_sa_edi installed but its column is not there (another version): not covered.
    assert uncovered_modules({"auth_oauth", "l10n_sa_edi"}, schema) == ["l10n_sa_edi"]
    assert uncovered_modules({"auth_oauth", "l10n_sa_edi"}, schema, covered={"l10n_sa_edi"}) == []
    # An Enterprise module known to ship a file and without a rule.
    assert "voip" in KNOWN and uncovered_modules({"voip"}, schema) == ["voip"]
    # A module that ships no neutralize file is never "uncovered".
    assert uncovered_modules({"stock", "mrp"}, schema) == []


def test_rules_of_skipped_modules_do_not_run() -> None:
    schema = _schema({"auth_oauth_provider": ["id", "enabled"]})
    names = {r.module for r in applicable_rules({"auth_oauth"}, schema)}
    assert "auth_oauth" in names
    assert "auth_oauth" not in {r.module for r in applicable_rules({"auth_oauth"}, schema, skip={"auth_oauth"})}


def test_a_live_check_never_shows_a_value() -> None:
    rule = Rule("x", "test", "res_company", "", sets=(("secret_key", "NULL"),))
    live = rule.live_sql(_schema({"res_company": ["id", "secret_key"]}))
    assert live is not None
    assert "format('res_company #%s still holds %s (x)', id, concat_ws(', ', CASE WHEN" in live
    assert "secret_key IS NOT NULL" in live
