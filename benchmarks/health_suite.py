"""How fast `erpops health` answers against healthy local services, warm and as a cold process.

Starts real PostgreSQL 15, Redis and S3 (moto) on loopback plus the tests' Odoo double, stores one
fresh backup set, then times the whole check suite in this process (the first run creates the
boto3 client) and as a fresh `python -m healthchecks` (interpreter and imports included), as cron
or a Nagios agent runs it.

    .venv/bin/python benchmarks/health_suite.py [--rounds 3]

Target: the suite within 1 s, so that a 10 s Nagios/cron timeout never cuts it off. Timings
depend on the machine's load: the test suite asserts only the outcomes, this script prints speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpops.local import LocalPostgres, LocalRedis, LocalS3  # noqa: E402
from erpops.pg import Pg  # noqa: E402
from healthchecks.core import Targets, Thresholds, run_checks  # noqa: E402
from healthchecks.suite import checks_for  # noqa: E402
from tests.integration.test_health_odoo import FakeOdoo  # noqa: E402

TARGET_SECONDS = 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with LocalPostgres() as pg, LocalRedis() as redis, LocalS3() as s3, FakeOdoo() as odoo, \
            tempfile.TemporaryDirectory() as data:
        os.environ.update(s3.env())
        client = s3.client()
        client.create_bucket(Bucket="bench-health")
        created = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        client.put_object(Bucket="bench-health", Key="prod/sets/fresh/db.dump", Body=b"x")
        client.put_object(Bucket="bench-health", Key="prod/sets/fresh/manifest.json",
                          Body=json.dumps({"erpops": {"created_at": created}}).encode())
        server = Pg.from_local(pg)
        targets = Targets(odoo_url=odoo.url, pg=server, redis_url=redis.url, s3_endpoint=s3.endpoint_url,
                          s3_bucket="bench-health", s3_prefix="prod", s3_region=s3.region, data_paths=[data])
        checks = checks_for(targets)
        warm = []
        for _ in range(args.rounds):
            t0 = time.monotonic()
            run_checks(checks, targets, Thresholds.defaults())
            warm.append(time.monotonic() - t0)
        argv = [sys.executable, "-m", "healthchecks", "--json", "--pg-host", server.host, "--pg-port",
                str(server.port), "--redis-url", redis.url, "--s3-endpoint", s3.endpoint_url,
                "--s3-bucket", "bench-health", "--s3-prefix", "prod", "--odoo-url", odoo.url, "--data-path", data]
        cold_suite, cold_process = [], []
        for _ in range(args.rounds):
            t0 = time.monotonic()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
            cold_process.append(time.monotonic() - t0)
            cold_suite.append(json.loads(done.stdout)["elapsed_seconds"])
    print(f"{len(checks)} checks, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'measure':<34} {'median':>8} {'max':>8} {'target':>8}")
    for name, values in (("suite, warm process", warm[1:] or warm), ("suite, first run (boto3 client)", warm[:1]),
                         ("suite, cold process", cold_suite), ("cold process incl. imports", cold_process)):
        print(f"{name:<34} {statistics.median(values):>7.3f}s {max(values):>7.3f}s {TARGET_SECONDS:>7.1f}s")


if __name__ == "__main__":
    main()
