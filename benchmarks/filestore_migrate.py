"""Filestore move: `erpops filestore migrate` vs a plain boto3 upload of the same tree (`aws s3 sync` style).

One synthetic Odoo filestore (sha1-named files of mixed sizes, an `ir_attachment` row each, an fs.storage
record for the bucket) on a local PostgreSQL 15 and a moto S3 server, both started here. Each round
alternates the two on fresh buckets, with the same parallelism:
- plain: a thread pool putting every file (put_object), nothing else, like `aws s3 sync` to an empty bucket;
- erpops: plan, copy, read every object back and compare its sha1, checkpoint and switch the rows per batch.
The gap between them is the price of verification (one GET per object) and of the row switching.

    .venv/bin/python benchmarks/filestore_migrate.py [--files 600 --rounds 3 --jobs 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erpops.filestore.migrate import Migration
from erpops.filestore.stores import DirStore, S3Store
from erpops.local import LocalPostgres, LocalS3
from erpops.pg import Pg

SIZES = [2_000, 8_000, 30_000, 120_000, 400_000]  # a mix of thumbnails, PDFs and images


def make_filestore(root: Path, files: int, seed: int = 7) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(files):
        data = rng.randbytes(rng.choice(SIZES))
        sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        path = root / sha[:2] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append((sha, len(data)))
    return out


def make_db(pg: Pg, db: str, files: list[tuple[str, int]]) -> None:
    pg.psql(f'DROP DATABASE IF EXISTS "{db}"; CREATE DATABASE "{db}"')
    rows = ",".join(f"('{s[:2]}/{s}', '{s}', {n})" for s, n in files)
    pg.psql("CREATE TABLE ir_attachment (id serial PRIMARY KEY, store_fname varchar, checksum varchar, "
            "file_size int, fs_filename varchar, res_field varchar, db_datas bytea);"
            "CREATE TABLE fs_storage (id serial PRIMARY KEY, code varchar, protocol varchar, directory_path varchar, "
            "optimizes_directory_path boolean);"
            f"INSERT INTO ir_attachment (store_fname, checksum, file_size) VALUES {rows}", db)


def plain_upload(s3: LocalS3, bucket: str, root: Path, jobs: int) -> None:
    client = s3.client(max_pool_connections=jobs * 2 + 4)
    paths = [p for p in root.glob("*/*") if p.is_file()]

    def put(p: Path) -> None:
        with p.open("rb") as f:
            client.put_object(Bucket=bucket, Key=p.name, Body=f)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(put, paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"plain boto3 put (baseline)": [], "erpops migrate": []}
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres() as server, LocalS3() as s3:
        for key, value in s3.env().items():
            os.environ[key] = value
        pg = Pg.from_local(server)
        root = Path(tmp) / "filestore" / "bench"
        files = make_filestore(root, args.files)
        total_mb = sum(n for _, n in files) / 1e6
        print(f"{len(files)} files, {total_mb:.1f} MB, {args.jobs} parallel, {args.rounds} rounds", flush=True)
        client = s3.client()
        for i in range(args.rounds):
            order = list(results) if i % 2 == 0 else list(reversed(results))
            for name in order:
                bucket = f"bench-{i}-{'plain' if name.startswith('plain') else 'erpops'}"
                client.create_bucket(Bucket=bucket)
                if name.startswith("plain"):
                    t0 = time.monotonic()
                    plain_upload(s3, bucket, root, args.jobs)
                else:
                    make_db(pg, "bench", files)
                    pg.psql(f"INSERT INTO fs_storage (code, protocol, directory_path) VALUES "
                            f"('erpops_filestore', 's3', '{bucket}')", "bench")
                    m = Migration(pg, "bench", DirStore(root), S3Store(bucket, "", endpoint_url=s3.endpoint_url,
                                                                      jobs=args.jobs),
                                  jobs=args.jobs, checkpoint=Path(tmp) / f"cp-{i}.json")
                    t0 = time.monotonic()
                    report = m.run()
                    assert report.moved == len(files) and not report.failed, report
                wall = time.monotonic() - t0
                results[name].append((len(files) / wall, total_mb / wall))
                print(f"round {i + 1}: {name:28s} {wall:6.2f} s {len(files) / wall:7.1f} files/s "
                      f"{total_mb / wall:6.2f} MB/s", flush=True)
    print()
    print(f"{'':28s} {'files/s':>10s} {'MB/s':>8s}   (median of {args.rounds})")
    for name, samples in results.items():
        print(f"{name:28s} {statistics.median(s[0] for s in samples):10.1f} "
              f"{statistics.median(s[1] for s in samples):8.2f}")
    base, ours = (statistics.median(s[0] for s in results[n]) for n in results)
    print(f"erpops / plain: {ours / base:.2f} (erpops also reads every object back and switches the rows)")


if __name__ == "__main__":
    main()
