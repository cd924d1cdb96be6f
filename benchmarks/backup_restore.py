"""Backup and restore: erpops vs the plain PostgreSQL/tar tools, alternating in each round (issue 16).

Builds a database (pgbench tables + an `ir_attachment`-like table of bytea rows, half of them
incompressible) and an Odoo-layout filestore (`<root>/<db>/xx/<sha1>`, half incompressible) on a
local PostgreSQL 15 and a moto S3 server started here, then runs, in every round, each erpops
operation and its reference (the order alternates between rounds):

| work | erpops | reference |
|---|---|---|
| DB + filestore to a file target | `engine.backup(..., filestore=)` | `pg_dump -Fc` then `tar czf` |
| DB only to a file target | `engine.backup(...)` | `pg_dump -Fc -Z0 \\| zstd -T2` |
| DB + filestore to S3 (moto) | `engine.backup(...)` to s3:// | `pg_dump -Fc` then `tar czf` |
| incremental, 1% of files new | a second backup to the same target | erpops's DB-only backup |
| restore, no neutralize | `restore(..., skip_filestore=True)` | `pg_restore -j2` of a `-Fc -Z0` file |
| restore with filestore | `restore(..., filestore_root=)` | `pg_restore -j2` + `tar xzf` |
| verify | `engine.verify` | `sha256sum` of the set's files |

Every erpops run is a child process (`python benchmarks/backup_restore.py _child ...`): its wall
time, its own CPU (user+system of the Python process, from getrusage: pg_dump/pg_restore/zstd
are counted apart as "children CPU"), and the peak RSS of its whole process tree (summed over
the tree, sampled every 50 ms with psutil; the PostgreSQL server and moto are not in the tree).
Before every timed run the databases restored so far are dropped, the server checkpoints and the machine
syncs (Bench.settle), so neither side pays for the other's writeback or autovacuum. Medians over the rounds
are printed; the ratio is erpops / reference (below 1: erpops is faster), with each round's own ratio beside
it. "final sync" is the time an erpops backup to a file target spent in its one syncfs before the manifest:
what it waited for the disk at the end (of the reference, pg_dump fsyncs its file and `tar` never syncs).
A slow round with a short final sync and little CPU waited for the disk while it wrote.
Figures only, nothing asserted.

Default (about 150 MB of database, 100 MB of filestore, a few minutes on 2 cores):

    .venv/bin/python benchmarks/backup_restore.py

The size of issue 16 (3.4 GB database: pgbench scale 130 + 200,000 attachment rows of ~8 KiB, half
incompressible; 2.1 GB filestore of 20,000 files), the filestore kept for the next run in --keep
(the database is rebuilt each run, a few minutes); about 15 GB of disk for one round (data dir,
filestore, two targets and the reference archives) and 7 GB more for each further round (its
filestore copies stay until the end of the run: see Bench.round) and ~3 GB of memory for moto, which holds one
round's S3 set (deleted after the round):

    .venv/bin/python benchmarks/backup_restore.py --scale 130 --attachments 200000 --attachment-kib 8 \\
        --files 20000 --fs-mb 2100 --rounds 3 --keep /var/tmp/erpops-bench

Run it on a quiet machine (`uptime`: load below 1); busy rounds are not comparable. Add `--drop-caches`
(root) to start every run with free memory: without it, the later rounds run with memory full of page
cache, which is reclaimed while they write (see Bench.settle).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB = "bench_src"


# ------------------------------------------------------------------------------------------------
# The child: one erpops operation, timed from inside, printing one JSON line
# ------------------------------------------------------------------------------------------------


def child(spec: dict[str, Any]) -> None:
    from erpops.backup import engine
    from erpops.backup.leftovers import one_malloc_arena
    from erpops.backup.restore import restore
    from erpops.backup.storage import open_target
    from erpops.pg import Pg

    one_malloc_arena()  # as erpops.cli.run does for every command
    started = time.monotonic()
    target = open_target(spec["target"])
    pg = Pg.from_env()
    out: dict[str, Any] = {}
    flush, synced = target.flush, [0.0]

    def timed_flush() -> None:  # the backup's one wait for the disk: syncfs before the manifest (file targets)
        t0 = time.monotonic()
        try:
            flush()
        finally:
            synced[0] += time.monotonic() - t0

    target.flush = timed_flush  # type: ignore[method-assign]
    if spec["op"] == "backup":
        report = engine.backup(target, pg, spec["db"], stack="bench", filestore=spec.get("filestore"))
        out = {"set_id": report["set_id"], "uploaded": report["filestore"]["uploaded"],
               "skipped": report["filestore"]["skipped_existing"]}
    elif spec["op"] == "restore":
        fs = spec.get("filestore_root")
        restore(target, spec["set_id"], pg=pg, db=spec["to"], filestore_root=Path(fs) if fs else None,
                skip_filestore=not fs, jobs=2)
    elif spec["op"] == "verify":
        report = engine.verify(target, spec["set_id"], write=False)
        if not report["ok"]:
            raise SystemExit(f"verify found problems: {report['problems']}")
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.update(wall=time.monotonic() - started, cpu=self_ru.ru_utime + self_ru.ru_stime, sys_cpu=self_ru.ru_stime,
               children_cpu=kids.ru_utime + kids.ru_stime, sync=synced[0])
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------------
# Measuring a process tree
# ------------------------------------------------------------------------------------------------


def run_tree(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run argv; wall time, peak RSS of the process tree (MB), stdout's last JSON line (erpops children)."""
    import psutil

    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            top = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [top, *top.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            peak = max(peak, total)
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[-1][:200]} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    result: dict[str, Any] = {"wall": wall, "rss_mb": peak / 1e6}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        inner = json.loads(lines[-1])
        result.update({k: v for k, v in inner.items() if k != "wall"})
        result["inner_wall"] = inner["wall"]
    return result


def erpops(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    return run_tree([sys.executable, str(Path(__file__).resolve()), "_child", json.dumps(spec)], env)


# ------------------------------------------------------------------------------------------------
# Building the data
# ------------------------------------------------------------------------------------------------


def build_database(server: Any, env: dict[str, str], args: argparse.Namespace) -> None:
    bindir = server.bin("psql").parent
    server.psql(f'DROP DATABASE IF EXISTS "{DB}"; CREATE DATABASE "{DB}"')
    subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", str(args.scale), DB], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.psql("CREATE TABLE ir_attachment (id serial PRIMARY KEY, name varchar, mimetype varchar, "
                "file_size int, checksum varchar, db_datas bytea)", DB)
    server.psql("ALTER TABLE ir_attachment ALTER COLUMN db_datas SET STORAGE EXTERNAL", DB)  # no TOAST pglz
    rng = random.Random(11)
    size = args.attachment_kib * 1024
    copy = subprocess.Popen([str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-c",
                             "COPY ir_attachment (name, mimetype, file_size, checksum, db_datas) FROM STDIN"],
                            stdin=subprocess.PIPE, env=env)
    assert copy.stdin is not None
    text = b"Lorem ipsum dolor sit amet, invoice line %d, product %d, quantity %d. "
    for i in range(args.attachments):
        n = rng.randint(size // 2, size * 3 // 2)
        data = rng.randbytes(n) if i % 2 else ((text % (i, i * 7, i % 13)) * (n // 60 + 1))[:n]
        sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        row = f"att-{i}.bin\tapplication/octet-stream\t{len(data)}\t{sha1}\t\\\\x"
        copy.stdin.write(row.encode() + data.hex().encode() + b"\n")
    copy.stdin.close()
    if copy.wait() != 0:
        raise SystemExit("COPY into ir_attachment failed")
    server.psql("VACUUM ANALYZE", DB)


def write_file(root: Path, data: bytes) -> Path:
    sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    path = root / sha[:2] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def build_filestore(root: Path, args: argparse.Namespace) -> None:
    rng = random.Random(5)
    mean = args.fs_mb * 1_000_000 // max(1, args.files)
    words = b"<p>Delivery slip, order SO%06d, lot %d, weight %d kg.</p>\n"
    for i in range(args.files):
        n = max(64, int(rng.expovariate(1 / mean)))
        if i % 2:
            data = rng.randbytes(n)
        else:
            block = (words % (i, i % 97, i % 1000)) * 64
            data = (block * (n // len(block) + 1))[:n]
        write_file(root, data)


def add_new_files(root: Path, count: int, tag: int) -> list[Path]:
    """The files an incremental backup finds new: Odoo never changes a file in place, it writes new sha1s."""
    rng = random.Random(1000 + tag)
    return [write_file(root, rng.randbytes(rng.randint(20_000, 200_000))) for _ in range(count)]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------
# The rounds
# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=6, help="pgbench scale (1 = ~16 MB)")
    parser.add_argument("--attachments", type=int, default=8000, help="ir_attachment rows")
    parser.add_argument("--attachment-kib", type=int, default=6, help="mean size of an attachment row")
    parser.add_argument("--files", type=int, default=1500, help="filestore files")
    parser.add_argument("--fs-mb", type=int, default=100, help="filestore size, MB")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the filestore here and reuse it in the next run")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--drop-caches", action="store_true",
                        help="empty the page cache before every timed run (root): each run starts with free memory")
    args = parser.parse_args()
    if args.drop_caches and os.geteuid() != 0:
        raise SystemExit("--drop-caches writes /proc/sys/vm/drop_caches: run as root, or leave it out")

    from erpops.local import LocalPostgres, LocalS3
    from erpops.pg import Pg

    base = args.keep or Path(tempfile.mkdtemp(prefix="erpops-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # the server runs as the postgres user when we are root
    fs_root = base / "filestore"
    stamp = base / "filestore.json"
    wanted = {"files": args.files, "fs_mb": args.fs_mb}
    if not (stamp.exists() and json.loads(stamp.read_text()) == wanted):
        shutil.rmtree(fs_root, ignore_errors=True)
        print(f"building the filestore ({args.files} files, {args.fs_mb} MB) in {fs_root}", file=sys.stderr)
        build_filestore(fs_root / DB, args)
        stamp.write_text(json.dumps(wanted))
    work = base / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def record(case: str, who: str, figures: dict[str, Any]) -> None:
        rows.setdefault(case, {}).setdefault(who, []).append(figures)
        print(f"  {case:<34} {who:<9} {figures['wall']:7.2f} s  rss {figures['rss_mb']:6.0f} MB"
              + (f"  cpu {figures['cpu']:6.2f} s (sys {figures['sys_cpu']:5.2f})" if "cpu" in figures else "")
              + (f"  final sync {figures['sync']:5.2f} s" if "sync" in figures and case.endswith("-> file") else ""),
              file=sys.stderr, flush=True)

    with LocalPostgres(base_dir=base) as server, LocalS3() as s3:
        pg = Pg.from_local(server)
        env = {**os.environ, **pg.env(), **s3.env(), "PYTHONPATH": str(ROOT)}
        bindir = server.bin("psql").parent
        print(f"building the database (pgbench -s {args.scale}, {args.attachments} attachments)", file=sys.stderr)
        build_database(server, env, args)
        db_bytes = int(server.psql(f"SELECT pg_database_size('{DB}')").strip())
        fs_bytes = du(fs_root / DB)
        s3.client().create_bucket(Bucket="bench")

        bench = Bench(server, s3, env, fs_root, work, record, bindir, args)
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr)
            bench.round(rnd)

    shutil.rmtree(work, ignore_errors=True)  # the rounds' small files (see Bench.round)
    print_table(rows, db_bytes, fs_bytes, args)
    print("\nzstd levels on the uncompressed dump (first round):\n")
    print("| level | wall s | CPU s | MB out | ratio |\n|---|---|---|---|---|")
    print("\n".join(bench.levels))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


def compression_levels(dump: Path) -> list[str]:
    """zstd levels on the uncompressed dump, as the backup runs them (in-process, one thread per core)."""
    import zstandard

    lines = []
    size = dump.stat().st_size
    for level in (-3, -1, 1, 2, 3, 6):  # negative: zstd's fast levels
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        comp = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=False)  # as dump.new_compressor
        out = 0
        with dump.open("rb") as fh:
            reader = comp.stream_reader(fh, read_size=1 << 20)
            while chunk := reader.read(1 << 20):
                out += len(chunk)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
        wall = time.monotonic() - t0
        lines.append(f"| zstd {level} | {wall:.2f} | {cpu:.2f} | {out / 1e6:.1f} | {size / out:.2f} |")
    return lines


def sh(command: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", command]


class Bench:
    """One round: each case as erpops then reference (or the other way round, alternating)."""

    def __init__(self, server: Any, s3: Any, env: dict[str, str], fs_root: Path, work: Path, record: Any,
                 bindir: Path, args: argparse.Namespace) -> None:
        self.server, self.s3, self.env, self.fs_root, self.work = server, s3, env, fs_root, work
        self.record, self.args = record, args
        self.pg_dump, self.pg_restore = bindir / "pg_dump", bindir / "pg_restore"
        self.n = 0
        self.levels: list[str] = []

    def settle(self, warm: tuple[Path, ...] = ()) -> None:
        """Before every timed run: the databases restored so far dropped, then CHECKPOINT and sync, so that
        neither side pays for what the other left behind.

        - A restored database kept until the end of the round was vacuumed by autovacuum during the next runs:
          its tables have never been analyzed, so every one passes the insert threshold, and 2-3 workers read
          and wrote the 3.4 GB copies while later restores and verifies were timed (seen in ps, in the first run
          at the issue's size).
        - Writeback: a restore right after another one took up to 2 s longer, whichever tool it was.
        - With --drop-caches (root), the page cache is emptied first, so that every run starts with free memory.
          Without it, from the second round on, memory is full of page cache and is reclaimed while the run
          writes: over three runs at the issue's size (/proc/vmstat, ps) kswapd reclaimed 158 GB with 25 s of
          CPU, and 8 GB were reclaimed directly, by the writing process, on its own CPU time. Small, but not
          the same for a tool that writes 3 GB in 20 s and one that writes it in 100 s.
        - The page cache: the run's inputs (`warm`) are read once, so both sides start with them cached. A round
          writes some 25 GB, which evicted parts of the source database: the run that came next read them from
          the virtual disk (an incremental backup took 23.0 s with 10.5 s of CPU, against 18.2 s in the round
          before).
        """
        for name in self.server.psql("SELECT datname FROM pg_database WHERE datname LIKE 'bench_r%'").split():
            self.server.psql(f'DROP DATABASE "{name}" WITH (FORCE)')
        self.server.psql("CHECKPOINT")
        os.sync()
        if self.args.drop_caches:
            Path("/proc/sys/vm/drop_caches").write_text("1\n")  # clean page cache only: nothing is lost
        buf = bytearray(1 << 20)
        for path in warm:
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if file.is_file():
                    with file.open("rb", buffering=0) as fh:
                        while fh.readinto(buf):
                            pass

    def source_files(self) -> list[Path]:
        """What a backup reads: the source database's files and its filestore."""
        data = self.server.psql("SHOW data_directory").strip()
        oid = self.server.psql(f"SELECT oid FROM pg_database WHERE datname = '{DB}'").strip()
        return [Path(data) / "base" / oid, self.fs_root / DB]

    def pair(self, case: str, mine: Any, ref: Any, erpops_first: bool, warm: tuple[Path, ...]) -> Any:
        out = None
        for who in (("erpops", "ref") if erpops_first else ("ref", "erpops")):
            self.settle(warm)
            if who == "erpops":
                out = mine()
                self.record(case, "erpops", out)
            else:
                self.record(case, "ref", ref())
        return out

    def s3_clear(self, prefix: str) -> None:
        """Delete a round's objects: moto keeps everything in memory."""
        client = self.s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket="bench", Delete={"Objects": keys, "Quiet": True})

    def fresh(self) -> str:
        self.n += 1
        return f"bench_r_{self.n}"

    def ref_restore(self, rd: Path, with_fs: bool) -> dict[str, Any]:
        to = self.fresh()
        self.server.psql(f'CREATE DATABASE "{to}"')
        cmd = f"{self.pg_restore} -w -j2 --no-owner --no-privileges --exit-on-error -d {to} {rd}/plain.dump"
        if with_fs:
            (rd / f"ref-fs-{to}").mkdir()
            cmd += f" && tar xzf {rd}/ref-fs.tgz -C {rd}/ref-fs-{to}"
        return run_tree(sh(cmd), self.env)

    def round(self, rnd: int) -> None:
        env, fs_root, first = self.env, self.fs_root, rnd % 2 == 0
        rd = self.work / f"r{rnd}"
        rd.mkdir()
        full_fs = {"op": "backup", "db": DB, "filestore": str(fs_root)}
        source = tuple(self.source_files())

        def ref_full() -> dict[str, Any]:
            return run_tree(sh(f"{self.pg_dump} -w -Fc -d {DB} -f {rd}/ref.dump && "
                               f"tar czf {rd}/ref-fs.tgz -C {fs_root} {DB}"), env)

        full = self.pair("backup DB+filestore -> file",
                         lambda: erpops({**full_fs, "target": f"file://{rd}/t-full"}, env), ref_full, first, source)
        self.pair("backup DB only -> file",
                  lambda: erpops({"op": "backup", "target": f"file://{rd}/t-db", "db": DB}, env),
                  lambda: run_tree(sh(f"{self.pg_dump} -w -Fc -Z0 -d {DB} | zstd -q -T2 -o {rd}/ref-z0.dump.zst"),
                                   env), first, source)
        if not self.args.skip_s3:
            self.pair("backup DB+filestore -> S3 (moto)",
                      lambda: erpops({**full_fs, "target": f"s3://bench/r{rnd}"}, env), ref_full, not first, source)
        # incremental: 1% new files, a second set on the full backup's target
        added = add_new_files(fs_root / DB, max(1, self.args.files // 100), rnd)
        self.settle(source)
        self.record("incremental (1% new files) -> file", "erpops",
                    erpops({**full_fs, "target": f"file://{rd}/t-full"}, env))
        # restores: the reference gets an uncompressed -Fc file (its fastest input)
        subprocess.run([str(self.pg_dump), "-w", "-Fc", "-Z0", "-d", DB, "-f", f"{rd}/plain.dump"], env=env,
                       check=True)
        if rnd == 0:
            self.levels = compression_levels(rd / "plain.dump")
        at = {"target": f"file://{rd}/t-full", "set_id": full["set_id"]}
        inputs = (rd / "t-full", rd / "plain.dump", rd / "ref-fs.tgz")  # both sides' restore inputs
        self.pair("restore, no neutralize", lambda: erpops({**at, "op": "restore", "to": self.fresh()}, env),
                  lambda: self.ref_restore(rd, False), first, inputs)
        self.pair("restore with filestore",
                  lambda: erpops({**at, "op": "restore", "to": self.fresh(),
                                  "filestore_root": str(rd / "restored-fs")}, env),
                  lambda: self.ref_restore(rd, True), first, inputs)
        self.pair("verify", lambda: erpops({**at, "op": "verify"}, env),
                  lambda: run_tree(sh(f"find {rd}/t-full -type f -print0 | xargs -0 sha256sum > /dev/null"), env),
                  first, (rd / "t-full",))
        if not self.args.skip_s3:
            self.s3_clear(f"r{rnd}/")
        self.settle()  # the last restored databases go too
        # The round's big files go now; its tens of thousands of small ones (filestore copies) at the end of the run.
        # Deleted here, they slowed the next round's erpops backup: for up to 3 minutes after many inodes are freed,
        # ext4 checks each freed one before it gives out a new inode (fs/ext4/ialloc.c, recently_deleted; seen
        # with perf: 12-18% of the backup's CPU, its system time 10-13 s instead of 5.5 s). A backup writes
        # 20,000 files, the reference one tar file: a cost of this benchmark's clean-up, not of either tool.
        for big in [*rd.glob("*.dump"), *rd.glob("*.tgz"), *rd.glob("*.zst"), *rd.glob("t-*/sets/*/dump*")]:
            big.unlink()
        for path in added:  # every round (and a run with --keep) starts from the same filestore
            path.unlink(missing_ok=True)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(rows: dict[str, dict[str, list[dict[str, Any]]]], db_bytes: int, fs_bytes: int,
                args: argparse.Namespace) -> None:
    print(f"\ndatabase {db_bytes / 1e6:.0f} MB (pgbench -s {args.scale} + {args.attachments} attachments), "
          f"filestore {fs_bytes / 1e6:.0f} MB in {args.files} files, {args.rounds} rounds, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}"
          f"{', page cache emptied before every run' if args.drop_caches else ''}; medians\n")
    print("| work | erpops s | reference s | ratio | rounds (ratio) | erpops CPU s (own / children) | "
          "final sync s | peak RSS MB (tree) |")
    print("|---|---|---|---|---|---|---|---|")
    db_only = med([f["wall"] for f in rows.get("backup DB only -> file", {}).get("erpops", [])])
    for case, by in rows.items():
        mine = by.get("erpops", [])
        refs = by.get("ref", [])
        wall = med([f["wall"] for f in mine])
        if refs:
            ref = med([f["wall"] for f in refs])
            ratio = f"{wall / ref:.2f} ({ref / wall:.1f}x faster)" if wall < ref else f"{wall / ref:.2f}"
            ref_text = f"{ref:.2f}"
        elif case.startswith("incremental"):
            ref_text, ratio = f"{db_only:.2f} (DB only)", f"{wall / db_only:.2f}"
        else:
            ref_text, ratio = "", ""
        # each round's own ratio (erpops and its reference ran back to back): how much the median hides
        rounds = ", ".join(f"{m['wall'] / r['wall']:.2f}" for m, r in zip(mine, refs, strict=False)) if refs else ""
        cpu = f"{med([f['cpu'] for f in mine]):.2f} / {med([f['children_cpu'] for f in mine]):.2f}"
        sync = med([f["sync"] for f in mine]) if case.endswith("-> file") else None  # S3 objects: no syncfs
        sync_text = f"{sync:.2f}" if sync else ""
        print(f"| {case} | {wall:.2f} | {ref_text} | {ratio} | {rounds} | {cpu} | {sync_text} | "
              f"{max(f['rss_mb'] for f in mine):.0f} |")
    s3 = rows.get("backup DB+filestore -> S3 (moto)", {}).get("erpops")
    file = rows.get("backup DB+filestore -> file", {}).get("erpops")
    if s3 and file:
        ratio = med([f["cpu"] for f in s3]) / med([f["cpu"] for f in file])
        print(f"\nerpops own CPU, S3 run / file run: {ratio:.2f} (goal: at most 1.3)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        child(json.loads(sys.argv[2]))
    else:
        main()
