"""The drill's Odoo login pieces without servers: the hash Odoo stores, the double's check of it, the dbfilter.

passlib is what Odoo itself verifies passwords with (res_users._crypt_context: CryptContext(['pbkdf2_sha512',
'plaintext'], deprecated=['auto'], pbkdf2_sha512__rounds=max(MIN_ROUNDS, ...))): it is the positive control for
both the hash the drill writes and the double's reading of it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from passlib.context import CryptContext

from erpops.backup.drill import ODOO_HASH_ROUNDS, drill_db_name, drill_db_pattern, odoo_password_hash
from loadtests.testing.odoo_double import OdooDouble

# Odoo 17.0's context, with its MIN_ROUNDS floor
ODOO_CONTEXT = CryptContext(["pbkdf2_sha512", "plaintext"], deprecated=["auto"],
                            pbkdf2_sha512__rounds=ODOO_HASH_ROUNDS)
FAST = 1000  # rounds for the cases that are about the format, not the cost


def test_odoo_verifies_the_hash_the_drill_stores() -> None:
    stored = odoo_password_hash("one-time-Secret+/=")
    assert re.fullmatch(r"\$pbkdf2-sha512\$600000\$[./A-Za-z0-9]{22}\$[./A-Za-z0-9]{86}", stored)
    valid, replacement = ODOO_CONTEXT.verify_and_update("one-time-Secret+/=", stored)
    assert valid and replacement is None  # at Odoo's rounds: no rehash on the login
    assert not ODOO_CONTEXT.verify("another", stored)


@pytest.mark.parametrize("salt", [bytes(16), b"\xfb\xff" * 8, bytes(range(16))], ids=["zeros", "plus-slash", "seq"])
def test_the_salt_and_checksum_use_passlibs_alphabet(salt: bytes) -> None:
    """'+' becomes '.', no padding: the salts that give '+' and '/' in standard base64 are the ones that tell."""
    stored = odoo_password_hash("pw", rounds=FAST, salt=salt)
    assert "+" not in stored and "=" not in stored
    assert CryptContext(["pbkdf2_sha512"]).verify("pw", stored)


def test_the_double_verifies_what_passlib_stores() -> None:
    stored = CryptContext(["pbkdf2_sha512"], pbkdf2_sha512__rounds=FAST).hash("s3cret")
    assert OdooDouble.verify_password("s3cret", stored)
    assert not OdooDouble.verify_password("s3cre", stored)
    assert not OdooDouble.verify_password("", stored) and not OdooDouble.verify_password("s3cret", "")
    assert OdooDouble.verify_password("legacy", "legacy")  # Odoo's context still verifies a plaintext value
    assert not OdooDouble.verify_password("s3cret", "$pbkdf2-sha256$1000$abc$def")
    assert not OdooDouble.verify_password("s3cret", "$pbkdf2-sha512$x$abc$def")


@pytest.mark.parametrize("live", ["odoo_prod", "a" * 63, "db.with.dots"])
def test_the_sidecars_dbfilter_admits_the_scratch_databases_only(live: str) -> None:
    when = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    pattern = drill_db_pattern(live)
    assert re.match(pattern, drill_db_name(live, when))  # Odoo's dbfilter is re.match
    assert not re.match(pattern, live) and not re.match(pattern, drill_db_name(live, when) + "x")
    assert not re.match(pattern, "other" + drill_db_name(live, when))


def test_the_drill_defaults_to_the_sidecar_the_cronjob_runs() -> None:
    from erpops.backup.drill import DEFAULT_ODOO_URL
    from infra import derive

    assert DEFAULT_ODOO_URL == derive.DRILL_ODOO_URL == f"http://127.0.0.1:{derive.DRILL_ODOO_PORT}"
