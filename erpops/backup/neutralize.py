"""Neutralize an Odoo 16.0-18.0 database the way `odoo-bin neutralize` does, then prove it.

Odoo's neutralization (odoo/modules/neutralize.py, `neutralize_database`) reads the installed
modules (state installed / to upgrade / to remove) and runs each one's `data/neutralize.sql`,
found in the addons path. erpops does it two ways:

- with Odoo's addons at hand (`addons_path`, the CLI's `--addons-path`): it runs the installed
  modules' own files from there, as Odoo does (a module is looked up in the first directory that
  holds it; a file with a psql meta-command line is refused), and its own rules only for the
  installed modules that are not in that path;
- without them: its own rules, RULES below, one or more per module of Odoo 16.0, 17.0 and 18.0 CE
  that ships such a file (the list, a recorded fact: erpops/backup/neutralize_modules.py; the
  coverage test tests/unit/test_neutralize_coverage.py fails when a listed module has no rule).
  Each rule names the odoo/odoo file and versions it stands for; the SQL is erpops' own. A rule
  runs where every table and column it names exists, so one rule serves 16.0-18.0 (their schemas
  differ) and a database without, say, `fetchmail_server` never errors.

An installed module known to ship a neutralize file (neutralize_modules.KNOWN, Enterprise
included) for which neither its own file nor an erpops rule applies is "not covered": neutralize
refuses (NeutralizationUncovered) before changing anything, unless `allow_unneutralized` names it.

Where erpops' rules differ from Odoo's files, it is on purpose:

- each statement only touches rows that are still live (`WHERE active`, ...): the result is the
  same, the report counts real changes, and a second run changes nothing (Odoo's own base file
  would insert a second dummy mail server);
- IAP tokens too long for '+disabled' (pre-17.0 ones, over 33 characters in a varchar(43)) get
  Odoo 17's dummy value instead of failing the whole run;
- the database identity is rotated as Odoo does for a copy (`ir.config_parameter.init(force=True)`
  in odoo/service/db.py): a new `database.uuid` (so the copy stops reporting as production to
  Odoo's publisher warranty and IAP) and a new `database.secret` (so signed links, tokens and
  sessions minted by production stop validating). `database.create_date` is left: Odoo's
  neutralization does not touch it;
- `database.enterprise_code` is removed: a copy must not present the production subscription.

Everything runs in ONE transaction (`psql --single-transaction`, ON_ERROR_STOP): a failing
statement leaves the database as it was. Then a separate query, `live_items`, looks for anything
that can still act on the outside world: mail, fetchmail, crons, payment states, carriers,
webhooks, IAP, EDI proxies, and every credential a rule written as data clears (OAuth providers,
captcha keys, payment provider and terminal credentials, localisation e-invoicing, cloud storage,
calendar tokens, ...), whichever way the run was made. While anything is live, `neutralize`
raises OperationFailed listing it (table, row, column; never a value).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from erpops.backup.neutralize_modules import KNOWN as KNOWN_NEUTRALIZE
from erpops.errors import OperationFailed, ServiceError, UsageError
from erpops.pg import Pg, client_bin, quote_literal

# The dummy outgoing server Odoo 17.0+ inserts so that a `--smtp` server given on the command line
# cannot be used as a fallback. Its host is the reserved `.invalid` name: it can never deliver.
MAIL_SINK_NAME = "neutralization - disable emails"
MAIL_SINK_HOST = "invalid"
WEBHOOK_SINK = "neutralization - disable webhook"
# Crons that Odoo's base/data/neutralize.sql leaves active: (module, xml id name).
ESSENTIAL_CRONS: tuple[tuple[str, str], ...] = (("base", "autovacuum_job"),)
INSTALLED_STATES = ("installed", "to upgrade", "to remove")
# iap_account.account_token is a varchar(43) from 17.0 on: a token of more than 33 characters (an
# older, pre-17.0 form) has no room for '+disabled'; Odoo 17.0+ writes this dummy value instead.
IAP_TOKEN_FITS = 33
IAP_DUMMY_TOKEN = "dummy_value+disabled"  # noqa: S105 - the placeholder that replaces a token
IDENTITY_KEYS = ("database.uuid", "database.secret")

_SINK = f"name = {quote_literal(MAIL_SINK_NAME)} AND smtp_host = {quote_literal(MAIL_SINK_HOST)}"
_ESSENTIAL_CRON_IDS = (
    "SELECT res_id FROM ir_model_data WHERE model = 'ir.cron' AND ("
    + " OR ".join(f"(module = {quote_literal(m)} AND name = {quote_literal(n)})" for m, n in ESSENTIAL_CRONS)
    + ")"
)

ODOO = "odoo/odoo:addons/{}/data/neutralize.sql"
ODOO_BASE = "odoo/odoo:odoo/addons/base/data/neutralize.sql"
ENTERPRISE = "odoo/enterprise:{}/data/neutralize.sql (private repository: as reproduced by public tooling)"


@dataclass(frozen=True)
class Rule:
    """One statement of one module's neutralize.sql.

    module: the Odoo module whose file it comes from (None: erpops' own, runs whenever the
    tables exist). source: that file, and the versions the statement was read from.
    table: the table it changes (the key of the report's `changed`).
    needs: further "table" or "table.column" names that must exist (the table itself always must).

    Two kinds of rule are written from data rather than SQL, and prove themselves: after the run,
    a row that still holds a value they would change is a live item (see `live_sql`).
    sets: (column, neutral SQL value) pairs: `UPDATE table SET column = value` on the rows that
    match `where` and still differ. Columns that do not exist are left out (one rule serves
    16.0-18.0, whose columns differ); the rule runs where at least one exists, and also where its
    module is not installed, since a column left behind still holds a live credential.
    keys: ir_config_parameter keys to blank ('' as Odoo does) or, with delete, to delete.
    file: sql is a whole neutralize.sql of Odoo's addons (table names that file).
    """

    module: str | None
    source: str
    table: str
    sql: str
    needs: tuple[str, ...] = ()
    sets: tuple[tuple[str, str], ...] = ()
    where: str = ""
    keys: tuple[str, ...] = ()
    delete: bool = False
    file: bool = False  # the module's own neutralize.sql, read from Odoo's addons

    def requirements(self) -> tuple[str, ...]:
        return (self.table, *self.needs)

    @property
    def from_data(self) -> bool:
        return bool(self.sets or self.keys)

    def columns(self, schema: Schema) -> list[tuple[str, str]]:
        return [(c, v) for c, v in self.sets if schema.has(f"{self.table}.{c}")]

    def applies(self, schema: Schema) -> bool:
        if not all(schema.has(n) for n in self.requirements()):
            return False
        return not self.sets or bool(self.columns(schema))

    def _still_live(self, schema: Schema) -> str:
        if self.keys:
            names = ", ".join(quote_literal(k) for k in self.keys)
            return f"key IN ({names}) AND coalesce(value, '') <> ''"
        live = " OR ".join(_differs(c, v) for c, v in self.columns(schema))
        return f"({self.where}) AND ({live})" if self.where else f"({live})"

    def render(self, schema: Schema) -> str:
        if self.keys:
            verb = "DELETE FROM ir_config_parameter" if self.delete else "UPDATE ir_config_parameter SET value = ''"
            return f"{verb} WHERE {self._still_live(schema)}"
        if self.sets:
            assignments = ", ".join(f"{c} = {v}" for c, v in self.columns(schema))
            return f"UPDATE {self.table} SET {assignments} WHERE {self._still_live(schema)}"
        return self.sql

    def live_sql(self, schema: Schema) -> str | None:
        """A query returning one line per row this rule would still change (no values: they may be secret)."""
        who = self.module or "erpops"
        if self.keys:
            return (f"SELECT format('ir_config_parameter %s is set (%s)', key, {quote_literal(who)}) "
                    f"FROM ir_config_parameter WHERE {self._still_live(schema)}")
        if self.sets:
            which = ", ".join(f"CASE WHEN {_differs(c, v)} THEN {quote_literal(c)} END"
                              for c, v in self.columns(schema))
            return (f"SELECT format('{self.table} #%s still holds %s ({who})', id, concat_ws(', ', {which})) "
                    f"FROM {self.table} WHERE {self._still_live(schema)}")
        return None

    @property
    def counts_before(self) -> bool:
        # TRUNCATE reports no row count: the rows are counted just before, in the same transaction.
        return not self.file and self.sql.lstrip().upper().startswith("TRUNCATE")


def _differs(column: str, value: str) -> str:
    """SQL: `column` still differs from its neutral `value` (NULL and '' both count as cleared)."""
    if value == "NULL":
        return f"({column} IS NOT NULL AND {column}::text <> '')"
    if value == "false":
        return f"{column} IS TRUE"
    if value == "true":
        return f"{column} IS NOT TRUE"
    return f"{column} IS DISTINCT FROM {value}"


def _clear(module: str, versions: str, what: str, table: str, sets: dict[str, str | bool | None],
           where: str = "") -> Rule:
    """A rule that sets columns to neutral values: None is NULL, a str a literal, a bool a boolean."""

    def sql_value(v: str | bool | None) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        return quote_literal(v)

    return Rule(module, f"{ODOO.format(module)} {versions}: {what}", table, "",
                sets=tuple((c, sql_value(v)) for c, v in sets.items()), where=where)


def _params(module: str, versions: str, what: str, keys: tuple[str, ...], delete: bool = False) -> Rule:
    return Rule(module, f"{ODOO.format(module)} {versions}: {what}", "ir_config_parameter", "", keys=keys,
                delete=delete)


RULES: tuple[Rule, ...] = (
    # -- base: odoo/addons/base/data/neutralize.sql (16.0, 17.0, 18.0) ------------------------------
    Rule(
        "base",
        ODOO_BASE + " 16.0-18.0: deactivate mail servers",
        "ir_mail_server",
        f"UPDATE ir_mail_server SET active = false WHERE active AND NOT ({_SINK})",
    ),
    Rule(
        "base",
        ODOO_BASE + " 16.0-18.0: insert a dummy mail server so no command-line server is a fallback",
        "ir_mail_server",
        "INSERT INTO ir_mail_server (name, smtp_port, smtp_host, smtp_encryption, active, smtp_authentication) "
        f"SELECT {quote_literal(MAIL_SINK_NAME)}, 1025, {quote_literal(MAIL_SINK_HOST)}, 'none', true, 'login' "
        f"WHERE NOT EXISTS (SELECT 1 FROM ir_mail_server WHERE active AND {_SINK})",
        needs=("ir_mail_server.smtp_authentication",),
    ),
    Rule(
        "base",
        ODOO_BASE + " 16.0-18.0: deactivate crons but base.autovacuum_job",
        "ir_cron",
        f"UPDATE ir_cron SET active = false WHERE active AND id NOT IN ({_ESSENTIAL_CRON_IDS})",
        needs=("ir_model_data",),
    ),
    Rule(
        "base",
        ODOO_BASE + " 16.0-18.0: neutralization flag",
        "ir_config_parameter",
        "INSERT INTO ir_config_parameter (key, value) VALUES ('database.is_neutralized', 'true') "
        "ON CONFLICT (key) DO UPDATE SET value = 'true' WHERE ir_config_parameter.value IS DISTINCT FROM 'true'",
    ),
    Rule(
        "base",
        ODOO_BASE + " 17.0-18.0: deactivate webhooks",
        "ir_act_server",
        f"UPDATE ir_act_server SET webhook_url = {quote_literal(WEBHOOK_SINK)} "
        f"WHERE state = 'webhook' AND webhook_url IS DISTINCT FROM {quote_literal(WEBHOOK_SINK)}",
        needs=("ir_act_server.webhook_url", "ir_act_server.state"),
    ),
    # -- mail: addons/mail/data/neutralize.sql (16.0; 17.0 absorbed fetchmail's; 18.0 renamed push) ----
    Rule(
        "mail",
        ODOO.format("mail") + " 16.0-18.0: deactivate mail template servers",
        "mail_template",
        "UPDATE mail_template SET mail_server_id = NULL WHERE mail_server_id IS NOT NULL",
        needs=("mail_template.mail_server_id",),
    ),
    Rule(
        "mail",
        ODOO.format("mail") + " 16.0-18.0: deactivate fetchmail servers",
        "fetchmail_server",
        "UPDATE fetchmail_server SET active = false WHERE active",
    ),
    Rule(
        "fetchmail",
        ODOO.format("fetchmail") + " before 16.0 (merged into mail in 16.0), kept for upgraded databases",
        "fetchmail_server",
        "UPDATE fetchmail_server SET active = false WHERE active",
    ),
    Rule(
        "mail",
        ODOO.format("mail") + " 17.0-18.0: reset web push, delete VAPID keys",
        "ir_config_parameter",
        "",
        keys=("mail.web_push_vapid_private_key", "mail.web_push_vapid_public_key", "mail.sfu_server_key"),
        delete=True,
    ),
    Rule(
        "mail",
        ODOO.format("mail") + " 17.0: delete delayed web push messages",
        "mail_notification_web_push",
        "TRUNCATE mail_notification_web_push",
    ),
    Rule(
        "mail",
        ODOO.format("mail") + " 17.0: delete the partners' push devices",
        "mail_partner_device",
        "TRUNCATE mail_partner_device CASCADE",
    ),
    Rule("mail", ODOO.format("mail") + " 18.0: delete delayed web push messages", "mail_push", "TRUNCATE mail_push"),
    Rule(
        "mail",
        ODOO.format("mail") + " 18.0: delete the partners' push devices",
        "mail_push_device",
        "DELETE FROM mail_push_device",
    ),
    # -- iap ------------------------------------------------------------------------------------------
    Rule(
        "iap",
        ODOO.format("iap") + " 16.0-18.0: disable IAP account tokens that fit the column with '+disabled'",
        "iap_account",
        r"UPDATE iap_account SET account_token = REGEXP_REPLACE(account_token, '(\+.*)?$', '+disabled') "
        f"WHERE account_token NOT LIKE '%+disabled' AND length(account_token) <= {IAP_TOKEN_FITS}",
        needs=("iap_account.account_token",),
    ),
    Rule(
        "iap",
        ODOO.format("iap") + " 17.0-18.0: replace longer (pre-17.0) IAP tokens by a dummy value",
        "iap_account",
        f"UPDATE iap_account SET account_token = {quote_literal(IAP_DUMMY_TOKEN)} "
        f"WHERE account_token NOT LIKE '%+disabled' AND length(account_token) > {IAP_TOKEN_FITS}",
        needs=("iap_account.account_token",),
    ),
    # -- payment ----------------------------------------------------------------------------------------
    Rule(
        "payment",
        ODOO.format("payment") + " 16.0-18.0: disable payment providers",
        "payment_provider",
        "UPDATE payment_provider SET state = 'disabled' WHERE state NOT IN ('test', 'disabled')",
        needs=("payment_provider.state",),
    ),
    # payment_<provider>: the credential columns, by the module list below (_OWN_RULES).
    # -- delivery -----------------------------------------------------------------------------------------
    Rule(
        "delivery",
        ODOO.format("delivery") + " 16.0-18.0: carriers out of production",
        "delivery_carrier",
        "UPDATE delivery_carrier SET prod_environment = false WHERE prod_environment",
        needs=("delivery_carrier.prod_environment",),
    ),
    Rule(
        "delivery",
        ODOO.format("delivery") + " 16.0-18.0: deactivate external carriers",
        "delivery_carrier",
        "UPDATE delivery_carrier SET active = false WHERE active AND delivery_type NOT IN ('fixed', 'base_on_rule')",
        needs=("delivery_carrier.delivery_type",),
    ),
    # -- web, website ---------------------------------------------------------------------------------------
    Rule(
        "web",
        ODOO.format("web") + " 16.0-18.0: show the neutralization banner",
        "ir_ui_view",
        "UPDATE ir_ui_view SET active = true WHERE key = 'web.neutralize_banner' AND NOT active",
        needs=("ir_ui_view.key",),
    ),
    Rule(
        "website",
        ODOO.format("website") + " 16.0-18.0: delete website domains",
        "website",
        "UPDATE website SET domain = NULL WHERE domain IS NOT NULL",
        needs=("website.domain",),
    ),
    Rule(
        "website",
        ODOO.format("website") + " 16.0-18.0: show the neutralization ribbon",
        "ir_ui_view",
        "UPDATE ir_ui_view SET active = true WHERE key = 'website.neutralize_ribbon' AND NOT active",
        needs=("ir_ui_view.key",),
    ),
    Rule(
        "website",
        ODOO.format("website") + " 17.0-18.0: disable the CDN",
        "website",
        "UPDATE website SET cdn_activated = false WHERE cdn_activated",
        needs=("website.cdn_activated",),
    ),
    Rule(
        "website",
        ODOO.format("website") + " 16.0-18.0: robots.txt disallows all",
        "website",
        r"UPDATE website SET robots_txt = E'User-agent: *\nDisallow: /' "
        r"WHERE robots_txt IS DISTINCT FROM E'User-agent: *\nDisallow: /'",
        needs=("website.robots_txt",),
    ),
    # -- e-invoicing proxies ----------------------------------------------------------------------------------
    Rule(
        "account_edi_proxy_client",
        ODOO.format("account_edi_proxy_client") + " 16.0: every EDI connection in demo mode",
        "ir_config_parameter",
        "INSERT INTO ir_config_parameter (key, value) VALUES ('account_edi_proxy_client.demo', 'True') "
        "ON CONFLICT (key) DO UPDATE SET value = 'True' WHERE lower(ir_config_parameter.value) NOT IN ('true', '1')",
        needs=("account_edi_proxy_client_user",),
    ),
    Rule(
        "account_edi_proxy_client",
        ODOO.format("account_edi_proxy_client") + " 17.0-18.0: EDI users to test/demo",
        "account_edi_proxy_client_user",
        "UPDATE account_edi_proxy_client_user SET edi_mode = CASE WHEN proxy_type IN "
        "('l10n_it_edi', 'peppol', 'nemhandel') THEN 'demo' ELSE 'test' END "
        "WHERE proxy_type NOT IN ('l10n_my_edi', 'l10n_gr_edi') AND edi_mode IS DISTINCT FROM CASE WHEN proxy_type IN "
        "('l10n_it_edi', 'peppol', 'nemhandel') THEN 'demo' ELSE 'test' END",
        needs=("account_edi_proxy_client_user.edi_mode", "account_edi_proxy_client_user.proxy_type"),
    ),
    Rule(
        "account_peppol",
        ODOO.format("account_peppol") + " 17.0-18.0: Peppol in test mode",
        "ir_config_parameter",
        "UPDATE ir_config_parameter SET value = 'test' WHERE key = 'account_peppol.edi.mode' AND value <> 'test'",
    ),
    Rule(
        "l10n_my_edi",
        ODOO.format("l10n_my_edi") + " 17.0-18.0: archive MyInvois proxy users",
        "account_edi_proxy_client_user",
        "UPDATE account_edi_proxy_client_user SET active = false WHERE proxy_type = 'l10n_my_edi' AND active",
        needs=("account_edi_proxy_client_user.active", "account_edi_proxy_client_user.proxy_type"),
    ),
    Rule(
        "l10n_gr_edi",
        ODOO.format("l10n_gr_edi") + " 18.0: archive myDATA proxy users",
        "account_edi_proxy_client_user",
        "UPDATE account_edi_proxy_client_user SET active = false WHERE proxy_type = 'l10n_gr_edi' AND active",
        needs=("account_edi_proxy_client_user.active", "account_edi_proxy_client_user.proxy_type"),
    ),
    # -- rules written as data (module, versions, what; the table; column -> neutral value) ------------------
    # Each also proves itself after the run (Rule.live_sql). The neutral values are the ones Odoo
    # leaves (NULL, '', a test mode, or the dummy value Odoo writes where a column must stay set).
    _clear("auth_oauth", "16.0-18.0", "disable OAuth providers", "auth_oauth_provider", {"enabled": False}),
    _params("google_recaptcha", "17.0-18.0", "blank the reCAPTCHA keys",
            ("recaptcha_public_key", "recaptcha_private_key")),
    _params("website_cf_turnstile", "17.0-18.0", "blank the Cloudflare Turnstile keys",
            ("cf.turnstile_site_key", "cf.turnstile_secret_key")),
    _params("website_event_jitsi", "16.0-18.0", "forget the Jitsi server", ("website_jitsi.jitsi_server_domain",),
            delete=True),
    _clear("website_sale_autocomplete", "16.0-18.0", "Google Places key to a dummy", "website",
           {"google_places_api_key": "dummy"}),
    _params("cloud_storage", "18.0", "forget the cloud storage provider", ("cloud_storage_provider",), delete=True),
    _params("cloud_storage_azure", "18.0", "forget the Azure storage account", (
        "cloud_storage_azure_account_name", "cloud_storage_azure_container_name", "cloud_storage_azure_tenant_id",
        "cloud_storage_azure_client_id", "cloud_storage_azure_client_secret"), delete=True),
    _params("cloud_storage_google", "18.0", "forget the Google storage account",
            ("cloud_storage_google_bucket_name", "cloud_storage_google_account_info"), delete=True),
    _clear("certificate", "18.0", "certificate passwords to a dummy", "certificate_certificate",
           {"pkcs12_password": "dummy"}),
    _clear("certificate", "18.0", "key passwords to a dummy", "certificate_key", {"password": "dummy"}),
    _clear("delivery_mondialrelay", "16.0-18.0", "Mondial Relay to its test brand", "delivery_carrier",
           {"mondialrelay_brand": "BDTEST  "}),
    _clear("sale_gelato", "18.0", "drop the Gelato keys", "res_company",
           {"gelato_api_key": None, "gelato_webhook_secret": None}),
    # calendar synchronisation tokens (the table moved between versions: both are covered)
    _clear("google_calendar", "16.0-17.0", "drop Google calendar tokens", "google_calendar_credentials",
           {"calendar_rtoken": None, "calendar_token": None, "synchronization_stopped": True}),
    _clear("google_calendar", "18.0", "drop Google calendar tokens", "res_users_settings",
           {"google_calendar_rtoken": None, "google_calendar_token": None, "google_synchronization_stopped": True}),
    _clear("microsoft_calendar", "16.0-18.0", "drop Microsoft tokens", "res_users",
           {"microsoft_calendar_token": None, "microsoft_calendar_rtoken": None,
            "microsoft_synchronization_stopped": True}),
    _clear("microsoft_calendar", "17.0", "stop Microsoft sync", "microsoft_calendar_credentials",
           {"calendar_sync_token": None, "synchronization_stopped": True, "last_sync_date": None}),
    _clear("microsoft_calendar", "18.0", "stop Microsoft sync", "res_users_settings",
           {"microsoft_calendar_sync_token": None, "microsoft_synchronization_stopped": True,
            "microsoft_last_sync_date": None}),
    # payment providers: every credential column of every provider module
    *(
        _clear(module, versions, "drop the provider's credentials", "payment_provider", dict.fromkeys(columns))
        for module, versions, columns in (
            ("payment_adyen", "16.0-18.0", ("adyen_merchant_account", "adyen_api_key", "adyen_hmac_key")),
            ("payment_alipay", "16.0-17.0",
             ("alipay_merchant_partner_id", "alipay_md5_signature_key", "alipay_seller_email")),
            ("payment_aps", "16.0-18.0",
             ("aps_merchant_identifier", "aps_access_code", "aps_sha_request", "aps_sha_response")),
            ("payment_asiapay", "16.0-18.0",
             ("asiapay_merchant_id", "asiapay_secure_hash_secret", "asiapay_secure_hash_function")),
            ("payment_authorize", "16.0-18.0",
             ("authorize_login", "authorize_transaction_key", "authorize_signature_key", "authorize_client_key")),
            ("payment_buckaroo", "16.0-18.0", ("buckaroo_website_key", "buckaroo_secret_key")),
            ("payment_flutterwave", "16.0-18.0",
             ("flutterwave_public_key", "flutterwave_secret_key", "flutterwave_webhook_secret")),
            ("payment_mercado_pago", "16.0-18.0", ("mercado_pago_access_token",)),
            ("payment_mollie", "16.0-18.0", ("mollie_api_key",)),
            ("payment_nuvei", "18.0", ("nuvei_merchant_identifier", "nuvei_site_identifier", "nuvei_secret_key")),
            ("payment_ogone", "16.0-17.0",
             ("ogone_pspid", "ogone_userid", "ogone_password", "ogone_shakey_in", "ogone_shakey_out")),
            ("payment_paypal", "16.0-18.0", ("paypal_email_account", "paypal_seller_account", "paypal_pdt_token",
                                             "paypal_client_id", "paypal_client_secret")),
            ("payment_payulatam", "16.0-17.0", ("payulatam_merchant_id", "payulatam_account_id", "payulatam_api_key")),
            ("payment_payumoney", "16.0-17.0", ("payumoney_merchant_key", "payumoney_merchant_salt")),
            ("payment_razorpay", "16.0-18.0", ("razorpay_key_id", "razorpay_key_secret", "razorpay_webhook_secret")),
            ("payment_razorpay_oauth", "17.0-18.0", ("razorpay_public_token", "razorpay_refresh_token",
                                                      "razorpay_access_token", "razorpay_access_token_expiry",
                                                      "razorpay_account_id")),
            ("payment_sips", "16.0-17.0", ("sips_merchant_id", "sips_secret")),
            ("payment_stripe", "16.0-18.0", ("stripe_secret_key", "stripe_publishable_key", "stripe_webhook_secret")),
            ("payment_worldline", "18.0", ("worldline_pspid", "worldline_api_key", "worldline_api_secret",
                                           "worldline_webhook_key", "worldline_webhook_secret")),
        )
    ),
    _clear("payment_xendit", "17.0-18.0", "Xendit keys to dummies", "payment_provider",
           {"xendit_secret_key": "dummysecret", "xendit_webhook_token": "dummytoken"}),
    # point of sale payment terminals
    _clear("pos_adyen", "16.0-18.0", "Adyen terminals to test mode", "pos_payment_method", {"adyen_test_mode": True}),
    _clear("pos_mercado_pago", "17.0-18.0", "Mercado Pago terminal tokens to dummies", "pos_payment_method",
           {"mp_bearer_token": "dummy_value", "mp_webhook_secret_key": "dummy_value"},
           where="mp_bearer_token IS NOT NULL"),
    _clear("pos_paytm", "17.0-18.0", "Paytm terminals to test mode, dummy key", "pos_payment_method",
           {"paytm_test_mode": True, "paytm_merchant_key": "dummykey00012345"}),
    _clear("pos_pine_labs", "18.0", "Pine Labs terminals to test mode, dummy credentials", "pos_payment_method",
           {"pine_labs_test_mode": True, "pine_labs_merchant": "dummymerchant",
            "pine_labs_security_token": "dummy123456"}),
    _clear("pos_razorpay", "17.0-18.0", "Razorpay terminals to test mode, dummy key", "pos_payment_method",
           {"razorpay_test_mode": True, "razorpay_api_key": "dummykey00012345"}),
    _clear("pos_viva_wallet", "17.0-18.0", "Viva Wallet terminals to test mode", "pos_payment_method",
           {"viva_wallet_test_mode": True}),
    # localisations: e-invoicing and tax authority connections of the companies
    _clear("l10n_eg_edi_eta", "16.0-18.0", "ETA out of production", "res_company",
           {"l10n_eg_production_env": False, "l10n_eg_client_secret": "dummy"}),
    _clear("l10n_es_edi_sii", "16.0-18.0", "SII to its test environment", "res_company",
           {"l10n_es_edi_test_env": True, "l10n_es_sii_test_env": True}),
    _clear("l10n_es_edi_tbai", "18.0", "TicketBAI to its test environment", "res_company",
           {"l10n_es_tbai_test_env": True}),
    _clear("l10n_hu_edi", "17.0-18.0", "NAV out of production, credentials blank", "res_company",
           {"l10n_hu_edi_server_mode": "test", "l10n_hu_edi_username": "", "l10n_hu_edi_password": "",
            "l10n_hu_edi_signature_key": "", "l10n_hu_edi_replacement_key": ""},
           where="l10n_hu_edi_server_mode = 'production'"),
    _clear("l10n_in", "18.0", "Indian e-invoicing out of production", "res_company",
           {"l10n_in_edi_production_env": False}),
    _clear("l10n_in_edi", "16.0-18.0", "Indian e-invoicing out of production, credentials dropped", "res_company",
           {"l10n_in_edi_production_env": False, "l10n_in_edi_username": None, "l10n_in_edi_password": None,
            "l10n_in_edi_token": None, "l10n_in_edi_token_validity": None}),
    _clear("l10n_in_edi_ewaybill", "16.0-18.0", "drop the e-way bill credentials", "res_company",
           {"l10n_in_edi_ewaybill_username": None, "l10n_in_edi_ewaybill_password": None,
            "l10n_in_edi_ewaybill_auth_validity": None}),
    _clear("l10n_jo_edi", "17.0-18.0", "JoFotara credentials to dummies", "res_company",
           {"l10n_jo_edi_secret_key": "dummy_secret", "l10n_jo_edi_client_identifier": "dummy_id"}),
    _clear("l10n_ke_edi_tremol", "16.0-18.0", "forget the Tremol control unit", "res_company",
           {"l10n_ke_cu_proxy_address": ""}),
    _clear("l10n_my_edi", "17.0-18.0", "MyInvois to pre-production", "res_company", {"l10n_my_edi_mode": "test"}),
    _clear("l10n_ro_efactura", "17.0", "e-Factura to test, tokens dropped", "res_company",
           {"l10n_ro_edi_test_env": True, "l10n_ro_edi_client_id": None, "l10n_ro_edi_client_secret": None,
            "l10n_ro_edi_access_token": None, "l10n_ro_edi_refresh_token": None}),
    _clear("l10n_ro_edi", "18.0", "e-Factura to test, tokens dropped", "res_company",
           {"l10n_ro_edi_test_env": True, "l10n_ro_edi_client_id": None, "l10n_ro_edi_client_secret": None,
            "l10n_ro_edi_access_token": None, "l10n_ro_edi_refresh_token": None}),
    _clear("l10n_rs_edi", "17.0-18.0", "eFaktura to demo, dummy key", "res_company",
           {"l10n_rs_edi_api_key": "dummy_key", "l10n_rs_edi_demo_env": True}),
    _clear("l10n_sa_edi", "16.0-18.0", "ZATCA to sandbox", "res_company", {"l10n_sa_api_mode": "sandbox"}),
    _clear("l10n_tr_nilvera", "17.0-18.0", "Nilvera to sandbox, key dropped", "res_company",
           {"l10n_tr_nilvera_api_key": None, "l10n_tr_nilvera_environment": "sandbox",
            "l10n_tr_nilvera_purchase_journal_id": None}),
    _clear("l10n_vn_edi_viettel", "17.0-18.0", "blank the Viettel credentials", "res_company",
           {"l10n_vn_edi_username": "", "l10n_vn_edi_password": ""}),
    # -- enterprise modules (guarded like the rest: they run only where the module is installed) ------------
    Rule(
        "account_online_synchronization",
        ENTERPRISE.format("account_online_synchronization") + ": unbind bank links",
        "account_online_link",
        "UPDATE account_online_link SET client_id = 'duplicate' WHERE client_id IS DISTINCT FROM 'duplicate'",
        needs=("account_online_link.client_id",),
    ),
    Rule(
        "account_online_synchronization",
        ENTERPRISE.format("account_online_synchronization") + ": provider data",
        "account_online_link",
        "UPDATE account_online_link SET provider_data = '' WHERE provider_data IS DISTINCT FROM ''",
        needs=("account_online_link.provider_data",),
    ),
    Rule(
        "social_facebook",
        ENTERPRISE.format("social_facebook") + ": drop Facebook tokens",
        "social_account",
        "UPDATE social_account SET facebook_account_id = NULL, facebook_access_token = NULL "
        "WHERE facebook_account_id IS NOT NULL OR facebook_access_token IS NOT NULL",
        needs=("social_account.facebook_account_id", "social_account.facebook_access_token"),
    ),
    Rule(
        "social_instagram",
        ENTERPRISE.format("social_instagram") + ": drop Instagram tokens",
        "social_account",
        "UPDATE social_account SET instagram_account_id = NULL, instagram_facebook_account_id = NULL, "
        "instagram_access_token = NULL WHERE instagram_account_id IS NOT NULL "
        "OR instagram_facebook_account_id IS NOT NULL OR instagram_access_token IS NOT NULL",
        needs=(
            "social_account.instagram_account_id",
            "social_account.instagram_facebook_account_id",
            "social_account.instagram_access_token",
        ),
    ),
    Rule(
        "social_linkedin",
        ENTERPRISE.format("social_linkedin") + ": drop LinkedIn tokens",
        "social_account",
        "UPDATE social_account SET linkedin_account_urn = NULL, linkedin_access_token = NULL "
        "WHERE linkedin_account_urn IS NOT NULL OR linkedin_access_token IS NOT NULL",
        needs=("social_account.linkedin_account_urn", "social_account.linkedin_access_token"),
    ),
    Rule(
        "social_twitter",
        ENTERPRISE.format("social_twitter") + ": drop X/Twitter tokens",
        "social_account",
        "UPDATE social_account SET twitter_user_id = NULL, twitter_oauth_token = NULL, "
        "twitter_oauth_token_secret = NULL WHERE twitter_user_id IS NOT NULL OR twitter_oauth_token IS NOT NULL "
        "OR twitter_oauth_token_secret IS NOT NULL",
        needs=(
            "social_account.twitter_user_id",
            "social_account.twitter_oauth_token",
            "social_account.twitter_oauth_token_secret",
        ),
    ),
    Rule(
        "social_youtube",
        ENTERPRISE.format("social_youtube") + ": drop YouTube tokens",
        "social_account",
        "UPDATE social_account SET youtube_channel_id = NULL, youtube_access_token = NULL, "
        "youtube_refresh_token = NULL, youtube_token_expiration_date = NULL, youtube_upload_playlist_id = NULL "
        "WHERE youtube_channel_id IS NOT NULL OR youtube_access_token IS NOT NULL "
        "OR youtube_refresh_token IS NOT NULL",
        needs=(
            "social_account.youtube_channel_id",
            "social_account.youtube_access_token",
            "social_account.youtube_refresh_token",
            "social_account.youtube_token_expiration_date",
            "social_account.youtube_upload_playlist_id",
        ),
    ),
    Rule(
        "social_push_notifications",
        ENTERPRISE.format("social_push_notifications") + ": unset Firebase",
        "website",
        "UPDATE website SET firebase_enable_push_notifications = false, firebase_use_own_account = false, "
        "firebase_project_id = NULL, firebase_web_api_key = NULL, firebase_push_certificate_key = NULL, "
        "firebase_sender_id = NULL WHERE firebase_enable_push_notifications OR firebase_use_own_account "
        "OR firebase_project_id IS NOT NULL OR firebase_web_api_key IS NOT NULL",
        needs=(
            "website.firebase_enable_push_notifications",
            "website.firebase_use_own_account",
            "website.firebase_project_id",
            "website.firebase_web_api_key",
            "website.firebase_push_certificate_key",
            "website.firebase_sender_id",
        ),
    ),
    Rule(
        "web_map",
        ENTERPRISE.format("web_map") + ": drop the MapBox token (valid per URL)",
        "ir_config_parameter",
        "DELETE FROM ir_config_parameter WHERE key = 'web_map.token_map_box'",
    ),
    # -- erpops' own ------------------------------------------------------------------------------------------
    Rule(
        None,
        "erpops: a copy must not present the production subscription code",
        "ir_config_parameter",
        "DELETE FROM ir_config_parameter WHERE key = 'database.enterprise_code'",
    ),
)


@dataclass(frozen=True)
class LiveCheck:
    """One kind of live item: `sql` returns one line of text per live row. Runs where `needs` exist."""

    needs: tuple[str, ...]
    sql: str


def _live_checks(schema: Schema) -> list[LiveCheck]:
    def name(table: str, column: str = "name") -> str:
        # Translatable names are jsonb from 16.0 on; show the English one.
        kind = schema.column_type(table, column)
        if kind is None:
            return "''"
        return f"coalesce({column}->>'en_US', {column}::text)" if kind == "jsonb" else f"{column}::text"

    cron_xmlid = (
        "coalesce((SELECT string_agg(d.module || '.' || d.name, ',') FROM ir_model_data d "
        "WHERE d.model = 'ir.cron' AND d.res_id = c.id), 'no xml id')"
    )
    return [
        LiveCheck(
            ("ir_mail_server.active", "ir_mail_server.smtp_host"),
            "SELECT format('ir_mail_server #%s %s (%s:%s) is active', id, "
            + name("ir_mail_server")
            + f", smtp_host, smtp_port) FROM ir_mail_server WHERE active "
            f"AND smtp_host IS DISTINCT FROM {quote_literal(MAIL_SINK_HOST)}",
        ),
        LiveCheck(
            ("fetchmail_server.active",),
            "SELECT format('fetchmail_server #%s %s (%s) is active', id, "
            + name("fetchmail_server")
            + ", server) FROM fetchmail_server WHERE active",
        ),
        LiveCheck(
            ("ir_cron.active", "ir_model_data"),
            "SELECT format('ir_cron #%s %s (%s) is active', c.id, "
            + cron_xmlid
            + ", "
            + name("ir_cron", "cron_name")
            + f") FROM ir_cron c WHERE c.active AND c.id NOT IN "
            f"({_ESSENTIAL_CRON_IDS})",
        ),
        LiveCheck(
            ("payment_provider.state",),
            "SELECT format('payment_provider #%s %s is enabled', id, "
            + name("payment_provider")
            + ") FROM payment_provider WHERE state = 'enabled'",
        ),
        LiveCheck(
            ("delivery_carrier.prod_environment",),
            "SELECT format('delivery_carrier #%s %s is in production mode', id, "
            + name("delivery_carrier")
            + ") FROM delivery_carrier WHERE prod_environment",
        ),
        LiveCheck(
            ("ir_act_server.webhook_url", "ir_act_server.state"),
            "SELECT format('ir_act_server #%s sends webhooks to %s', id, webhook_url) FROM ir_act_server "
            f"WHERE state = 'webhook' AND webhook_url IS DISTINCT FROM {quote_literal(WEBHOOK_SINK)}",
        ),
        LiveCheck(
            ("iap_account.account_token",),
            "SELECT format('iap_account #%s (%s) holds a live token', id, service_name) FROM iap_account "
            "WHERE account_token NOT LIKE '%+disabled'",
        ),
        LiveCheck(
            ("account_edi_proxy_client_user.edi_mode",),
            "SELECT format('account_edi_proxy_client_user #%s (%s) is in production mode', id, "
            + ("proxy_type" if schema.has("account_edi_proxy_client_user.proxy_type") else "''")
            + ") FROM account_edi_proxy_client_user WHERE edi_mode = 'prod'"
            + (" AND active" if schema.has("account_edi_proxy_client_user.active") else ""),
        ),
        *(
            [LiveCheck(
                ("account_edi_proxy_client_user",),
                "SELECT 'ir_config_parameter account_edi_proxy_client.demo is not true (16.0 EDI proxy live)' "
                "WHERE NOT EXISTS (SELECT 1 FROM ir_config_parameter WHERE key = 'account_edi_proxy_client.demo' "
                "AND lower(value) IN ('true', '1'))",
            )]
            # 16.0 has no per-user mode: one flag puts every EDI connection in demo mode
            if not schema.has("account_edi_proxy_client_user.edi_mode") else []
        ),
        LiveCheck(
            ("ir_config_parameter",),
            "SELECT 'ir_config_parameter database.enterprise_code is set' WHERE EXISTS (SELECT 1 "
            "FROM ir_config_parameter WHERE key = 'database.enterprise_code' AND coalesce(value, '') <> '')",
        ),
        LiveCheck(
            ("ir_config_parameter",),
            "SELECT 'ir_config_parameter database.is_neutralized is not true' WHERE NOT EXISTS (SELECT 1 "
            "FROM ir_config_parameter WHERE key = 'database.is_neutralized' "
            "AND lower(value) IN ('true', '1'))",
        ),
    ]


class Schema:
    """The tables and columns (with their types) of the public schema that erpops cares about."""

    def __init__(self, columns: dict[str, dict[str, str]]) -> None:
        self.columns = columns

    @classmethod
    def probe(cls, pg: Pg, db: str, tables: Iterable[str]) -> Schema:
        names = sorted(set(tables))
        array = "ARRAY[" + ", ".join(quote_literal(t) for t in names) + "]::text[]"
        out = pg.psql(
            "SELECT c.relname, a.attname, t.typname FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_type t ON t.oid = a.atttypid "
            f"WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
            f"AND c.relname = ANY({array})",
            db,
        )
        columns: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            table, column, kind = line.split("|")
            columns.setdefault(table, {})[column] = kind
        return cls(columns)

    def has(self, name: str) -> bool:
        table, _, column = name.partition(".")
        if table not in self.columns:
            return False
        return not column or column in self.columns[table]

    def column_type(self, table: str, column: str) -> str | None:
        return self.columns.get(table, {}).get(column)


def _tables_of(names: Iterable[str]) -> set[str]:
    return {n.partition(".")[0] for n in names}


def _probe(pg: Pg, db: str) -> Schema:
    if not pg.database_exists(db):
        raise UsageError(f"database {db!r} does not exist on {pg.host}:{pg.port}; check the name (psql -l)")
    tables = _tables_of(n for rule in RULES for n in rule.requirements())
    tables |= {"ir_module_module", "ir_config_parameter", "ir_cron", "ir_model_data", "ir_mail_server"}
    tables |= _tables_of(n for check in _live_checks(Schema({})) for n in check.needs)
    schema = Schema.probe(pg, db, tables)
    missing = [t for t in ("ir_module_module", "ir_config_parameter", "ir_cron") if not schema.has(t)]
    if missing:
        raise UsageError(
            f"database {db!r} is not an Odoo database (no {', '.join(missing)}); point erpops at the Odoo database"
        )
    return schema


def live_items(pg: Pg, db: str) -> list[str]:
    """What in `db` can still act on the outside world, one line each; [] once neutralized.

    Active mail servers (but Odoo's dummy `invalid` one), active fetchmail servers, active crons but
    the ones Odoo keeps (base.autovacuum_job), enabled payment providers, carriers in production
    mode, live webhooks, live IAP tokens, e-invoicing proxies in production, an enterprise code,
    a missing `database.is_neutralized`, and whatever a rule written as data would still change
    (OAuth providers, captcha keys, payment provider and terminal credentials, localisation
    e-invoicing credentials and modes, cloud storage, calendar tokens, ...). Checks whose tables
    are absent are skipped. No value is shown: only the table, the row and the column.
    """
    return _live_items(pg, db, _probe(pg, db))


def _live_items(pg: Pg, db: str, schema: Schema) -> list[str]:
    queries = [c.sql for c in _live_checks(schema) if all(schema.has(n) for n in c.needs)]
    # Every rule written as data proves itself too: each credential column of every payment
    # provider, OAuth provider, terminal, localisation, captcha key ... whose table exists.
    for rule in RULES:
        query = rule.live_sql(schema) if rule.from_data and rule.applies(schema) else None
        if query and query not in queries:
            queries.append(query)
    if not queries:
        return []
    sql = "\nUNION ALL\n".join(f"({q})" for q in queries)
    out = pg.psql(f"SELECT line FROM ({sql}) AS live(line) ORDER BY 1", db)
    return [line for line in out.splitlines() if line.strip()]


def read_identity(pg: Pg, db: str) -> dict[str, str | None]:
    """database.uuid and database.secret as stored (None where missing)."""
    keys = ", ".join(quote_literal(k) for k in IDENTITY_KEYS)
    out = pg.psql(f"SELECT key, value FROM ir_config_parameter WHERE key IN ({keys})", db)
    found = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    return {key: found.get(key) for key in IDENTITY_KEYS}


def new_identity() -> dict[str, str]:
    """Fresh values for database.uuid and database.secret (both uuid4, the form Odoo reads)."""
    return {"database.uuid": str(uuid.uuid4()), "database.secret": str(uuid.uuid4())}


def identity_sql(values: dict[str, str]) -> str:
    """Statements that set ir_config_parameter keys to values (insert or overwrite)."""
    return "\n".join(
        "INSERT INTO ir_config_parameter (key, value) "
        f"VALUES ({quote_literal(key)}, {quote_literal(value)}) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;"
        for key, value in values.items()
    )


def applicable_rules(installed: set[str], schema: Schema, skip: Iterable[str] = ()) -> list[Rule]:
    """The rules that run on a database with these installed modules and this schema, in order.

    A rule runs where every table and column it needs exists and its module is installed; a rule
    written as data also where its module is not (what it clears is still there). Modules in
    `skip` are left to their own neutralize.sql (Odoo's addons given).
    """
    skipped = set(skip)
    return [
        rule
        for rule in RULES
        if rule.applies(schema)
        and (rule.module is None or rule.module in installed or rule.from_data)
        and rule.module not in skipped
    ]


def uncovered_modules(installed: set[str], schema: Schema, covered: Iterable[str] = ()) -> list[str]:
    """Installed modules known to ship a data/neutralize.sql for which no erpops rule applies here.

    `covered`: modules whose own file runs (found in the addons path). A listed module is also
    uncovered when its tables or columns are not the ones erpops knows (another Odoo version).
    """
    done = set(covered)
    return sorted(
        m for m in installed & KNOWN_NEUTRALIZE
        if m not in done and not any(r.module == m and r.applies(schema) for r in RULES)
    )


def parse_addons_path(values: Iterable[str]) -> list[Path]:
    """--addons-path values, each one directory or a comma-separated list as Odoo's own option."""
    return [Path(part.strip()) for value in values for part in value.split(",") if part.strip()]


def odoo_addons_files(addons_path: Sequence[Path | str], modules: Iterable[str]) -> tuple[list[Rule], set[str]]:
    """Odoo's own neutralize files of `modules`, found as Odoo finds a module: in the first addons
    directory holding it. Returns one Rule per file (in module order) and the modules found at all
    (with or without a file: a module without one has nothing to neutralize in that version).
    """
    paths = [Path(p) for p in addons_path]
    for path in paths:
        if not path.is_dir():
            raise UsageError(f"--addons-path: {path} is not a directory; give Odoo's addons directories "
                             "(e.g. /usr/lib/python3/dist-packages/odoo/addons,/mnt/extra-addons)")
    if not any((p / "base" / "__manifest__.py").is_file() for p in paths):
        raise UsageError(f"--addons-path: no base module in {', '.join(map(str, paths))}; include Odoo's "
                         "odoo/addons directory (where base lives) and its addons directory")
    rules: list[Rule] = []
    found: set[str] = set()
    for module in sorted(modules):
        home = next((p / module for p in paths if (p / module / "__manifest__.py").is_file()), None)
        if home is None:
            continue
        found.add(module)
        sql_file = home / "data" / "neutralize.sql"
        if not sql_file.is_file():
            continue
        text = sql_file.read_text(encoding="utf-8").strip()
        if any(line.lstrip().startswith("\\") for line in text.splitlines()):
            raise UsageError(f"{sql_file}: a line starts with a backslash (a psql meta-command); "
                             "erpops runs neutralize files as plain SQL only")
        if text:
            rules.append(Rule(module, str(sql_file), f"{module}/data/neutralize.sql", text, file=True))
    return rules, found


def _installed_modules(pg: Pg, db: str) -> set[str]:
    states = ", ".join(quote_literal(s) for s in INSTALLED_STATES)
    out = pg.psql(f"SELECT name FROM ir_module_module WHERE state IN ({states})", db)
    return {line.strip() for line in out.splitlines() if line.strip()}


_TAG = re.compile(r"^(?:UPDATE|DELETE) (\d+)$|^INSERT \d+ (\d+)$")
_ERROR_LINE = re.compile(r"<stdin>:(\d+): ERROR")


def _script(rules: list[Rule], identity: dict[str, str], schema: Schema) -> tuple[str, list[int]]:
    """The psql script: a marker line echoed before each rule, so each rule's row count can be read.

    Returns the script and the line on which each rule starts (to name the rule a failure came from).
    """
    lines = ["SET LOCAL lock_timeout = '60s';"]
    starts: list[int] = []
    for i, rule in enumerate(rules):
        lines.append(f"\\echo @@{i}")
        starts.append(sum(entry.count("\n") + 1 for entry in lines) + 1)  # a file spans several lines
        if rule.counts_before:
            lines.append(f"SELECT count(*) FROM {rule.table};")
        # A file's last statement may lack its ';' (Odoo joins them with cursor.execute).
        lines.append(rule.render(schema).strip().rstrip(";") + ";" if not rule.file else rule.sql + "\n;")
    lines.append("\\echo @@identity")
    lines.append(identity_sql(identity))
    return "\n".join(lines) + "\n", starts


def _row_counts(out: str, rules: list[Rule]) -> list[int]:
    sections: dict[int, list[str]] = {}
    current: int | None = None
    for line in out.splitlines():
        if line.startswith("@@"):
            current = int(line[2:]) if line[2:].isdigit() else None
            continue
        if current is not None:
            sections.setdefault(current, []).append(line.strip())
    counts = []
    for i, rule in enumerate(rules):
        lines = sections.get(i, [])
        rows = 0
        if rule.counts_before:
            rows = next((int(x) for x in lines if x.isdigit()), 0)
        else:
            for line in lines:  # a file may hold several statements: their rows add up
                match = _TAG.match(line)
                if match:
                    rows += int(match.group(1) or match.group(2))
        counts.append(rows)
    return counts


def _run_in_one_transaction(pg: Pg, db: str, script: str, starts: list[int], rules: list[Rule]) -> str:
    argv = [client_bin("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", db, "-f", "-"]
    try:
        proc = subprocess.run(
            argv, input=script, capture_output=True, text=True, env=pg.env(), timeout=600, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise OperationFailed(f"neutralize {db}: did not finish within 600 s; rolled back, nothing changed") from exc
    if proc.returncode == 0:
        return proc.stdout
    err = "\n".join(line for line in proc.stderr.strip().splitlines() if ": NOTICE: " not in line)
    where = ""
    match = _ERROR_LINE.search(err)
    if match:
        line = int(match.group(1))
        failed = [rule for start, rule in zip(starts, rules, strict=True) if start <= line]
        if failed:
            where = f" in the rule from {failed[-1].source}"
    if proc.returncode == 2 or "could not connect" in err or "connection to server" in err:
        raise ServiceError(f"neutralize {db}: cannot reach PostgreSQL at {pg.host}:{pg.port}: {err}")
    raise OperationFailed(f"neutralize {db}: a statement failed{where}; rolled back, nothing changed:\n{err}")


class NeutralizationIncomplete(OperationFailed):
    """Neutralization committed, yet something can still act on the outside: never start Odoo on it."""

    def __init__(self, db: str, remaining: list[str], report: dict) -> None:
        self.db = db
        self.remaining = remaining
        self.report = report
        lines = "\n".join(f"  - {item}" for item in remaining)
        super().__init__(
            f"neutralize {db}: {len(remaining)} live item{'s' if len(remaining) != 1 else ''} remain after "
            f"neutralization; do not start Odoo on this database until they are gone "
            f"(a trigger, a custom module or a concurrent session re-enabled them?):\n{lines}"
        )


class NeutralizationUncovered(OperationFailed):
    """Installed modules ship a neutralize file that neither erpops' rules nor Odoo's addons cover."""

    def __init__(self, db: str, modules: list[str]) -> None:
        self.db = db
        self.modules = modules
        names = ", ".join(modules)
        super().__init__(
            f"neutralize {db}: installed module(s) {names}: each ships "
            "a data/neutralize.sql that erpops has no rule for (nothing was changed). Give Odoo's addons "
            "(--addons-path, Enterprise included) so their own files run, or accept each by name: "
            + " ".join(f"--allow-unneutralized {m}" for m in modules)
        )


def neutralize(
    pg: Pg,
    db: str,
    *,
    addons_path: Sequence[Path | str] | None = None,
    allow_unneutralized: Iterable[str] = (),
) -> dict:
    """Neutralize `db` like Odoo 16.0-18.0 does, rotate its identity, and prove nothing live remains.

    addons_path: Odoo's addons directories; then each installed module's own data/neutralize.sql
    runs, read from there as `odoo-bin neutralize` does, and erpops' rules only for the modules not
    found there. Without it, erpops' rules run.
    allow_unneutralized: modules accepted as not covered (else NeutralizationUncovered, before
    anything changes).

    Returns {db, mode, modules_applied, odoo_files, not_in_addons_path, statements,
    changed: {table: rows}, remaining: [], uncovered_allowed, uuid_changed, secret_changed,
    is_neutralized, uuid, kept_crons}. Raises UsageError when db is missing or not Odoo,
    NeutralizationUncovered, OperationFailed when a statement fails (rolled back, nothing changed)
    or when, after the commit, anything live remains (listed in the message and in `exc.remaining`).
    """
    schema = _probe(pg, db)
    installed = _installed_modules(pg, db)
    file_rules: list[Rule] = []
    found: set[str] = set()
    if addons_path:
        file_rules, found = odoo_addons_files(addons_path, installed)
    uncovered = uncovered_modules(installed, schema, found)
    allowed = set(allow_unneutralized)
    refused = [m for m in uncovered if m not in allowed]
    if refused:
        raise NeutralizationUncovered(db, refused)
    rules = file_rules + applicable_rules(installed, schema, skip=found)
    before = read_identity(pg, db)
    identity = new_identity()
    script, starts = _script(rules, identity, schema)
    out = _run_in_one_transaction(pg, db, script, starts, rules)
    counts = _row_counts(out, rules)

    statements = [
        {"module": rule.module or "erpops", "source": rule.source, "table": rule.table, "rows": rows}
        for rule, rows in zip(rules, counts, strict=True)
    ]
    changed: dict[str, int] = {}
    for st in statements:
        changed[st["table"]] = changed.get(st["table"], 0) + st["rows"]

    # Verification, in its own query after the commit: what any other session now sees.
    remaining = _live_items(pg, db, schema)
    after = read_identity(pg, db)
    uuid_changed = after["database.uuid"] == identity["database.uuid"] != before["database.uuid"]
    secret_changed = after["database.secret"] == identity["database.secret"] != before["database.secret"]
    if not uuid_changed:
        remaining.append("ir_config_parameter database.uuid was not replaced")
    if not secret_changed:
        remaining.append("ir_config_parameter database.secret was not replaced")
    report = {
        "db": db,
        "mode": "odoo-addons" if addons_path else "erpops-rules",
        "modules_applied": sorted({rule.module for rule in rules if rule.module and rule.module in installed}),
        "odoo_files": [rule.source for rule in file_rules],
        # With --addons-path: installed modules not found there (erpops' rules stood in where it has one).
        "not_in_addons_path": sorted(installed - found) if addons_path else [],
        "statements": statements,
        "changed": changed,
        "remaining": remaining,
        "uncovered_allowed": [m for m in uncovered if m in allowed],
        "uuid_changed": uuid_changed,
        "secret_changed": secret_changed,
        "is_neutralized": not any("is_neutralized" in item for item in remaining),
        "uuid": after["database.uuid"],
        "kept_crons": [f"{m}.{n}" for m, n in ESSENTIAL_CRONS],
    }
    if remaining:
        raise NeutralizationIncomplete(db, remaining, report)
    return report


def neutralize_or_drop(
    pg: Pg,
    db: str,
    filestore_dir: Path | None,
    *,
    addons_path: Sequence[Path | str] | None = None,
    allow_unneutralized: Iterable[str] = (),
) -> dict:
    """Neutralize a database just created from an import; on any failure drop it (and its filestore).

    As Odoo's restore with neutralize: the copy either comes out neutralized or not at all.
    """

    try:
        return neutralize(pg, db, addons_path=addons_path, allow_unneutralized=allow_unneutralized)
    except BaseException as exc:
        pg.drop_database(db)
        if filestore_dir is not None:
            shutil.rmtree(filestore_dir, ignore_errors=True)
        exc.add_note(f"the imported database {db} and its filestore were removed")
        raise
