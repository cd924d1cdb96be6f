"""Two A/B measurements behind choices in erpops.backup (issue 16), alternating in each round.

- `feed`: a staged restore whose loaders feed pg_restore through a unix socket (dump.Feed, what erpops
  does) or through a 1 MiB pipe (what it did), beside `pg_restore -j2` of a plain `-Fc -Z0` file. Prints
  wall time, erpops's own CPU and context switches, and pg_restore's CPU.
- `workers`: a full backup (database + filestore to a file target) at each filestore worker count given
  (`--workers 8,3`; `auto` is filestore.transfer_workers's choice). Prints wall time, user and system CPU.

Builds the database and filestore as benchmarks/backup_restore.py does (same options). The size of issue 16:

    .venv/bin/python benchmarks/local_ab.py feed --scale 130 --attachments 200000 --attachment-kib 8
    .venv/bin/python benchmarks/local_ab.py workers --scale 130 --attachments 200000 --attachment-kib 8 \\
        --files 20000 --fs-mb 2100 --keep /var/tmp/erpops-bench --workers 8,auto

Figures only, nothing asserted. Run it on a quiet machine, and not within 3 minutes of deleting many
files on the same file system (see Bench.round in backup_restore.py).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class PipeFeed:
    """What the loaders used before dump.Feed: a pipe of 1 MiB into pg_restore's stdin."""

    def __init__(self) -> None:
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        self.child: int | None = r
        self._w: int | None = w

    def started(self) -> None:
        if self.child is not None:
            os.close(self.child)
            self.child = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            assert self._w is not None
            view = view[os.write(self._w, view):]
        return len(data)

    def close(self) -> None:
        self.started()
        if self._w is not None:
            os.close(self._w)
            self._w = None


def usage() -> tuple[resource.struct_rusage, resource.struct_rusage, float]:
    return resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()


def since(before: tuple[Any, Any, float]) -> dict[str, float]:
    s0, c0, t0 = before
    s1, c1, t1 = usage()
    return {"wall": t1 - t0, "user": s1.ru_utime - s0.ru_utime, "sys": s1.ru_stime - s0.ru_stime,
            "switches": s1.ru_nvcsw - s0.ru_nvcsw,
            "children": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["feed", "workers"])
    parser.add_argument("--scale", type=int, default=6)
    parser.add_argument("--attachments", type=int, default=8000)
    parser.add_argument("--attachment-kib", type=int, default=6)
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--fs-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", default="8,auto")
    parser.add_argument("--keep", type=Path, help="keep the filestore here and reuse it (as backup_restore.py)")
    args = parser.parse_args()

    import backup_restore as br

    from erpops.backup import engine, staged
    from erpops.backup.leftovers import one_malloc_arena
    from erpops.backup.restore import restore
    from erpops.backup.storage import FileTarget
    from erpops.local import LocalPostgres
    from erpops.pg import Pg

    one_malloc_arena()
    base = args.keep or Path(tempfile.mkdtemp(prefix="erpops-ab-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    work = base / "ab-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    rows: dict[str, list[dict[str, float]]] = {}
    with LocalPostgres(base_dir=base) as server:
        pg = Pg.from_local(server)
        env = {**os.environ, **pg.env()}
        print("building the database", file=sys.stderr)
        br.build_database(server, env, args)
        if args.what == "feed":
            bindir = server.bin("psql").parent
            plain = work / "plain.dump"
            subprocess.run([str(bindir / "pg_dump"), "-w", "-Fc", "-Z0", "-d", br.DB, "-f", str(plain)], env=env,
                           check=True)
            target = FileTarget(work / "t")
            set_id = engine.backup(target, pg, br.DB, stack="bench")["set_id"]
            orders = [("socket", "pipe", "ref"), ("ref", "pipe", "socket"), ("pipe", "socket", "ref"),
                      ("ref", "socket", "pipe")]
            real, n = staged.Feed, 0
            for rnd in range(args.rounds):
                for who in orders[rnd % 4]:
                    n += 1
                    db = f"bench_r_{n}"
                    server.psql("CHECKPOINT")
                    os.sync()
                    before = usage()
                    if who == "ref":
                        server.psql(f'CREATE DATABASE "{db}"')
                        subprocess.run([str(bindir / "pg_restore"), "-w", "-j2", "--no-owner", "--no-privileges",
                                        "--exit-on-error", "-d", db, str(plain)], env=env, check=True)
                    else:
                        staged.Feed = PipeFeed if who == "pipe" else real  # type: ignore[assignment,misc]
                        restore(target, set_id, pg=pg, db=db, skip_filestore=True, jobs=2)
                    rows.setdefault(who, []).append(since(before))
                    print(f"  round {rnd + 1} {who:<7} {rows[who][-1]['wall']:6.2f} s", file=sys.stderr)
                    server.psql(f'DROP DATABASE "{db}"')
            staged.Feed = real  # type: ignore[misc]
        else:
            fs_root = base / "filestore"
            if not (fs_root / br.DB).is_dir():
                br.build_filestore(fs_root / br.DB, args)
            counts = args.workers.split(",")
            for rnd in range(args.rounds):
                for w in counts if rnd % 2 == 0 else counts[::-1]:
                    out = work / f"t-{rnd}-{w}"  # new directories: nothing deleted before a timed run
                    server.psql("CHECKPOINT")
                    os.sync()
                    before = usage()
                    engine.backup(FileTarget(out), pg, br.DB, stack="bench", filestore=str(fs_root),
                                  workers=None if w == "auto" else int(w))
                    rows.setdefault(f"workers {w}", []).append(since(before))
                    print(f"  round {rnd + 1} workers {w:<5} {rows[f'workers {w}'][-1]['wall']:6.2f} s",
                          file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n{args.what}: medians of {args.rounds} rounds, {os.cpu_count()} cores\n")
    print("| run | wall s | erpops user s | erpops sys s | erpops context switches | children CPU s |")
    print("|---|---|---|---|---|---|")
    for who, runs in rows.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {who} | {m['wall']:.2f} | {m['user']:.2f} | {m['sys']:.2f} | {m['switches']:.0f} | "
              f"{m['children']:.2f} |")


if __name__ == "__main__":
    main()
