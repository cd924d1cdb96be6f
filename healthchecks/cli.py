"""`erpops health`: run the checks, print a table (or JSON), write a textfile, exit like Nagios.

Exit code: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN - the worst state, where a CRIT outranks an
UNKNOWN (a check that could not look must not hide one that saw a failure). Bad flags or an
invalid spec also exit 3: to a monitoring system the health is then unknown.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import click
from rich.console import Console

from erpops.errors import ErpopsError
from erpops.naming import stack_backup_target
from erpops.pg import Pg
from healthchecks import output
from healthchecks.core import State, Targets, Thresholds, run_checks, worst
from healthchecks.suite import all_names, checks_for


def _exit(state: State) -> NoReturn:
    # sys.exit, not ctx.exit: erpops runs click with standalone_mode=False, where ctx.exit's code
    # would be returned to a caller that ignores it and every run would exit 0.
    sys.exit(int(state))


def _thresholds(stack: str | None, root: Path | None) -> tuple[Thresholds, object | None]:
    if not stack:
        return Thresholds.defaults(), None
    from erpops import spec

    sized = spec.load(stack, root)
    return Thresholds.from_sized(sized), sized


@click.command("health")
@click.option("--stack", "-s", default=None,
              help="Take thresholds, RPO, Odoo version and bucket from this stack's spec.")
@click.option("--odoo-url", envvar="ERPOPS_ODOO_URL", default=None, help="Odoo base URL, e.g. https://erp.example.com.")
@click.option("--odoo-db", default=None, help="Odoo database: enables the cron, mail and call_kw checks.")
@click.option("--odoo-login", default=None, help="Login for the call_kw round trip (password: ERPOPS_ODOO_PASSWORD).")
@click.option("--pg-host", envvar="PGHOST", default=None, help="PostgreSQL host (default: PGHOST; none skips PG).")
@click.option("--pg-port", envvar="PGPORT", default=5432, type=int, show_default=True)
@click.option("--pg-user", envvar="PGUSER", default="postgres", show_default=True)
@click.option("--pg-db", envvar="PGDATABASE", default=None,
              help="Database to connect to (default: --odoo-db or postgres).")
@click.option("--redis-url", envvar="REDIS_URL", default=None,
              help="redis://[[user]:password@]host:port/db, rediss:// for TLS (with Sentinel: password, db, TLS only).")
@click.option("--redis-ca-file", envvar="REDIS_CA_FILE", default=None, type=click.Path(dir_okay=False, exists=True),
              help="CA bundle of the Redis server's TLS certificate (implies TLS).")
@click.option("--redis-sentinel", "redis_sentinels", multiple=True, metavar="HOST:PORT",
              help="Reach Redis through this Sentinel (repeatable): the sentinels name the master.")
@click.option("--redis-sentinel-master", default=None,
              help="The master's name at the sentinels (default: mymaster).")
@click.option("--s3-endpoint", envvar="AWS_ENDPOINT_URL_S3", default=None, help="S3 endpoint (default: AWS).")
@click.option("--s3-bucket", default=None,
              help="Backup bucket (default: from $ERPOPS_BACKUP_TARGET, else the stack's backup_bucket).")
@click.option("--s3-prefix", default=None,
              help="Prefix holding sets/<id>/manifest.json (default: as the backup engine, the stack name).")
@click.option("--data-path", "data_paths", multiple=True, type=click.Path(),
              help="Path whose free space to check (repeatable).")
@click.option("--no-host", is_flag=True, help="Skip the host checks (CPU, memory, disk, load).")
@click.option("--check", "-c", "only", multiple=True, help="Run only checks whose name starts with this (repeatable).")
@click.option("--timeout", type=float, default=None,
              help="Per-check timeout in seconds (default: health.timeout_seconds).")
@click.option("--patch-state-dir", envvar="ERPOPS_PATCH_STATE_DIR", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="erpops patch's state dir, for patch.stuck (default: <project root>/.erpops when it exists).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--nagios", "as_nagios", is_flag=True, help="Print one Nagios plugin line (status | perfdata).")
@click.option("--prometheus", "prom_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a node_exporter textfile here (atomically).")
@click.pass_context
def health(ctx: click.Context, stack: str | None, odoo_url: str | None, odoo_db: str | None,
           odoo_login: str | None, pg_host: str | None, pg_port: int, pg_user: str, pg_db: str | None,
           redis_url: str | None, redis_ca_file: str | None, redis_sentinels: tuple[str, ...],
           redis_sentinel_master: str | None, s3_endpoint: str | None, s3_bucket: str | None, s3_prefix: str | None,
           data_paths: tuple[str, ...], no_host: bool, only: tuple[str, ...], timeout: float | None,
           patch_state_dir: Path | None, as_json: bool, as_nagios: bool, prom_file: Path | None) -> None:
    """Check Odoo, PostgreSQL, Redis, S3 backups and this host; exit 0/1/2/3 like a Nagios plugin."""
    err = Console(stderr=True)
    root = (ctx.obj or {}).get("root") if isinstance(ctx.obj, dict) else None
    try:
        thresholds, sized = _thresholds(stack, root)
    except ErpopsError as exc:
        err.print(str(exc), markup=False, highlight=False)
        _exit(State.UNKNOWN)
    if timeout is not None:
        thresholds.timeout = timeout
    # The backup target as the backup engine resolves it: flag, $ERPOPS_BACKUP_TARGET, then the stack.
    env_target = urlsplit(os.environ.get("ERPOPS_BACKUP_TARGET", ""))
    if not s3_bucket and env_target.scheme == "s3":
        s3_bucket, s3_prefix = env_target.netloc, s3_prefix if s3_prefix is not None else env_target.path
    if sized is not None:
        odoo_db = odoo_db or sized.database  # type: ignore[attr-defined]
        backup = stack_backup_target(sized.spec, sized.stack)  # type: ignore[attr-defined]
        if not s3_bucket:
            s3_bucket, s3_prefix = backup.bucket, s3_prefix if s3_prefix is not None else backup.prefix
        s3_endpoint = s3_endpoint or backup.endpoint_url
        odoo_url = odoo_url or f"https://{sized.spec.kubernetes.host}"  # type: ignore[attr-defined]
    unknown = [c for c in only if not any(n.startswith(c) for n in all_names())]
    if unknown:
        err.print(f"no check named {', '.join(unknown)}: pick from {', '.join(all_names())}")
        _exit(State.UNKNOWN)
    sentinels = []
    for address in redis_sentinels:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            err.print(f"--redis-sentinel {address}: give HOST:PORT, e.g. --redis-sentinel 10.0.0.5:26379")
            _exit(State.UNKNOWN)
        sentinels.append((host.strip("[]"), int(port)))
    targets = Targets(
        odoo_url=odoo_url, odoo_db=odoo_db, odoo_login=odoo_login,
        odoo_password=os.environ.get("ERPOPS_ODOO_PASSWORD"),
        pg=Pg(host=pg_host, port=pg_port, user=pg_user, password=os.environ.get("PGPASSWORD")) if pg_host else None,
        pg_db=pg_db or odoo_db or "postgres",
        redis_url=redis_url, redis_ca_file=redis_ca_file, redis_sentinels=tuple(sentinels),
        redis_sentinel_master=redis_sentinel_master,
        s3_endpoint=s3_endpoint, s3_bucket=s3_bucket, s3_prefix=(s3_prefix or "").strip("/"),
        s3_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        or (sized.spec.object_storage.region if sized is not None else None),  # type: ignore[attr-defined]
        data_paths=list(data_paths), host=not no_host,
        patch_state_dir=str(patch_state_dir or _default_patch_dir(root) or "") or None,
    )
    checks = [c for c in checks_for(targets) if not only or any(c.name.startswith(o) for o in only)]
    if not checks:
        err.print("nothing to check: give at least one target (--odoo-url, --pg-host, --redis-url, --s3-bucket)")
        _exit(State.UNKNOWN)
    started = time.monotonic()
    results = run_checks(checks, targets, thresholds)
    elapsed = time.monotonic() - started
    if as_json:
        click.echo(output.to_json(results, stack, elapsed))
    elif as_nagios:
        click.echo(output.nagios(results, thresholds))
    else:
        out = Console(width=None if sys.stdout.isatty() else 200)
        output.table(results, out, title=f"erpops health{f' {stack}' if stack else ''} ({elapsed:.2f}s)")
    if prom_file is not None:
        output.write_atomic(prom_file, output.prometheus(results, stack))
    _exit(worst(r.state for r in results))


def _default_patch_dir(root: Path | None) -> Path | None:
    """<project root>/.erpops (erpops patch's default state dir) when it exists."""
    from erpops import spec

    try:
        base = root or spec.find_root()
    except ErpopsError:
        return None
    candidate = Path(base) / ".erpops"
    return candidate if candidate.is_dir() else None
