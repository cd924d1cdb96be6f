"""The load-test CLI imports neither Locust nor gevent, checked in a fresh interpreter.

`import locust` monkey-patches threading with gevent, which deadlocks Pulumi/grpc code in the same
process: only the runner subprocess may import it. A child process is the only clean slate to check
this in, so the test lives in the tool tier (the stats and the gate are in tests/unit/test_loadtest_stats.py).
"""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_does_not_import_locust_or_gevent() -> None:
    code = ("import sys, erpops.cli, loadtests.cli, loadtests.stats, loadtests.report, loadtests.testing.odoo_double;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'));"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
