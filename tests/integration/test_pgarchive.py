"""Data offsets filled into a piped pg_dump archive (erpops.backup.pgarchive): the same offsets pg_dump
writes itself when its output is a file, and pg_restore -j 2 restores the patched archive."""

from __future__ import annotations

import subprocess
from pathlib import Path

from erpops.backup.pgarchive import add_data_offsets, data_offsets
from erpops.local import LocalPostgres
from erpops.pg import Pg


def test_a_piped_archive_gets_the_offsets_and_restores_in_parallel(pg: LocalPostgres, tmp_path: Path) -> None:
    server = Pg.from_local(pg)
    server.psql("DROP DATABASE IF EXISTS arch_src; CREATE DATABASE arch_src")
    server.psql("CREATE TABLE a (id int PRIMARY KEY, t text); CREATE TABLE b (id int, v bytea); "
                "CREATE TABLE empty (x int);"
                "INSERT INTO a SELECT i, repeat(chr(1 + i % 120), i % 50) FROM generate_series(1, 20000) i;"
                "INSERT INTO b SELECT i, decode(md5(i::text), 'hex') FROM generate_series(1, 5000) i;"
                "CREATE INDEX ON b (id)", "arch_src")
    piped = tmp_path / "piped.dump"
    with piped.open("wb") as out:  # through a pipe, as the backup streams it
        dump = subprocess.Popen([str(pg.bin("pg_dump")), "-Fc", "-Z0", "-d", "arch_src"], stdout=subprocess.PIPE,
                                env=server.env())
        assert dump.stdout is not None
        while chunk := dump.stdout.read(1 << 16):
            out.write(chunk)
        assert dump.wait() == 0
    before = piped.read_bytes()
    assert list(data_offsets(piped).values()) == [None, None, None]
    seekable = tmp_path / "file.dump"  # pg_dump writing a file records the offsets itself
    subprocess.run([str(pg.bin("pg_dump")), "-Fc", "-Z0", "-d", "arch_src", "-f", str(seekable)], env=server.env(),
                   check=True)
    assert add_data_offsets(piped) == 3  # a, b and the empty table: every entry with data
    after = piped.read_bytes()
    assert len(after) == len(before) and after != before
    assert add_data_offsets(piped) == 0  # nothing left to fill in: the file stays as it is
    assert piped.read_bytes() == after
    expected = data_offsets(seekable)
    assert None not in expected.values() and data_offsets(piped) == expected

    server.psql("DROP DATABASE IF EXISTS arch_dst; CREATE DATABASE arch_dst")
    done = subprocess.run([str(pg.bin("pg_restore")), "-j", "2", "--exit-on-error", "-d", "arch_dst", str(piped)],
                          env=server.env(), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    check = "SELECT count(*), sum(length(t)) FROM a UNION ALL SELECT count(*), sum(length(v)) FROM b"
    assert server.psql(check, "arch_dst") == server.psql(check, "arch_src")


def test_anything_else_is_left_untouched(tmp_path: Path) -> None:
    for data in (b"", b"PGDMP", b"not an archive at all", b"PGDMP\x01\x0e\x00\x04\x08\x03"):
        path = tmp_path / "x"
        path.write_bytes(data)
        assert add_data_offsets(path) == 0
        assert path.read_bytes() == data
