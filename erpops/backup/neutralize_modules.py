"""Which Odoo modules ship a `data/neutralize.sql`: a fact per version, recorded here once.

`odoo-bin neutralize` (odoo/modules/neutralize.py) runs `<module>/data/neutralize.sql` of every
installed module that has one. erpops must know which modules those are to tell, without Odoo's
addons at hand, whether its own rules (erpops/backup/neutralize.py) cover a database: a module
listed here that is installed and for which no erpops rule applies is "not covered", and
neutralization refuses to report success for it unless the operator accepts it by name
(`--allow-unneutralized MODULE`) or gives Odoo's addons (`--addons-path`) so the module's own file
runs. tests/unit/test_neutralize_coverage.py fails when a module listed here has no rule.

How the lists were obtained (2026-12-03). The odoo/odoo repository is too large to fetch whole
here, so each list was read from the file tree of a public, unmodified copy of the Community
edition of that series (`git ls-tree -r HEAD | grep '/data/neutralize.sql$'`), and the paths were
checked against the odoo/odoo index (e.g. addons/google_recaptcha, addons/website_cf_turnstile):

- 16.0: the packaged 16.0 nightly `odoo 16.0.post20230301` (github Martel-IT/odoo-16-core,
  commit 50f9c1b4b48c): 37 modules. Later 16.0 nightlies may have added a few (the 17.0 and 18.0
  lists below are covered by rules too, so a module backported to 16.0 is still covered).
- 17.0: a 17.0 source tree of 2025-04 (github nguyenmanhdat006/quan_ly_kho_odoo, commit
  8bd33260660d, release.py 17.0 FINAL): 52 modules, the count a real Odoo 17.0 CE shows.
- 18.0: the packaged nightly `odoo 18.0.post20250506` (github ManuelGil/dockerized-odoo-18,
  commit 350b3b290085, odoo/addons): 57 modules.

Checked again against the official odoo/odoo repository (2026-12-07, the search index of public
GitHub code): the whole repository cannot be brought here (a 19.4 GB snapshot, 0.5 GB the most), and
the index holds file versions without their branch, so a path found there is in some version of
odoo/odoo, not known to be in a given series. Found there: `addons/<m>/data/neutralize.sql` for
payment_stripe, payment_razorpay_oauth, payment_nuvei, payment_worldline, pos_paytm, pos_pine_labs,
certificate, sale_gelato, l10n_in, l10n_ro_edi, website_event_jitsi. Not in the index (which is not
complete, so not a proof that the file is absent): l10n_ro_efactura (17.0 list) and payment_alipay
(16.0 and 17.0 lists). The per-series lists above therefore still rest on the Community snapshots.

ENTERPRISE_18 lists Enterprise modules seen with a `data/neutralize.sql` in a public tree that
mixes the 18.0 Enterprise addons into Community (github AhmedElarabyy/odoo-18, commit c7678f850974):
names only, as a fact for the coverage check; erpops has rules for a few of them and treats the
others as not covered unless Odoo's addons (Enterprise included) are given.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


ODOO_CE: dict[str, frozenset[str]] = {
    "16.0": _names(
        """
        account_edi_proxy_client auth_oauth base delivery delivery_mondialrelay google_calendar iap
        l10n_eg_edi_eta l10n_es_edi_sii l10n_in_edi l10n_in_edi_ewaybill l10n_ke_edi_tremol l10n_sa_edi
        mail microsoft_calendar payment payment_adyen payment_alipay payment_aps payment_asiapay
        payment_authorize payment_buckaroo payment_flutterwave payment_mercado_pago payment_mollie
        payment_ogone payment_paypal payment_payulatam payment_payumoney payment_razorpay payment_sips
        payment_stripe pos_adyen web website website_event_jitsi website_sale_autocomplete
        """
    ),
    "17.0": _names(
        """
        account_edi_proxy_client auth_oauth base delivery delivery_mondialrelay google_calendar
        google_recaptcha iap l10n_eg_edi_eta l10n_es_edi_sii l10n_hu_edi l10n_in_edi l10n_in_edi_ewaybill
        l10n_jo_edi l10n_ke_edi_tremol l10n_my_edi l10n_ro_efactura l10n_rs_edi l10n_sa_edi
        l10n_tr_nilvera l10n_vn_edi_viettel mail microsoft_calendar payment payment_adyen payment_alipay
        payment_aps payment_asiapay payment_authorize payment_buckaroo payment_flutterwave
        payment_mercado_pago payment_mollie payment_ogone payment_paypal payment_payulatam
        payment_payumoney payment_razorpay payment_razorpay_oauth payment_sips payment_stripe
        payment_xendit pos_adyen pos_mercado_pago pos_paytm pos_razorpay pos_viva_wallet web website
        website_cf_turnstile website_event_jitsi website_sale_autocomplete
        """
    ),
    "18.0": _names(
        """
        account_edi_proxy_client auth_oauth base certificate cloud_storage cloud_storage_azure
        cloud_storage_google delivery delivery_mondialrelay google_calendar google_recaptcha iap
        l10n_eg_edi_eta l10n_es_edi_sii l10n_es_edi_tbai l10n_hu_edi l10n_in l10n_in_edi
        l10n_in_edi_ewaybill l10n_jo_edi l10n_ke_edi_tremol l10n_my_edi l10n_ro_edi l10n_rs_edi
        l10n_sa_edi l10n_tr_nilvera l10n_vn_edi_viettel mail microsoft_calendar payment payment_adyen
        payment_aps payment_asiapay payment_authorize payment_buckaroo payment_flutterwave
        payment_mercado_pago payment_mollie payment_nuvei payment_paypal payment_razorpay
        payment_razorpay_oauth payment_stripe payment_worldline payment_xendit pos_adyen
        pos_mercado_pago pos_paytm pos_pine_labs pos_razorpay pos_viva_wallet sale_gelato web website
        website_cf_turnstile website_event_jitsi website_sale_autocomplete
        """
    ),
}

ENTERPRISE_18: frozenset[str] = _names(
    """
    account_avatax account_online_synchronization delivery_bpost delivery_dhl delivery_easypost
    delivery_envia delivery_fedex delivery_fedex_rest delivery_sendcloud delivery_shiprocket
    delivery_starshipit delivery_ups delivery_ups_rest delivery_usps delivery_usps_rest
    hr_recruitment_integration_monster iap_extract l10n_ar_edi l10n_be_codabox l10n_be_hr_payroll
    l10n_br_avatax l10n_cl_edi l10n_co_dian l10n_co_edi l10n_de_pos_cert l10n_ec_edi l10n_employment_hero
    l10n_ke_edi_oscu l10n_mx_edi l10n_pe_edi l10n_pe_edi_stock l10n_uk_hmrc l10n_uk_reports l10n_uy_edi
    mail_mobile pos_pricer pos_tyro pos_urban_piper product_barcodelookup sale_amazon sale_shopee
    social_facebook social_instagram social_linkedin social_push_notifications social_twitter
    social_youtube voip web_map whatsapp
    """
)

# Every Community module of 16.0-18.0 with a neutralize file: erpops has a rule for each.
ODOO_CE_ALL: frozenset[str] = frozenset().union(*ODOO_CE.values())
# Every module known to ship one (Community and Enterprise): installed and without an applicable
# erpops rule means "not covered".
KNOWN: frozenset[str] = ODOO_CE_ALL | ENTERPRISE_18
