"""What screening an untrusted dump.sql costs, next to what reading it costs anyway.

Reads a plain-SQL dump (by default the dump.sql of ../shared/fixtures/odoo17-mfg.zip, a real
Odoo 17 database) from memory, several rounds, and prints MB/s side by side for:

- baseline: erpops.backup.untrusted.bounded_lines + odoozip.restricted_lines, what every import
  did before the screen (split into lines, fence psql meta-commands);
- screened: the same with erpops.backup.untrusted.Screen in between (the lexer: quotes, dollar
  quotes, comments, COPY data, the statement rules).

    .venv/bin/python benchmarks/screen_dump.py [--dump FILE] [--rounds 3]

It needs no server: the screen is pure Python. psql restoring the same dump is far slower than
either (PostgreSQL builds every index), so the question is only whether the screen is small next
to it. Figures depend on the machine's load; the tests assert behaviour, never speed.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpops.backup.odoozip import restricted_lines  # noqa: E402
from erpops.backup.untrusted import Screen, bounded_lines  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "odoo17-mfg.zip"


def load(path: Path | None) -> bytes:
    if path is not None:
        return path.read_bytes()
    if not FIXTURE.is_file():
        sys.exit(f"no --dump given and {FIXTURE} is absent: pass --dump <plain SQL dump>")
    with zipfile.ZipFile(FIXTURE) as zf:
        return zf.read("dump.sql")


def baseline(data: bytes) -> int:
    return sum(len(x) for x in restricted_lines(bounded_lines(io.BytesIO(data), "dump.sql"), "k" * 32))


def screened(data: bytes) -> int:
    screen = Screen("dump.sql")
    return sum(len(x) for x in restricted_lines(screen.lines(bounded_lines(io.BytesIO(data), "dump.sql")), "k" * 32))


def best(fn: Callable[[bytes], int], data: bytes, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(data)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dump", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = load(args.dump)
    for label, sample in ((f"dump {args.dump or FIXTURE.name + '!dump.sql'}", data),
                          ("synthetic: one table, 1,000,000 COPY rows (where a big dump's bytes are)", synthetic())):
        print(f"== {label}")
        compare(sample, args.rounds)


def synthetic() -> bytes:
    rows = b"".join(b"%d\tpartner %d\tp%d@example.com\t2026-11-29 18:15:00\n" % (i, i, i) for i in range(1_000_000))
    return (b"SET client_encoding = 'UTF8';\nCREATE TABLE public.p (id integer, name text, email text, d timestamp);\n"
            b"COPY public.p (id, name, email, d) FROM stdin;\n" + rows + b"\\.\n")


def compare(data: bytes, rounds: int) -> None:
    report = Screen("dump.sql").check(bounded_lines(io.BytesIO(data), "dump.sql"))
    mb = len(data) / 1e6
    print(f"dump: {mb:.1f} MB, {report.statements} statements, {report.copy_rows} COPY rows, "
          f"dropped {report.dropped}")
    print(f"{'pass':<10} {'best s':>8} {'median s':>9} {'MB/s (best)':>12}")
    rows = {}
    for name, fn in (("baseline", baseline), ("screened", screened)):
        fastest, median = best(fn, data, rounds)
        rows[name] = fastest
        print(f"{name:<10} {fastest:>8.2f} {median:>9.2f} {mb / fastest:>12.1f}")
    print(f"screen overhead: {rows['screened'] / rows['baseline']:.1f}x the baseline pass, "
          f"{(rows['screened'] - rows['baseline']) / mb * 1000:.0f} ms per MB of dump")


if __name__ == "__main__":
    main()
