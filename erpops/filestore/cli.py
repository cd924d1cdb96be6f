"""`erpops filestore migrate`: the command line over erpops.filestore.migrate (PostgreSQL from PG* variables)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from erpops.backup.progress import make_reporter
from erpops.errors import ErpopsError, PreflightError
from erpops.filestore.migrate import DEFAULT_CODE, Migration, Report, raise_for
from erpops.filestore.stores import parse_location
from erpops.options import endpoint_url_option, region_option
from erpops.pg import Pg

out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _table(report: Report, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [("attachment rows to move", report.rows), ("distinct files", report.files),
            ("bytes", f"{report.bytes / 1e6:.1f} MB"), ("rows already at the target", report.already_switched),
            ("files already at the target", report.present)]
    if report.apply:
        rate = report.bytes_copied / 1e6 / report.duration_s if report.duration_s else 0.0
        files = report.copied + report.resent
        rows += [("files copied (verified)", report.copied), ("re-sent after a bad read-back", report.resent),
                 ("rows switched", report.moved), ("rows changed meanwhile (left)", report.conflicts),
                 ("failed", len(report.failed)), ("bytes copied", f"{report.bytes_copied / 1e6:.1f} MB"),
                 ("duration", f"{report.duration_s:.1f} s"),
                 ("rate", f"{files / report.duration_s if report.duration_s else 0:.0f} files/s, {rate:.1f} MB/s")]
        if report.resumed_from:
            rows.append(("resumed after attachment id", report.resumed_from))
    for name, value in rows:
        table.add_row(name, str(value))
    return table


@click.group("filestore")
def filestore() -> None:
    """Odoo attachments: move them between a filestore directory and object storage (OCA fs_attachment)."""


@filestore.command("migrate")
@click.option("--db", required=True, help="Odoo database whose attachments move (PostgreSQL from PGHOST/PGPORT/...).")
@click.option("--from", "source", required=True,
              help="Where the bytes are: Odoo's <data_dir>/filestore/<db> directory, or s3://bucket[/prefix].")
@click.option("--to", "target", required=True, help="Where they go: s3://bucket[/prefix], or a filestore directory.")
@click.option("--apply", is_flag=True, help="Copy and switch the rows (default: print the plan, change nothing).")
@click.option("--storage-code", default=DEFAULT_CODE, show_default=True,
              help="Code of the fs.storage record (OCA fs_storage) that reads the bucket.")
@click.option("--jobs", "-j", default=8, show_default=True, type=click.IntRange(1, 64), help="Parallel copies.")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10000),
              help="Rows per batch: one checkpoint and one switch transaction each.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file (default: ~/.local/state/erpops/filestore-<db>-<hash>.json).")
@endpoint_url_option(default="AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS")
@region_option(default="boto3's")
@click.option("--allow-connected", is_flag=True,
              help="Run although other sessions are connected to the database (only when they are not Odoo).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def migrate(db: str, source: str, target: str, apply: bool, storage_code: str, jobs: int, batch: int,
            checkpoint: Path | None, endpoint_url: str | None, region: str | None, allow_connected: bool,
            as_json: bool) -> None:
    """Plan, then (with --apply) copy in parallel, verify each file by read-back, switch the rows per batch.

    Resumable: a killed run continues after its last switched batch. Sources are kept.
    Exit 0 done, 2 bad input, 3 S3/PostgreSQL unreachable, 4 some files not moved, 5 a checksum
    mismatch, 6 refused before anything changed (Odoo connected, no fs.storage for the bucket).
    """
    try:
        src = parse_location(source, endpoint_url=endpoint_url, region=region, jobs=jobs)
        dst = parse_location(target, endpoint_url=endpoint_url, region=region, jobs=jobs)
        reporter = make_reporter() if apply else None
        m = Migration(Pg.from_env(), db, src, dst, code=storage_code, jobs=jobs, batch=batch, checkpoint=checkpoint,
                      allow_connected=allow_connected, reporter=reporter)
        if apply:
            report = m.run()
        else:
            notes = m.preflight(apply=False)
            report = m.plan()
            for note in notes:
                err.print(f"[yellow]WARNING[/yellow]: {note}", highlight=False)
    except ErpopsError as exc:
        _json_error(exc, as_json)
    if as_json:
        click.echo(json.dumps({"ok": not report.failed, **report.to_dict()}, indent=1))
    else:
        title = f"filestore {db}: {report.source} -> {report.target}" + ("" if apply else " (plan, dry run)")
        out.print(_table(report, title))
        for f in report.failed[:20]:
            err.print(f"[red]not moved[/red] {f['store_fname']}: {f['reason']}", highlight=False)
        if not apply:
            out.print("dry run: nothing was copied or changed; add --apply to move")
    try:
        raise_for(report)
    except ErpopsError as exc:
        _json_error(exc, as_json)


def _json_error(exc: ErpopsError, as_json: bool) -> NoReturn:
    """With --json, the error as one more JSON object on stdout (as the backup commands do), then its exit code."""
    if not as_json:
        raise exc
    body: dict[str, Any] = {"ok": False, "error": str(exc), "error_type": type(exc).__name__,
                            "exit_code": exc.exit_code}
    if isinstance(exc, PreflightError):
        body["problems"] = exc.problems
    click.echo(json.dumps(body))
    err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
    sys.exit(exc.exit_code)
