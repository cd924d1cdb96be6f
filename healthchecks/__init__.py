"""Health checks for an erpops stack: Odoo, PostgreSQL, Redis, S3 backups and the host.

Every check has warn/crit thresholds (from the stack spec's `health` section, or defaults),
its own timeout, and answers one Result: OK, WARN, CRIT or UNKNOWN with a message and metrics.
A check that cannot run (timeout, refused connection, missing permission) is UNKNOWN, never OK.
"""

from healthchecks.core import Check, Result, State, Targets, Thresholds, run_checks, worst

__all__ = ["Check", "Result", "State", "Targets", "Thresholds", "run_checks", "worst"]
