"""The health checks as the core asks for them (erpops.plugins.HealthProbe): `erpops patch` gates on them,
`erpops rehearse` and `erpops drill` check the restored copy with them.

Registered as the `health` provider (pyproject.toml, entry points `erpops.providers`): erpops never
imports this package, it receives this function.
"""

from __future__ import annotations

from erpops.plugins import HealthFinding, HealthRequest
from healthchecks.core import State, Targets, Thresholds, run_checks
from healthchecks.suite import checks_for


def probe(request: HealthRequest) -> list[HealthFinding]:
    """The selected checks among those that apply to the request's targets; OK and WARN pass."""
    targets = Targets(odoo_url=request.odoo_url, odoo_db=request.odoo_db, pg=request.pg, pg_db=request.pg_db,
                      host=False)
    checks = [c for c in checks_for(targets) if request.selected(c.name)]
    if not checks:
        return []
    thresholds = Thresholds.from_sized(request.sized) if request.sized is not None else Thresholds.defaults()
    return [HealthFinding(check=r.check, state=r.state.name, passed=r.state in (State.OK, State.WARN),
                          message=r.message, metrics=dict(r.metrics or {}))
            for r in run_checks(checks, targets, thresholds)]
