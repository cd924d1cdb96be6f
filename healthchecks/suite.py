"""Which checks run for a set of targets."""

from __future__ import annotations

from healthchecks import host, odoo, patch, postgres, redis, s3
from healthchecks.core import Check, Targets


def checks_for(targets: Targets) -> list[Check]:
    """Only the checks whose target was given; Odoo-database checks need the Odoo database."""
    checks: list[Check] = []
    if targets.odoo_url:
        checks += odoo.CHECKS
        if targets.odoo_db and targets.odoo_login and targets.odoo_password:
            checks.append(odoo.CALL_KW)
    if targets.pg is not None:
        checks += postgres.CHECKS
        if targets.odoo_db:
            checks += postgres.ODOO_DB_CHECKS
    if targets.redis_url or targets.redis_sentinels:
        checks += redis.CHECKS
    if targets.s3_bucket:
        checks += s3.CHECKS
    if targets.host:
        checks += host.CHECKS
    if targets.patch_state_dir:
        checks += patch.CHECKS
    return checks


def all_names() -> list[str]:
    return [c.name for c in (*odoo.CHECKS, odoo.CALL_KW, *postgres.CHECKS, *postgres.ODOO_DB_CHECKS,
                             *redis.CHECKS, *s3.CHECKS, *host.CHECKS, *patch.CHECKS)]
